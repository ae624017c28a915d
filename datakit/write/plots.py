"""The report's plots, drawn to be read at a glance and written with the same bytes for the same build.

- mix: each group's share (against the target share only when a target size was set);
- funnel: what every stage removed, per reason, on a log scale, so that 12 records removed out of
  a million show beside 20,000, each bar labelled with its count and its share of the stage;
- lengths: one panel per group, each on its own scale, so the small groups are not flat lines under
  the large one;
- lid_scores: the answers' probability of their expected language, with the answers in languages
  the model has no label for drawn apart (their probability is 0 by construction).

PNG via matplotlib's Agg backend without the Software text chunk: no timestamp or version is
written, so the bytes depend on the numbers drawn and matplotlib's version only.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from datakit.store import atomic_path  # noqa: E402
from datakit.write.summary import GROUPS, FunnelRow, Summary  # noqa: E402

BALANCE_LEFT_OUT = "left out by balance"
QUOTA_NOT_READ = "not read (reading by quota)"
UNSUPPORTED_COLOR = "#dd8452"
KEPT_COLOR = "#4c72b0"


def save(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)


def percent(share: float) -> str:
    """A share as the report writes it: small shares keep a significant digit instead of reading 0.0%."""
    if share == 0:
        return "0%"
    if share < 0.0001:
        return "<0.01%"
    return f"{100 * share:.2f}%" if share < 0.1 else f"{100 * share:.1f}%"


def handled(stage: FunnelRow) -> int:
    """What a stage had to decide on: its input, the records it created and the repeats it made."""
    return stage.in_ + stage.created + stage.repeated


def removals(stages: tuple[FunnelRow, ...]) -> list[tuple[str, str, int, float]]:
    """(stage, reason, records, share of what the stage handled) for every reason that removed
    something; balance's unselected records count as a reason of their own."""
    rows = []
    for s in stages:
        reasons = dict(s.rejected)
        if s.unselected:
            reasons[BALANCE_LEFT_OUT if s.name == "balance" else QUOTA_NOT_READ] = s.unselected
        rows += [(s.name, reason, n, n / max(handled(s), 1)) for reason, n in reasons.items() if n]
    return rows


