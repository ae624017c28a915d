"""pipelines/bayling2.yaml, as shipped, against a mirror shaped like its Hub datasets."""

from __future__ import annotations

from contract import check_contract
from hub_mirror import build_mirror, has_text, recipe_languages

from datakit.build import BuildOptions, run_build
from datakit.recipe import load_recipe
from datakit.resources import pipeline_path


def test_full_recipe_builds_from_a_mirror_of_its_hub_datasets(corpus, tmp_path):
    mirror = build_mirror(tmp_path / "mirror", corpus, rows=4)
    out = tmp_path / "out"
    result = run_build(BuildOptions(mirror=str(mirror), output=str(out), workers=2))
    rows = check_contract(out)
    stats = result.stats
    # Every source of the recipe contributes records, read through its real layout.
    assert {r["source"] for r in rows} == {"belle-2m", "alpaca-gpt4-zh", "openhermes-2.5", "alpaca-gpt4",
                                           "wizardlm-evol-instruct", "opus-100", "news-commentary-zh", "un-pc-zh",
                                           "opus-infopankki", "alt-fil", "alt-lo"}
    assert {r["group"] for r in rows} == {"zh", "en", "cross_lingual"}
    assert len({r["lang"] for r in rows}) >= 90
    # OPUS pairs give both directions around English; News Commentary around Chinese.
    ja = {(r["src_lang"], r["tgt_lang"]) for r in rows if r["lang"] == "jpn_Jpan" and r["task"] == "translation"}
    assert {("jpn_Jpan", "eng_Latn"), ("eng_Latn", "jpn_Jpan"), ("jpn_Jpan", "zho_Hans"), ("zho_Hans", "jpn_Jpan")} <= ja
    # 3.2M records cannot come from a tiny mirror: the build says so instead of pretending.
    assert stats["shortfall"]["total"] == 3_200_000 - len(rows)
    assert "Shortfall" in (out / "README.md").read_text(encoding="utf-8")
    # Every Hub source is pinned to a full commit, and the manifest says which.
    pins = {s["name"]: s.get("revision") for s in result.manifest["sources"]}
    assert all(isinstance(rev, str) and len(rev) == 40 and int(rev, 16) >= 0 for rev in pins.values()), pins
    # Reading by quota: a tiny mirror is read whole (its rows are fewer than the target needs).
    reading = stats["reading"]["sources"]
    assert set(reading) == set(pins) and all(s["read"] == s["available"] for s in reading.values())
    # X-en pairs whose English sentence has a Chinese translation in an en-zh pair become X-zh pairs:
    # every language of the mirror with text of its own gets all four hub directions from real pairs.
    directions: dict[str, set] = {}
    for r in rows:
        if r["task"] == "translation":
            directions.setdefault(r["lang"], set()).add((r["src_lang"], r["tgt_lang"]))
    four = {lang for lang, d in directions.items()
            if {(lang, "eng_Latn"), ("eng_Latn", lang), (lang, "zho_Hans"), ("zho_Hans", lang)} <= d}
    # The recipe names 100+ languages besides the hubs; every one the mirror could fill with real text
    # (the shared corpus has none in a few, Aragonese say) gets all four directions.
    named = recipe_languages(load_recipe(pipeline_path("bayling2.yaml")))
    assert len(named) >= 100, len(named)
    with_text = {code for code in named if has_text(corpus, code)}
    assert len(with_text) >= 95 and with_text <= four, sorted(with_text - four)
    # Somali, Filipino and Lao (not in OPUS-100) come with direct pairs around both hubs, none joined.
    assert {"som_Latn", "tgl_Latn", "lao_Laoo"} <= four
    assert not {"som_Latn", "tgl_Latn", "lao_Laoo"} & set(stats["joined"])
    # ALT's rows hold 13 keys; each source reads the three its tags name (its `bg`, Bengali, is not Bulgarian).
    assert {r["lang"] for r in rows if r["source"] == "alt-fil"} == {"tgl_Latn"}
    assert {r["lang"] for r in rows if r["source"] == "alt-lo"} == {"lao_Laoo"}
    joined = stats["joined"]
    assert "afr_Latn" in joined and "afr_Latn" in four
    assert all('"joined_through":"eng_Latn"' in r["meta"] for r in rows
               if r["lang"] == "afr_Latn" and "zho_Hans" in (r["src_lang"], r["tgt_lang"]))
    assert "from joined pairs" in (out / "README.md").read_text(encoding="utf-8")
