"""Interactive revisions on real NTREX lines: every revision asks for something the answer before
it lacks, and its answer has it."""

from __future__ import annotations

import regex

from datakit.construct.interactive import interactive
from datakit.recipe import load_recipe
from datakit.resources import pipeline_path
from datakit.sources import adapter_for
from datakit.sources.base import RawRow, ReadContext
from datakit.text import dedup_text

# Languages whose NTREX lines have regional variants or second references: the rows that make
# word, term and variant revisions (the others make "now into Chinese" ones).
WITH_VARIANTS = {"eng_Latn", "por_Latn", "fra_Latn", "spa_Latn", "gsw_Latn", "srp_Cyrl", "swh_Latn"}


def _plain(text: str) -> str:
    return text.casefold().replace("’", "'")


def _interactive_records(corpus, lines: int = 120):
    recipe = load_recipe(pipeline_path("local.yaml"))
    source = next(s for s in recipe.sources if s.name == "ntrex128")
    ctx = ReadContext(corpus, None, lines, None, tuple(recipe.pivots))
    adapter = adapter_for(source)
    records = []
    for part in adapter.partitions(source, ctx):
        if not set(part.langs) & WITH_VARIANTS:
            continue
        for row in adapter.read(source, part, ctx):
            if isinstance(row, RawRow):
                # share=1: every line makes an interactive record where a revision can be made.
                record = interactive(row.example, row, source.name, source.license, recipe.seed, recipe.pivots,
                                     ["eng_Latn", "zho_Hans"], 2, 1.0)
                if record is not None:
                    records.append(record)
    return records


def test_every_revision_changes_the_answer_the_way_it_asked(corpus):
    records = _interactive_records(corpus)
    kinds: dict[str, int] = {}
    for r in records:
        answers = [m["content"] for m in r["messages"] if m["role"] == "assistant"]
        requests = [m["content"] for m in r["messages"] if m["role"] == "user"][1:]
        for rev, request, before, after in zip(r["meta"]["revisions"], requests, answers[:-1], answers[1:], strict=True):
            kinds[rev["kind"]] = kinds.get(rev["kind"], 0) + 1
            # The words change, not only quotation marks or spaces.
            assert dedup_text(before) != dedup_text(after), (rev, before, after)
            for wanted in rev.get("words", []) + ([rev["term"]] if "term" in rev else []):
                assert wanted in request
                assert _plain(wanted) not in _plain(before), (wanted, before)
                assert regex.search(rf"(?<!\p{{L}}){regex.escape(wanted)}(?!\p{{L}})", after), (wanted, after)
            if rev["kind"] == "regional_variant":
                assert f"({rev['variant']})" not in request and f"（{rev['variant']}）" not in request
    assert {"another_language", "regional_variant", "include_words", "use_term"} <= set(kinds), kinds
    assert kinds["include_words"] >= 30 and kinds["regional_variant"] >= 30, kinds


def test_interactive_records_are_deterministic(corpus):
    first = [(r["id"], r["messages"]) for r in _interactive_records(corpus, lines=20)]
    again = [(r["id"], r["messages"]) for r in _interactive_records(corpus, lines=20)]
    assert first == again and first