def plot_mix(path: Path, summary: Summary, target: bool) -> None:
    """Groups (against their target share when there is one) and the 30 largest languages."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(14, 6), gridspec_kw={"width_ratios": [1, 2], "wspace": 0.55})
    x = np.arange(len(summary.groups))
    width = 0.4 if target else 0.6
    bars = a.bar(x - (0.2 if target else 0), [row.percent or 0.0 for row in summary.groups], width, label="corpus", color=KEPT_COLOR)
    a.bar_label(bars, [f"{percent(row.records / max(row.total, 1))}\n{row.records:,}" for row in summary.groups], fontsize=8)
    if target:
        a.bar(x + 0.2, [row.target_percent for row in summary.groups], width, label="target", color="#999999")
        a.legend(loc="upper left")
        a.set_title("share of records against the target")
    else:
        a.set_title("no target size: the mix is what the sources hold", fontsize=10)
    a.set_xticks(x, [row.group for row in summary.groups])
    a.set_ylabel("% of records")
    a.set_ylim(0, 115)
    top = summary.largest_languages[:30][::-1]
    b.barh([f"{row.code} {row.name}"[:32] for row in top], [row.records for row in top], color=KEPT_COLOR)
    b.set_xlabel("records")
    b.set_title(f"largest {len(top)} of {len(summary.languages)} languages")
    save(fig, path)


def plot_funnel(path: Path, stages: tuple[FunnelRow, ...]) -> None:
    """One bar per (stage, reason) on a log scale, coloured by stage, labelled with count and share."""
    rows = removals(stages)
    fig, ax = plt.subplots(figsize=(11, 0.34 * max(len(rows), 3) + 1.3))
    if not rows:
        ax.text(0.5, 0.5, "no stage removed any record", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        save(fig, path)
        return
    names = [s.name for s in stages]
    colors = plt.cm.tab10(np.arange(len(names)) % 10)
    y = np.arange(len(rows))[::-1]
    counts = np.array([n for _, _, n, _ in rows], dtype=float)
    ax.barh(y, counts, color=[colors[names.index(stage)] for stage, *_ in rows], height=0.7)
    for yi, (_, _, n, share) in zip(y, rows, strict=True):
        ax.text(n * 1.15, yi, f"{n:,}  ({percent(share)} of the stage)", va="center", fontsize=8)
    ax.set_yticks(y, [f"{stage}: {reason}" for stage, reason, _, _ in rows], fontsize=9)
    ax.set_xscale("log")
    ax.set_xlim(0.7, counts.max() * 60)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.set_xlabel("records removed (log scale); share = of the records the stage handled (in + created + repeated)")
    ax.grid(axis="x", which="major", alpha=0.3)
    save(fig, path)


def plot_lengths(path: Path, groups: np.ndarray, nbytes: np.ndarray) -> None:
    """One panel per group on its own count scale, the same log-spaced bins and x axis in each."""
    fig, axes = plt.subplots(1, len(GROUPS), figsize=(14, 3.8), sharex=True)
    positive = nbytes[nbytes > 0]
    bins = np.logspace(np.log10(max(1, positive.min(initial=1))), np.log10(max(10, positive.max(initial=10))), 50)
    for ax, g in zip(axes, GROUPS, strict=True):
        mine = nbytes[(groups == g) & (nbytes > 0)]
        ax.set_xscale("log")
        ax.set_xlabel("UTF-8 bytes per record")
        if not len(mine):
            ax.set_title(f"{g}: no records", fontsize=10)
            continue
        ax.hist(mine, bins=bins, color=KEPT_COLOR)
        median = float(np.median(mine))
        ax.axvline(median, color="black", linewidth=1, linestyle="--")
        low, high = np.percentile(mine, [5, 95])
        ax.set_title(f"{g}: {len(mine):,} records\nmedian {int(median):,} bytes, 5-95% {int(low):,}-{int(high):,}", fontsize=10)
    axes[0].set_ylabel("records (each panel its own scale)")
    save(fig, path)


def plot_lid(path: Path, histogram: dict[str, int], unsupported: dict[str, int] | None, unsupported_langs: list[str]) -> None:
    """The answers' P(expected language) in 5-point bins; answers in languages the model has no
    label for stacked apart and named, since the model cannot give them any probability."""
    fig, ax = plt.subplots(figsize=(10, 4.5))
    bins = sorted(histogram)
    x = np.array([int(b) / 100 + 0.025 for b in bins])
    total = np.array([histogram[b] for b in bins], dtype=float)
    apart = np.array([(unsupported or {}).get(b, 0) for b in bins], dtype=float)
    ax.bar(x, total - apart, width=0.045, color=KEPT_COLOR, label="answers in languages the model has a label for")
    if apart.any():
        ax.bar(x, apart, width=0.045, bottom=total - apart, color=UNSUPPORTED_COLOR, hatch="//",
               label=f"answers in languages the model has no label for ({int(apart.sum()):,}): P = 0 by construction")
    if unsupported_langs:
        shown = ", ".join(unsupported_langs[:6]) + (f" and {len(unsupported_langs) - 6} more" if len(unsupported_langs) > 6 else "")
        note = (f"{len(unsupported_langs)} languages are marked `unsupported`: no language-ID model has a label for them "
                f"({shown}). Their answers sit at P = 0{' (hatched)' if apart.any() else ''}: kept by the script check, "
                "not answers in the wrong language.")
        ax.text(0.08, 0.62, textwrap.fill(note, 75), transform=ax.transAxes, fontsize=8, va="center",
                bbox={"facecolor": "white", "edgecolor": "#cccccc"})
    ax.set_xlim(0, 1)
    ax.set_xlabel("P(expected language) of the answer, as the model reads it")
    ax.set_ylabel("checked answers")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper center", fontsize=8)
    save(fig, path)
