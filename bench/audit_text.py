"""Count the instruction-text defects of issue 13 over a build's data/ Parquet files.

    python bench/audit_text.py OUTPUT_DIR [--json FILE]

Reads batch by batch (a million rows stream in bounded memory) and prints one count per
defect, as a reader of the data would find them:
- `redaction_mismatch`: a record whose answer renders a source in the prompt (translation,
  interactive translation, QA) with [PHONE]/[EMAIL] on one side only;
- `article`: "a English", "an Korean": the article before a language name in an English frame;
- `cldr_qualifier`: "Malay (individual language)", "Korean (Hangul)", "Pashto (Arabic)": a
  qualifier or a bare script name in parentheses after a language name, or a variant named by
  its region ("English (India)");
- `latin_name_in_zh_frame`: a Chinese frame naming a language in Latin letters where the
  registry has a Chinese name for it (`latin_name_in_zh_frame_unnamed` counts, for information,
  the languages without one, which keep their English name);
- `noop_revision`: an interactive revision whose answer does not change the words of the one
  before, or asks for words or a term that answer already had;
- `xquad_wording`: a cross-lingual QA frame promising a phrase taken from the passage, answered
  with text that is not in it;
- `list_marker_one_side`: a translation whose lines start with a list marker ("- ") on one side only.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections import Counter
from pathlib import Path

import langcodes
import pyarrow.parquet as pq
import regex

from datakit.construct.interactive import changes, lacks
from datakit.languages import display_name, indefinite_article
from datakit.record_stages.quality import source_bound
from datakit.sources.parallel import LIST_MARKER

COLUMNS = ["messages", "task", "src_lang", "tgt_lang", "source", "meta"]
PLACEHOLDER = regex.compile(r"\[(?:PHONE|EMAIL)\]")
LIST_LINE = regex.compile(LIST_MARKER.pattern, regex.M)
HAN = regex.compile(r"\p{Han}")


@functools.cache
def _qualifier() -> tuple[regex.Pattern, regex.Pattern]:
    """A CLDR qualifier after a language name; a region in parentheses (asked of a revision only:
    a frame may name "Aja (Benin)", ISO's name that tells two languages apart)."""
    from babel import Locale

    en, zh = Locale.parse("en"), Locale.parse("zh")
    scripts = sorted({*en.scripts.values()}, key=len, reverse=True)
    territories = sorted({*en.territories.values(), *zh.territories.values()}, key=len, reverse=True)
    return regex.compile(
        r"(?<=\p{L}) \((?:individual language|macrolanguage|" + "|".join(map(regex.escape, scripts)) + r")\)"
        r"|（(?:个体语言|宏语言)）"), regex.compile(r"(?<=\p{L}) ?[(（](?:[A-Z]{2}|" + "|".join(map(regex.escape, territories)) + r")[)）]")


@functools.cache
def english_names(code: str) -> tuple[str, ...]:
    """Every English name a frame may have used for a language: today's, CLDR's, ISO's."""
    from babel import Locale

    iso = code.split("_")[0]
    names = {display_name(code, "eng_Latn"), langcodes.Language.get(iso).display_name()}
    short = langcodes.Language.get(iso).language
    if short in Locale.parse("en").languages:
        names.add(Locale.parse("en").languages[short])
    return tuple(sorted((n for n in names if not n.startswith("Unknown")), key=len, reverse=True))


@functools.cache
def chinese_name(code: str) -> str | None:
    name = display_name(code, "zho_Hans")
    return name if HAN.search(name) else None


@functools.cache
def _templates() -> dict[str, str]:
    from datakit.construct.templates import QA_EXTRACTIVE, QA_MATH, TRANSLATION

    return {t.id: t.text for t in (*TRANSLATION, *QA_EXTRACTIVE, *QA_MATH)}


def framed_codes(r: dict, meta: dict) -> list[str]:
    """The languages a record's frames name: those of its template's placeholders (not a name the
    source text happens to contain), and those its revisions ask for."""
    template = _templates().get(meta.get("template", ""), "")
    codes = [c for field, c in (("{src}", r["src_lang"]), ("{tgt}", r["tgt_lang"])) if c and field in template]
    return codes + [rev["lang"] for rev in meta.get("revisions", []) if rev.get("lang")]


def _article_errors(prompt: str, codes: list[str]) -> int:
    for code in codes:
        for name in english_names(code):
            for m in regex.finditer(rf"\b([Aa]n?) {regex.escape(name)}\b", prompt):
                if m[1].lower() != indefinite_article(name):
                    return 1
    return 0


def audit_row(r: dict, counts: Counter) -> None:
    msgs = r["messages"] or []
    users = [m["content"] for m in msgs if m["role"] == "user"]
    answers = [m["content"] for m in msgs if m["role"] == "assistant"]
    if not users or not answers:
        return
    meta = json.loads(r["meta"] or "{}")
    task, prompt = r["task"], users[0]
    inst = meta.get("instruction_lang")
    codes = [c for c in (r["src_lang"], r["tgt_lang"]) if c]
    codes += [rev["lang"] for rev in meta.get("revisions", []) if rev.get("lang")]
    counts["rows"] += 1
    if source_bound(r) and bool(PLACEHOLDER.search("\n".join(answers))) != bool(PLACEHOLDER.search("\n".join(users))):
        counts["redaction_mismatch"] += 1
    if inst == "eng_Latn":
        counts["article"] += _article_errors("\n".join(users), codes)
    qualifier, region = _qualifier()
    if inst in ("eng_Latn", "zho_Hans") and any(qualifier.search(u) for u in users) or (
            task == "interactive_translation" and any(region.search(u) for u in users[1:])):
        counts["cldr_qualifier"] += 1
    if inst == "zho_Hans":
        named = framed_codes(r, meta)
        frames = "\n".join(users)
        if any(chinese_name(c) and chinese_name(c) not in frames and any(n in frames for n in english_names(c)) for c in named):
            counts["latin_name_in_zh_frame"] += 1
        if any(not chinese_name(c) for c in named):
            counts["latin_name_in_zh_frame_unnamed"] += 1
    if task == "interactive_translation":
        for rev, previous, answer in zip(meta.get("revisions", []), answers, answers[1:], strict=False):
            wanted = rev.get("words") or ([rev["term"]] if rev.get("term") else [])
            if not changes(previous, answer) or any(not lacks(previous, w) or lacks(answer, w) for w in wanted):
                counts["noop_revision"] += 1
    promised = regex.search(r"taken from this|摘自这段", prompt)
    if task == "cross_lingual_qa" and r["src_lang"] != r["tgt_lang"] and promised and answers[0] not in prompt:
        counts["xquad_wording"] += 1
    # Documents only: in a sentence a leading dash opens direct speech (Hungarian, Russian), where
    # English writes quotation marks; that is a translation, not a list marker.
    markers = len(LIST_LINE.findall(prompt)), len(LIST_LINE.findall(answers[0]))
    if task == "translation" and meta.get("unit") == "document" and markers[0] != markers[1]:
        counts["list_marker_one_side"] += 1


DEFECTS = ["redaction_mismatch", "article", "cldr_qualifier", "latin_name_in_zh_frame", "noop_revision",
           "xquad_wording", "list_marker_one_side"]


def audit(out: Path) -> Counter:
    files = sorted((out / "data").rglob("*.parquet"))
    if not files:
        raise SystemExit(f"{out}/data: no Parquet files")
    counts: Counter = Counter({k: 0 for k in DEFECTS})
    for path in files:
        # Batches within row groups: memory stays bounded whatever the writer's row group size.
        for batch in pq.ParquetFile(path).iter_batches(batch_size=2000, columns=COLUMNS):
            for r in batch.to_pylist():
                audit_row(r, counts)
    return counts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("output", type=Path, help="a build's output folder (holding data/)")
    ap.add_argument("--json", type=Path, help="also write the counts here")
    args = ap.parse_args(argv)
    counts = audit(args.output)
    for k in ["rows", *DEFECTS, "latin_name_in_zh_frame_unnamed"]:
        print(f"{k:32s} {counts[k]:>9,}")
    if args.json:
        args.json.write_text(json.dumps(dict(counts), indent=1, sort_keys=True), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
