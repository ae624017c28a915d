"""out/report/: the pages a data engineer audits a build with, readable offline in a browser.

`report.html`: what was built (the mix, and whether a target size shaped it), four plots (plots.py),
then every removal reason (stage and reason) with its count, its share of the stage and a few of
the records it removed: their turns shortened, source file and line, language, and what the stage
found (the label and probability language ID read, the record a duplicate was folded into, the
benchmark item, the quality score). `kept.html`: a few kept records per language and task. Every
record shown carries the `python -m datakit.why` command that explains it, and `why` points back
here. The examples are chosen by a seeded rank (examples.py), so the folder has the same bytes for
the same build; nothing is loaded from the network (inline CSS, no scripts, local images).
"""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from datakit.languages import display_name
from datakit.record_stages.lid import SCORE_HISTOGRAM, UNSUPPORTED_HISTOGRAM
from datakit.store import atomic_path
from datakit.write import examples, plots
from datakit.write.anchors import KEPT_PAGE, REPORT_PAGE, language_anchor, reason_anchor
from datakit.write.card import mix_statement
from datakit.write.evidence import (
    DUPLICATE_KEYS,
    duplicate_of,
    first_user_text,
    lid_found,
    loads,
    location,
    matched,
    other_scores,
    shorten,
    why_command,
)
from datakit.write.summary import Summary, summarize

REJECTED_PER_REASON = 5
KEPT_PER_CELL = 2
TURN_CHARS = 300
MAX_TURNS = 4
PLOTS = {
    "mix.png": "Mix: each group's share of the records, and the largest languages",
    "funnel.png": "Removed records per stage and reason (log scale), with each reason's share of what its stage handled",
    "lengths.png": "Length of records (UTF-8 bytes of all turns), one panel per group",
    "lid_scores.png": "Language ID: probability of the expected language for each checked answer",
}
STYLE = """body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}img{max-width:100%}
table{border-collapse:collapse;font-size:13px;margin:1em 0}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}
td:first-child,th:first-child{text-align:left}td.l{text-align:left}figure{margin:2em 0}
.ex{border:1px solid #ddd;border-radius:4px;padding:.5em .8em;margin:.6em 0;font-size:13px}
.ex .head{color:#555}.turn{margin:.25em 0;white-space:pre-wrap}.role{display:inline-block;min-width:5.5em;font-weight:bold;color:#555}
.found{background:#fff6e0;padding:.2em .4em;margin:.3em 0}.orig{border-left:3px solid #4c72b0;padding-left:.6em;margin:.3em 0}
code.cmd{display:block;background:#f4f4f4;padding:.2em .4em;margin-top:.3em}section{margin:1.5em 0}
.note{background:#eef3fb;padding:.5em .8em;border-radius:4px}"""


def _esc(value: Any) -> str:
    return html.escape(str(value))


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], raw: int | None = None) -> str:
    """A table of escaped cells; column `raw` holds HTML made here (a link)."""
    head = "".join(f"<th>{_esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c if i == raw else _esc(c)}</td>" for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _page(title: str, body: str) -> str:
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{_esc(title)}</title>\n'
            f"<style>{STYLE}</style></head><body>\n{body}\n</body></html>\n")


def _turns(row: dict[str, Any]) -> str:
    messages = row.get("messages") or []
    if not messages:  # an unreadable input row: what was read of it
        return f'<div class="turn"><span class="role">raw input</span>{_esc(shorten(first_user_text(row), TURN_CHARS) or "(empty)")}</div>'
    shown = [f'<div class="turn"><span class="role">{_esc(m["role"])}</span>{_esc(shorten(m["content"], TURN_CHARS) or "(empty)")}</div>'
             for m in messages[:MAX_TURNS]]
    if len(messages) > MAX_TURNS:
        shown.append(f'<div class="turn"><span class="role">…</span>{len(messages) - MAX_TURNS} more turns</div>')
    return "".join(shown)


