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

from datakit.languages import display_name
from datakit.recipe import Recipe

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

def size_category(n: int) -> str:
    return next((label for limit, label in SIZE_CATEGORIES if n < limit), "n>1T")


def _table(header: list[str], rows: list[list[Any]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def _pct(n: int, total: int) -> str:
    return f"{100 * n / total:.1f}%" if total else "-"


def render_card(*, recipe: Recipe, counts: Counter, splits: dict[str, list[str]], stats: dict[str, Any],
                manifest: dict[str, Any], command: str) -> str:
    """`counts` maps (group, lang, task, source) -> rows; `splits` maps lang -> split names present."""
    total = sum(counts.values())
    langs = sorted({k[1] for k in counts})
    used_sources = {k[3] for k in counts}
    sources = [s for s in recipe.sources if s.name in used_sources]
    licenses = sorted({s.license for s in sources})
    configs = [{"config_name": "default", "data_files": [{"split": sp, "path": f"data/*/{sp}-*.parquet"}
                                                         for sp in sorted({s for v in splits.values() for s in v})]}]
    configs += [{"config_name": lang, "data_files": [{"split": sp, "path": f"data/{lang}/{sp}-*.parquet"} for sp in splits[lang]]}
                for lang in langs]
    header = {
        "pretty_name": recipe.name,
        "language": sorted({lang.split("_")[0] for lang in langs}),
        "license": licenses[0].lower() if len(licenses) == 1 else "other",
        "task_categories": sorted({TASK_CATEGORIES.get(k[2], "text-generation") for k in counts}),
        "size_categories": [size_category(total)],
        "tags": ["instruction-tuning", "multilingual", "translation", "datakit"],
        "configs": configs,
    }
    if len(licenses) > 1:
        header["license_name"] = "mixed"
        header["license_details"] = "Records keep the licence of their source (column `license`); see the sources table."

    by_group = Counter()
    by_lang_task: dict[str, Counter] = {}
    by_source = Counter()
    tasks = sorted({k[2] for k in counts})
    for (group, lang, task, source), n in counts.items():
        by_group[group] += n
        by_lang_task.setdefault(lang, Counter())[task] += n
        by_source[source] += n
    mix = recipe.balance.mix
    group_rows = [[g, by_group[g], _pct(by_group[g], total), f"{100 * mix[g]:.1f}%"] for g in ("zh", "en", "cross_lingual")]
    lang_rows = [[lang, display_name(lang), sum(c.values()), *[c.get(t, 0) for t in tasks]] for lang, c in sorted(by_lang_task.items(), key=lambda kv: (-sum(kv[1].values()), kv[0]))]
    restricted = [s for s in sources if s.terms in RESTRICTED_TERMS]
    source_rows = [[s.name, s.hub or s.path, s.license, s.terms, by_source[s.name]] for s in sources]
    funnel = [[s["name"], s["in"], s["created"], s["kept"], ", ".join(f"{r}: {n}" for r, n in s["rejected"].items()) or "-", s["unselected"]]
              for s in stats["stages"]]
    shortfall = stats.get("shortfall") or {}

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
        _table(["group", "records", "share", "target share"], group_rows),
        "",
    ]
    if shortfall:
        body += ["**Shortfall**: the data could not fill every quota: " + ", ".join(f"{k}: {v:,}" for k, v in shortfall.items()) + ".", ""]
    body += [
        "## Languages",
        "",
        _table(["code", "language", "records", *tasks], lang_rows),
        "",
        "## Sources and licences",
        "",
        _table(["source", "from", "licence", "terms", "records"], source_rows),
        "",
    ]
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
