"""Pairs completed through English (sources/join.py): X-en + en-zh with the same English -> X-zh."""

from __future__ import annotations

import json
import textwrap

from contract import check_contract

from datakit.build import BuildOptions, run_build
from datakit.sources.join import sentence_key

NTREX = "ntrex128/NTREX-128"


def lines(corpus, name: str, n: int) -> list[str]:
    return (corpus / NTREX / name).read_text(encoding="utf-8").splitlines()[:n]


def test_sentence_key_folds_what_dedup_folds():
    assert sentence_key("Hello, World!") == sentence_key("hello world")
    assert sentence_key("Hello world") != sentence_key("Hello there")


def test_x_en_pairs_gain_chinese_through_an_en_zh_pair(corpus, tmp_path):
    eng, swa, zho = (lines(corpus, f, 30) for f in ("newstest2019-src.eng.txt", "newstest2019-ref.swa.txt",
                                                      "newstest2019-ref.zho-CN.txt"))
    (tmp_path / "pairs").mkdir()
    # sw-en has 30 lines; en-zh only the first 20 (with the English re-cased and re-punctuated, as
    # another corpus would have it): 20 Swahili lines can be joined, 10 cannot.
    (tmp_path / "pairs" / "sw-en.tsv").write_text("".join(f"{a}\t{b}\n" for a, b in zip(swa, eng, strict=True)), encoding="utf-8")
    (tmp_path / "pairs" / "en-zh.tsv").write_text("".join(f"{a.upper().rstrip('.')}\t{b}\n" for a, b in zip(eng[:20], zho[:20], strict=True)),
                                                  encoding="utf-8")
    recipe = tmp_path / "join.yaml"
    recipe.write_text(textwrap.dedent("""
        name: joined
        sources:
          - {name: sw-en, format: bitext, path: pairs/sw-en.tsv, columns: [sw, en], header: false, license: CC-BY-SA-4.0,
             join: {pivot: zho_Hans, through: eng_Latn, sources: [en-zh]}}
          - {name: en-zh, format: bitext, path: pairs/en-zh.tsv, columns: [en, zh], header: false, license: CC-BY-SA-4.0}
        filters: {lid: {enabled: false}, quality: {enabled: false}}
    """), encoding="utf-8")
    result = run_build(BuildOptions(recipe=str(recipe), data_dir=str(tmp_path), output=str(tmp_path / "out"), workers=1))
    rows = check_contract(tmp_path / "out")
    sw_zh = [r for r in rows if r["source"] == "sw-en" and "zho_Hans" in (r["src_lang"], r["tgt_lang"]) and r["task"] == "translation"]
    assert {(r["src_lang"], r["tgt_lang"]) for r in sw_zh} == {("swh_Latn", "zho_Hans"), ("zho_Hans", "swh_Latn")}
    assert len({json.loads(r["meta"])["line"] for r in sw_zh}) == 20
    assert all(json.loads(r["meta"])["joined_through"] == "eng_Latn" for r in sw_zh)
    by_line = {json.loads(r["meta"])["line"]: r for r in sw_zh if r["src_lang"] == "swh_Latn"}
    assert by_line[3]["messages"][1]["content"] == zho[2]  # the Chinese of the same English sentence
    direct = [r for r in rows if r["source"] == "sw-en" and "eng_Latn" in (r["src_lang"], r["tgt_lang"])]
    assert direct and not any("joined_through" in r["meta"] for r in direct)
    assert result.stats["joined"]["swh_Latn"] == len(sw_zh)
    assert "from joined pairs" in (tmp_path / "out" / "README.md").read_text(encoding="utf-8")