def _found(row: dict[str, Any], meta: dict[str, Any]) -> list[str]:
    """What the removing stage found, in words: language ID's reading, the match, the scores.
    Kept records have nothing to explain here (their command tells all)."""
    if "stage" not in row:
        return []
    scores = loads(row.get("scores"))
    lines = lid_found(scores) if row["stage"] == "lid" else []
    lines += [f"{k}: {v}" for k, v in matched(meta).items() if k not in DUPLICATE_KEYS]
    own = other_scores(scores).get(row["stage"])  # the scores of the stage that removed it (quality's, the judge's)
    if isinstance(own, dict):
        lines.append(f"{row['stage']}: " + ", ".join(f"{k} {v}" for k, v in sorted(own.items())))
    return lines


def _example(row: dict[str, Any], folder: str, originals: dict[str, dict[str, Any]]) -> str:
    meta = loads(row.get("meta"))
    head = " · ".join(_esc(v) for v in (row.get("lang") or "no language", row.get("task") or "-", row.get("source"), location(meta)))
    parts = [f'<div class="ex" id="r-{_esc(row["id"])}"><div class="head"><code>{_esc(row["id"])}</code> · {head}</div>', _turns(row)]
    found = _found(row, meta)
    if found:
        parts.append('<div class="found">' + "<br>".join(_esc(line) for line in found) + "</div>")
    dup = duplicate_of(meta)
    if dup:
        original = originals.get(dup)
        if original is None:
            parts.append(f'<div class="orig">duplicate of <code>{_esc(dup)}</code>, which is not in data/ (a later stage '
                         "removed it or balance left it out: its command says which)<code class=\"cmd\">"
                         f"{_esc(why_command(folder, dup))}</code></div>")
        else:
            where = location(loads(original.get("meta")))
            parts.append(f'<div class="orig">duplicate of <code>{_esc(dup)}</code> (kept; {_esc(original.get("source"))} · '
                         f'{_esc(where)}){_turns(original)}</div>')
    parts.append(f'<code class="cmd">{_esc(why_command(folder, row["id"]))}</code></div>')
    return "".join(parts)


def _removed_section(summary: Summary, chosen: dict[tuple[str, ...], list[dict[str, Any]]], folder: str,
                     originals: dict[str, dict[str, Any]]) -> str:
    rows, sections = [], []
    for stage, reason, n, share in plots.removals(summary.funnel):
        anchor = reason_anchor(stage, reason)
        shown = chosen.get((stage, reason), [])
        rows.append([stage, reason, f"{n:,}", plots.percent(share), f'<a href="#{anchor}">{len(shown)} shown</a>' if shown else "-"])
        if shown:
            body = "".join(_example(r, folder, originals) for r in shown)
        else:
            body = "<p>Not written to rejected/: records left out by quota are not judged, only not selected.</p>"
        sections.append(f'<section id="{anchor}"><h3>{_esc(stage)}: {_esc(reason)} ({n:,} records, {_esc(plots.percent(share))} of the stage)</h3>'
                        f"{body}</section>")
    if not rows:
        return "<h2>Removed records</h2><p>No stage removed any record.</p>"
    return ("<h2>Removed records, by reason</h2><p>Share: of the records the stage handled (in + created + repeated). "
            "Examples are chosen by a seeded rank of their id, spread over sources and languages.</p>"
            + _table(["stage", "reason", "removed", "share of the stage", "examples"], rows, raw=4) + "".join(sections))


def _kept_page(title: str, kept: dict[tuple[str, ...], list[dict[str, Any]]], summary: Summary, folder: str) -> str:
    by_lang: dict[str, list[tuple[str, list[dict[str, Any]]]]] = {}
    for (lang, task), rows in kept.items():
        by_lang.setdefault(lang, []).append((task, rows))
    order = [row.code for row in summary.languages if row.code in by_lang]
    index = " · ".join(f'<a href="#{language_anchor(code)}">{_esc(code)}</a>' for code in order)
    sections = []
    for code in order:
        tasks = "".join(f"<h4>{_esc(task)}</h4>" + "".join(_example(r, folder, {}) for r in rows) for task, rows in by_lang[code])
        sections.append(f'<section id="{language_anchor(code)}"><h3>{_esc(code)} {_esc(display_name(code))}</h3>{tasks}</section>')
    return _page(f"{title}: kept records", f"<h1>{_esc(title)}: kept records</h1><p><a href=\"{REPORT_PAGE}\">back to the report</a>. "
                 f"Up to {KEPT_PER_CELL} records per language and task, chosen by a seeded rank of their id.</p>"
                 f"<p>{index}</p>" + "".join(sections))


