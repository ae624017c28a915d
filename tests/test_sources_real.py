"""Source planning on the real corpus: languages, variants, scripts."""

from __future__ import annotations

from datakit.recipe import load_recipe
from datakit.resources import pipeline_path
from datakit.sources import adapter_for
from datakit.sources.base import ReadContext


def ntrex(corpus, sample=None):
    recipe = load_recipe(pipeline_path("local.yaml"))
    source = next(s for s in recipe.sources if s.name == "ntrex128")
    ctx = ReadContext(corpus, None, sample, None, tuple(recipe.pivots))
    return source, ctx, adapter_for(source).partitions(source, ctx)


def test_ntrex_is_a_star_around_the_hubs_with_variants_as_references(corpus):
    source, ctx, parts = ntrex(corpus, sample=2)
    langs = [p.langs for p in parts]
    non_hub = {lang[0] for lang in langs if len(lang) == 1}
    assert len(non_hub) >= 120
    assert ("eng_Latn", "zho_Hans") in langs
    # Regional variants and second references are not languages: no eng_GB, por_BR, a zho_Hant of its own.
    assert "zho_Hant" in non_hub and not any("_" not in c or c.count("_") > 1 for c in non_hub)
    # CLDR would guess Latin for Hassaniya; NTREX writes it in Arabic script.
    assert "mey_Arab" in non_hub and "shi_Arab" in non_hub
    por = next(p for p in parts if p.langs == ("por_Latn",))
    row = next(iter(adapter_for(source).read(source, por, ctx)))
    assert set(row.example.variants["por_Latn"]) == {"BR"}
    assert set(row.example.variants["eng_Latn"]) == {"GB", "US", "IN"}
    spa = next(p for p in parts if p.langs == ("spa_Latn",))
    row = next(iter(adapter_for(source).read(source, spa, ctx)))
    assert "MX" in row.example.variants["spa_Latn"] and any(k.startswith("ref:") for k in row.example.variants["spa_Latn"])


def test_partitions_are_line_ranges_that_cover_each_file_once(corpus):
    recipe = load_recipe(pipeline_path("local.yaml"))
    source = next(s for s in recipe.sources if s.name == "ntrex128")
    ctx = ReadContext(corpus, None, None, frozenset({"swh_Latn", "eng_Latn", "zho_Hans"}), tuple(recipe.pivots), rows_per_task=500)
    parts = [p for p in adapter_for(source).partitions(source, ctx) if p.langs == ("swh_Latn",)]
    assert [(p.params["start"], p.params["count"]) for p in parts] == [(0, 500), (500, 500), (1000, 500), (1500, 497)]
    lines = [row.loc["line"] for p in parts for row in adapter_for(source).read(source, p, ctx)]
    assert lines == list(range(1, 1998))


def test_udhr_articles_marked_missing_are_read_errors_not_translations(corpus):
    # Some complete-stage UDHR files still write "[missing]" for a paragraph they lack (Luganda has
    # seven): such an article does not translate the whole pivot article.
    from datakit.sources.base import RawError, RawRow
    from datakit.sources.parallel import UDHR_MISSING

    recipe = load_recipe(pipeline_path("local.yaml"))
    source = next(s for s in recipe.sources if s.name == "udhr")
    ctx = ReadContext(corpus, None, None, frozenset({"lug_Latn", "bam_Latn", "eng_Latn", "zho_Hans"}), tuple(recipe.pivots))
    adapter = adapter_for(source)
    items = [item for part in adapter.partitions(source, ctx) for item in adapter.read(source, part, ctx)]
    missing = [i for i in items if isinstance(i, RawError) and i.reason == "missing_text"]
    rows = [i for i in items if isinstance(i, RawRow)]
    assert missing and all(UDHR_MISSING in i.raw for i in missing)
    assert rows and not any(UDHR_MISSING in text for r in rows for text in r.example.texts.values())
