"""out/report/: report.html and its plots, readable offline in a browser.

Four plots (matplotlib, PNG): the mix against its target (groups, and the largest languages), the
filter funnel per stage and reason, the length distribution of each group, and the distribution of
the language-ID probability of the answers. The page beside them holds the tables a reviewer
checks: the funnel, the languages with their tasks, the language-ID report per language, the
shortfall. Everything comes from stats.json and the selected records' keys.
"""

from __future__ import annotations

import html
from collections import Counter
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from datakit.record_stages.lid import SCORE_HISTOGRAM  # noqa: E402
from datakit.store import atomic_path  # noqa: E402
from datakit.write.summary import GROUPS, FunnelRow, Summary, summarize  # noqa: E402

PLOTS = {
    "mix.png": "Mix: share of each group against the target, and the largest languages",
    "funnel.png": "Filter funnel: records kept and removed (by reason) at each stage",
    "lengths.png": "Length of records (UTF-8 bytes of all turns) per group",
    "lid_scores.png": "Language ID: probability of the expected language for each checked answer",
}


def _save(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)


def plot_mix(path: Path, summary: Summary) -> None:
    """Groups against their target share, and the 30 largest languages."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(14, 6), gridspec_kw={"width_ratios": [1, 2], "wspace": 0.55})
    x = np.arange(len(summary.groups))
    a.bar(x - 0.2, [row.percent or 0.0 for row in summary.groups], 0.4, label="corpus")
    a.bar(x + 0.2, [row.target_percent for row in summary.groups], 0.4, label="target")
    a.set_xticks(x, [row.group for row in summary.groups])
    a.set_ylabel("% of records")
    a.legend()
    top = summary.largest_languages[:30][::-1]
    b.barh([f"{row.code} {row.name}"[:32] for row in top], [row.records for row in top])
    b.set_xlabel("records")
    b.set_title(f"largest {len(top)} of {len(summary.languages)} languages")
    _save(fig, path)


def plot_funnel(path: Path, stages: tuple[FunnelRow, ...]) -> None:
    """Per stage, the records kept and, stacked after them, those removed by each reason."""
    fig, ax = plt.subplots(figsize=(12, 0.6 * len(stages) + 1.5))
    names = [s.name for s in stages][::-1]
    ordered = stages[::-1]
    ax.barh(names, [s.kept for s in ordered], label="kept", color="#4c72b0")
    left = np.array([s.kept for s in ordered], dtype=float)
    reasons = sorted({r for s in stages for r in s.rejected} | ({"left out by balance"} if any(s.unselected for s in stages) else set()))
    colors = plt.cm.tab20(np.linspace(0, 1, len(reasons))) if reasons else []
    for reason, color in zip(reasons, colors, strict=True):
        widths = np.array([s.unselected if reason == "left out by balance" else s.rejected.get(reason, 0) for s in ordered], dtype=float)
        if widths.any():
            ax.barh(names, widths, left=left, label=reason, color=color)
            left += widths
    ax.set_xlabel("records (kept + removed = in + created + repeated)")
    ax.legend(fontsize=7, loc="lower right", ncol=2)
    _save(fig, path)


def plot_lengths(path: Path, groups: np.ndarray, nbytes: np.ndarray) -> None:
    fig, ax = plt.subplots(figsize=(9, 5))
    positive = nbytes[nbytes > 0]
    bins = np.logspace(np.log10(max(1, positive.min(initial=1))), np.log10(max(10, positive.max(initial=10))), 50)
    for g in GROUPS:
        mine = nbytes[(groups == g) & (nbytes > 0)]
        if len(mine):
            ax.hist(mine, bins=bins, histtype="step", linewidth=1.6, label=f"{g} (median {int(np.median(mine))} bytes)")
    ax.set_xscale("log")
    ax.set_xlabel("bytes per record")
    ax.set_ylabel("records")
    if ax.get_legend_handles_labels()[0]:  # an empty corpus has no groups to name
        ax.legend()
    _save(fig, path)


def plot_lid(path: Path, histogram: dict[str, int]) -> None:
    fig, ax = plt.subplots(figsize=(9, 4))
    bins = sorted(histogram)
    ax.bar([int(b) / 100 + 0.025 for b in bins], [histogram[b] for b in bins], width=0.045)
    ax.set_xlim(0, 1)
    ax.set_xlabel("P(expected language) of the answer, as the model reads it")
    ax.set_ylabel("checked answers")
    _save(fig, path)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def write_report(out: Path, *, stats: dict[str, Any], counts: Counter, mix: dict[str, float], groups: np.ndarray,
                 nbytes: np.ndarray, title: str) -> Path:
    folder = out / "report"
    folder.mkdir(parents=True, exist_ok=True)
    summary = summarize(stats, counts, mix)
    plot_mix(folder / "mix.png", summary)
    plot_funnel(folder / "funnel.png", summary.funnel)
    plot_lengths(folder / "lengths.png", groups, nbytes)
    lid = next((s for s in stats["stages"] if s["name"] == "lid"), None)
    report = (lid or {}).get("report", {})
    plot_lid(folder / "lid_scores.png", report.get(SCORE_HISTOGRAM, {}))

    funnel = [[s.name, s.in_, s.created, s.repeated, s.kept, s.rejected_text(), s.unselected] for s in summary.funnel]
    langs = [[row.code, row.name, row.records, *row.per_task] for row in summary.languages]
    lid_rows = [[lang, c.get("checked", 0), c.get("kept", 0), c.get("rejected", 0), c.get("unsupported", 0)]
                for lang, c in sorted(report.items()) if lang != SCORE_HISTOGRAM]
    figures = "".join(f'<figure><img src="{name}" alt="{html.escape(caption)}"><figcaption>{html.escape(caption)}</figcaption></figure>'
                      for name, caption in PLOTS.items())
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}: build report</title>
<style>body{{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}}img{{max-width:100%}}
table{{border-collapse:collapse;font-size:13px;margin:1em 0}}td,th{{border:1px solid #ccc;padding:2px 6px;text-align:right}}
td:first-child,th:first-child{{text-align:left}}figure{{margin:2em 0}}</style></head><body>
<h1>{html.escape(title)}</h1>
<p>{summary.total:,} records in {len(summary.languages)} languages.</p>
{"<p><b>Shortfall</b>: " + html.escape(summary.shortfall_text()) + "</p>" if summary.shortfall else ""}
{figures}
<h2>Filter funnel</h2>{_table(["stage", "in", "created", "repeated", "kept", "rejected", "left out"], funnel)}
<h2>Languages</h2>{_table(["code", "language", "records", *summary.tasks], langs)}
<h2>Language ID per language</h2>{_table(["code", "checked", "kept", "rejected", "unsupported by the model"], lid_rows)}
</body></html>
"""
    with atomic_path(folder / "report.html") as tmp:
        tmp.write_text(page, encoding="utf-8")
    return folder / "report.html"