def write_report(out: Path, *, stats: dict[str, Any], counts: Counter, mix: dict[str, float], groups: np.ndarray,
                 nbytes: np.ndarray, title: str, seed: int = 0, target_size: int | None = None) -> Path:
    """report.html, kept.html and the plots under out/report/. `seed` chooses the examples (the
    recipe's seed); `target_size` None says the mix is what the sources hold."""
    folder = out / "report"
    folder.mkdir(parents=True, exist_ok=True)
    summary = summarize(stats, counts, mix)
    lid = next((s for s in stats["stages"] if s["name"] == "lid"), None)
    lid_report = (lid or {}).get("report", {})
    per_lang = {lang: c for lang, c in sorted(lid_report.items()) if not lang.startswith("~")}
    unsupported_langs = [lang for lang, c in per_lang.items() if c.get("unsupported")]
    plots.plot_mix(folder / "mix.png", summary, target=target_size is not None)
    plots.plot_funnel(folder / "funnel.png", summary.funnel)
    plots.plot_lengths(folder / "lengths.png", groups, nbytes)
    plots.plot_lid(folder / "lid_scores.png", lid_report.get(SCORE_HISTOGRAM, {}), lid_report.get(UNSUPPORTED_HISTOGRAM), unsupported_langs)

    rejected_files = sorted((out / "rejected").glob("*/*.parquet"))
    data_files = sorted((out / "data").glob("*/*.parquet"))
    chosen = examples.choose(rejected_files, examples.REJECTED_BUCKET, examples.REJECTED_SPREAD, seed, REJECTED_PER_REASON)
    originals = examples.originals(out / "data", chosen)
    kept = examples.choose(data_files, examples.KEPT_BUCKET, examples.KEPT_SPREAD, seed, KEPT_PER_CELL)
    name = out.resolve().name

    funnel = [[s.name, s.in_, s.created, s.repeated, s.kept, s.rejected_text(), s.unselected] for s in summary.funnel]
    langs = [[f'<a href="{KEPT_PAGE}#{language_anchor(row.code)}">{_esc(row.code)}</a>', row.name, row.records, *row.per_task]
             for row in summary.languages]
    lid_rows = [[lang, c.get("checked", 0), c.get("kept", 0), c.get("rejected", 0), c.get("unsupported", 0)] for lang, c in per_lang.items()]
    figures = "".join(f'<figure><img src="{img}" alt="{_esc(caption)}"><figcaption>{_esc(caption)}</figcaption></figure>'
                      for img, caption in PLOTS.items())
    body = f"""<h1>{_esc(title)}</h1>
<p>{summary.total:,} records in {len(summary.languages)} languages; examples chosen with seed {seed}.
Kept examples per language and task: <a href="{KEPT_PAGE}">{KEPT_PAGE}</a>.</p>
<p class="note">{_esc(mix_statement(target_size, mix))}</p>
{"<p><b>Shortfall</b>: " + _esc(summary.shortfall_text()) + "</p>" if summary.shortfall else ""}
<p>Every record shown here comes with the command that explains it (which stage kept or removed it, why, its scores),
to run in the folder that holds <code>{_esc(name)}/</code>, e.g. <code>{_esc(why_command(name, "ID"))}</code>.</p>
{figures}
{_removed_section(summary, chosen, name, originals)}
<h2>Filter funnel</h2>{_table(["stage", "in", "created", "repeated", "kept", "rejected", "left out"], funnel)}
<h2>Languages</h2>{_table(["code", "language", "records", *summary.tasks], langs, raw=0)}
<h2>Language ID per language</h2>
<p>{len(unsupported_langs)} languages have no label in the model; their records keep the script check and are marked unsupported.</p>
{_table(["code", "checked", "kept", "rejected", "unsupported by the model"], lid_rows)}"""
    with atomic_path(folder / REPORT_PAGE) as tmp:
        tmp.write_text(_page(f"{title}: build report", body), encoding="utf-8")
    with atomic_path(folder / KEPT_PAGE) as tmp:
        tmp.write_text(_kept_page(title, kept, summary, name), encoding="utf-8")
    return folder / REPORT_PAGE
