"""The dataset card: README.md with the YAML header the Hub reads, then what a reader wants to know.

The header declares languages, licence, task categories, size and the configs (`default` = every
language folder by glob, plus one config per language), so `load_dataset(out)` and
`load_dataset(out, "swh_Latn")` need nothing else. The body is tables computed from the data
and the build's own stats: the mix, the languages, the sources and their licences, the funnel.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import yaml

from datakit.recipe import Recipe
from datakit.write.summary import GroupRow, summarize

SIZE_CATEGORIES = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                   (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B")]
TASK_CATEGORIES = {"general": "text-generation", "translation": "translation", "interactive_translation": "translation",
                   "cross_lingual_qa": "question-answering", "synthesised": "text-generation"}
RESTRICTED_TERMS = {"non-commercial", "research-only", "unknown"}



def _native_lines(report: dict | None) -> list[str]:
    """The LLM-translated instruction templates, when the build made any: people should know that
    some frames were machine-translated, and how many were turned away."""
    if not report:
        return []
    accepted = sum(v["accepted"] for v in report.values())
    left = sum(sum(v["left_out"].values()) for v in report.values())
    return [f"- translation instructions in {len(report)} languages other than zh/en are framed by our English templates "
            f"translated by an LLM: {accepted} templates accepted, {left} left out (placeholders, language ID, refusals)"]


def mix_statement(target_size: int | None, mix: dict[str, float]) -> str:
    """Whether balance shaped the mix, as the card and the report say it: with no target size every
    record that passes is kept, and a "target" beside the shares would read as a quota the build missed."""
    wanted = ", ".join(f"{g} {100 * v:.1f}%" for g, v in mix.items())
    if target_size is None:
        return ("No target size was set (balance.target_size is empty): every record that passed the filters is kept, "
                f"so the mix is what the sources hold; the recipe's mix ({wanted}) was not applied.")
    return f"Balanced to a target size of {target_size:,} records with the mix {wanted}."


def size_category(n: int) -> str:
    return next((label for limit, label in SIZE_CATEGORIES if n < limit), "n>1T")


def _table(header: list[str], rows: list[list[Any]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def _pct(row: GroupRow) -> str:
    return f"{row.percent:.1f}%" if row.percent is not None else "-"


def render_card(*, recipe: Recipe, counts: Counter, splits: dict[str, list[str]], stats: dict[str, Any],
                manifest: dict[str, Any], command: str) -> str:
    """`counts` maps (group, lang, task, source) -> rows; `splits` maps lang -> split names present.
    The tables come from the build's one `Summary`, which the report and the console render too."""
    summary = summarize(stats, counts, recipe.balance.mix)
    total = summary.total
    langs = sorted(row.code for row in summary.languages)
    sources = [s for s in recipe.sources if s.name in summary.sources]
    licenses = sorted({s.license for s in sources})
    configs = [{"config_name": "default", "data_files": [{"split": sp, "path": f"data/*/{sp}-*.parquet"}
                                                         for sp in sorted({s for v in splits.values() for s in v})]}]
    configs += [{"config_name": lang, "data_files": [{"split": sp, "path": f"data/{lang}/{sp}-*.parquet"} for sp in splits[lang]]}
                for lang in langs]
    header = {
        "pretty_name": recipe.name,
        "language": sorted({lang.split("_")[0] for lang in langs}),
        "license": licenses[0].lower() if len(licenses) == 1 else "other",
        "task_categories": sorted({TASK_CATEGORIES.get(task, "text-generation") for task in summary.tasks}),
        "size_categories": [size_category(total)],
        "tags": ["instruction-tuning", "multilingual", "translation", "datakit"],
        "configs": configs,
    }
    if len(licenses) > 1:
        header["license_name"] = "mixed"
        header["license_details"] = "Records keep the licence of their source (column `license`); see the sources table."

    tasks = summary.tasks
    targeted = recipe.balance.target_size is not None  # without one, balance keeps everything: the mix is the sources'
    group_rows = [[row.group, row.records, _pct(row), *([f"{row.target_percent:.1f}%"] if targeted else [])] for row in summary.groups]
    lang_rows = [[row.code, row.name, row.records, *row.per_task] for row in summary.languages]
    restricted = [s for s in sources if s.terms in RESTRICTED_TERMS]
    source_rows = [[s.name, s.hub or s.path, s.license, s.terms, summary.sources[s.name]] for s in sources]
    funnel = [[s.name, s.in_, s.created, s.kept, s.rejected_text(), s.unselected] for s in summary.funnel]

    body = [
        f"# {recipe.name}",
        "",
        recipe.description.strip() or "A multilingual instruction-tuning corpus built with datakit, following the BayLing 2 recipe: "
        "Chinese and English general instructions plus cross-lingual instructions that tie every other language to the two hubs.",
        "",
        f"**{total:,} records in {len(langs)} languages.**",
        "",
        "## Loading",
        "",
        "```python",
        "from datasets import load_dataset",
        'ds = load_dataset("<this folder or ORG/NAME>")              # every language',
        f'sw = load_dataset("<this folder or ORG/NAME>", "{langs[0] if langs else "swh_Latn"}")   # one language (config = language code)',
        "```",
        "",
        "Each row: `id` (hash of the content), `messages` (role/content turns), `lang`, `src_lang`/`tgt_lang` (translation-shaped records), "
        "`task`, `group` (zh / en / cross_lingual), `source`, `license`, `scores` and `meta` (JSON strings: language-ID scores, provenance, template).",
        "",
        "## Mix",
        "",
        mix_statement(recipe.balance.target_size, dict(recipe.balance.mix)),
        "",
        _table(["group", "records", "share", *(["target share"] if targeted else [])], group_rows),
        "",
    ]
    warnings = stats.get("warnings") or []
    if warnings:  # files, languages and sources that contributed nothing: never only a cell in a table
        body += ["## Warnings", "", *(f"- {_warning_line(w)}" for w in warnings), ""]
    if summary.shortfall:
        body += ["**Shortfall**: the data could not fill every quota: " + summary.shortfall_text() + ".", ""]
    body += [
        "## Languages",
        "",
        _table(["code", "language", "records", *tasks], lang_rows),
        "",
    ]
    joined = stats.get("joined") or {}
    if joined:  # X-zh from X-en + en-zh with the same English: say how much of each language came that way
        records = {row.code: row.records for row in summary.languages}
        body += ["Records whose Chinese (or other pivot) side was joined through a shared English sentence, per language "
                 "(the rest come from direct pairs):", "",
                 _table(["code", "records", "from joined pairs", "from direct pairs"],
                        [[lang, records.get(lang, n), n, records.get(lang, n) - n] for lang, n in joined.items()]), ""]
    body += [
        "## Sources and licences",
        "",
        _table(["source", "from", "licence", "terms", "records"], source_rows),
        "",
    ]
    reading = stats.get("reading")
    if reading:  # a target size: each source was read only as far as the mix needed
        rows = [[name, r["available"], r["read"], f"{100 * r['read'] / max(r['available'], 1):.1f}%", r["kept"]]
                for name, r in reading["sources"].items()]
        body += ["**Read by quota** (the target size needed only part of the sources; rows chosen by a seeded hash of "
                 f"their position, {reading['rounds']} round{'s' * (reading['rounds'] != 1)}):", "",
                 _table(["source", "rows available", "rows read", "share read", "records kept"], rows), ""]
        for mismatch in reading.get("metadata_mismatches", []):
            body += [f"- metadata disagreed with the data: {mismatch}; the plan used what the data holds", ""]
    pinned = [f"`{s.name}` @ `{s.revision}`" for s in sources if s.hub and s.revision]
    if pinned:
        body += ["Hub revisions: " + ", ".join(pinned) + ".", ""]
    if restricted:
        body += ["**Restricted sources**: " + ", ".join(f"`{s.name}` ({s.terms})" for s in restricted)
                 + ". Records from these sources may not be usable commercially or redistributed; filter on the `source` column, "
                 "or rebuild without them.", ""]
    body += [
        "## Filter funnel",
        "",
        _table(["stage", "in", "created", "kept", "rejected (by reason)", "left out by balance"], funnel),
        "",
        "## How it was built",
        "",
        *_native_lines(stats.get("native_templates")),
        f"- command: `{command}`",
        f"- recipe: `{recipe.name}`, hash `{manifest['recipe']['hash'][:16]}`, seed {manifest['seed']}",
        "- packages: " + ", ".join(f"{k} {v}" for k, v in manifest["packages"].items()),
        "",
    ]
    return "---\n" + yaml.safe_dump(header, sort_keys=False, allow_unicode=True) + "---\n\n" + "\n".join(body)


def _warning_line(w: dict[str, str]) -> str:
    """One stats.json warning as the card lists it: source, file and what happened."""
    where = f"`{w['source']}`: " if w.get("source") else ""
    return f"{where}`{w['file']}`: {w['detail']} ({w['reason']})"
