"""The one summary of a build that the card, the report and the console render."""

from __future__ import annotations

from collections import Counter

from datakit.write.summary import listing, plan, summarize

MIX = {"zh": 0.5, "en": 0.2, "cross_lingual": 0.3}
STATS = {"stages": [{"name": "read", "in": 10, "created": 0, "repeated": 0, "kept": 9, "rejected": {"empty": 1}, "unselected": 0},
                    {"name": "balance", "in": 9, "created": 0, "repeated": 1, "kept": 8, "rejected": {}, "unselected": 2}],
         "shortfall": {"zh": 1200, "total": 1200}}
# first named: yor, then swh; both have 3 records, so the two orders differ on the tie
COUNTS = Counter({("cross_lingual", "yor_Latn", "translation", "flores"): 3, ("zh", "zho_Hans", "general", "alpaca_zh"): 2,
                  ("cross_lingual", "swh_Latn", "translation", "flores"): 2, ("cross_lingual", "swh_Latn", "cross_lingual_qa", "qa"): 1})


def test_summary_counts_groups_languages_sources_and_funnel():
    s = summarize(STATS, COUNTS, MIX)
    assert s.total == 8 and s.tasks == ("cross_lingual_qa", "general", "translation")
    assert [(g.group, g.records, g.percent, g.target_percent) for g in s.groups] == [
        ("zh", 2, 25.0, 50.0), ("en", 0, 0.0, 20.0), ("cross_lingual", 6, 75.0, 30.0)]
    assert [(r.code, r.records, r.per_task) for r in s.languages] == [
        ("swh_Latn", 3, (1, 0, 2)), ("yor_Latn", 3, (0, 0, 3)), ("zho_Hans", 2, (0, 2, 0))]
    assert [r.code for r in s.largest_languages] == ["yor_Latn", "swh_Latn", "zho_Hans"]  # Counter.most_common's order
    assert s.sources == {"flores": 5, "alpaca_zh": 2, "qa": 1}
    assert [(f.name, f.rejected_text(), f.repeated, f.unselected) for f in s.funnel] == [("read", "empty: 1", 0, 0), ("balance", "-", 1, 2)]
    assert s.shortfall_text() == "zh: 1,200, total: 1,200"


def test_an_empty_corpus_has_no_share():
    s = summarize({"stages": []}, Counter(), MIX)
    assert s.total == 0 and all(g.percent is None for g in s.groups) and s.languages == () and s.shortfall == {}


def test_listing_formats_each_number_its_way():
    assert listing({"a": 1234, "b": 5}) == "a: 1234, b: 5"
    assert listing({"a": 1234}, "{0} {1:,}") == "a 1,234"


def test_plan_selects_everything_without_quotas_and_sorts_cells():
    available = {"zh": {"zho_Hans|general": 5}, "cross_lingual": {"swh_Latn|translation": 7, "yor_Latn|translation": 4}}
    keep_all = plan(available, {}, None, MIX)
    assert [(g.mix.group, g.mix.records, g.available, g.languages) for g in keep_all.groups] == [
        ("zh", 5, 5, 1), ("en", 0, 0, 0), ("cross_lingual", 11, 11, 2)]
    quotas = {"zh": {"zho_Hans|general": 2}, "cross_lingual": {"swh_Latn|translation": 2, "yor_Latn|translation": 0}}
    p = plan(available, quotas, {"total": 3}, MIX)
    assert [(c.lang, c.available, c.selected) for c in p.cells] == [("swh_Latn", 7, 2), ("zho_Hans", 5, 2), ("yor_Latn", 4, 0)]
    assert [g.languages for g in p.groups] == [1, 0, 1] and p.shortfall == {"total": 3}
    assert p.groups[0].mix.percent == 50.0
