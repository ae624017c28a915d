"""What the build prints on the terminal: the funnel after a build, the balance plan after a dry run.

Both render the tables of `datakit.write.summary`, the same data the dataset card and the report
show, so the terminal never tells a different story from the files.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.console import Console
from rich.table import Table

from datakit.recipe import Recipe
from datakit.write.summary import funnel, listing, plan

COUNT = "{0} {1:,}"  # the terminal groups thousands, and has no room for colons


def print_plan(console: Console, recipe: Recipe, available: Mapping[str, Mapping[str, int]],
               quotas: Mapping[str, Mapping[str, int]] | None, shortfall: Mapping[str, int] | None) -> None:
    """--dry-run: what balance would select, against what is available, and the mix it would give.
    `available` and `quotas` map group -> "lang|task" -> records; no quotas means keep everything."""
    p = plan(available, quotas, shortfall, recipe.balance.mix)
    table = Table(title=f"balance plan (target {recipe.balance.target_size or 'none: keep all'})", title_justify="left")
    for col in ("group", "available", "selected", "share", "target share", "languages"):
        table.add_column(col, justify="left" if col == "group" else "right")
    for g in p.groups:
        row = g.mix
        table.add_row(row.group, f"{g.available:,}", f"{row.records:,}", f"{row.percent or 0.0:.1f}%", f"{row.target_percent:.1f}%", str(g.languages))
    console.print(table)
    cells = Table(title="per language and task (largest 40 by selection)", title_justify="left")
    for col in ("group", "language", "task", "available", "selected"):
        cells.add_column(col, justify="right" if col in ("available", "selected") else "left")
    for c in p.cells[:40]:
        cells.add_row(c.group, c.lang, c.task, f"{c.available:,}", f"{c.selected:,}")
    console.print(cells)
    if p.shortfall:
        console.print("shortfall: " + listing(p.shortfall, COUNT))


def print_funnel(console: Console, stats: Mapping[str, Any]) -> None:
    """After a build: records in, created, kept and removed at every stage, from stats.json's dict."""
    table = Table(title="records per stage", title_justify="left")
    for col in ("stage", "in", "created", "kept", "rejected", "unselected"):
        table.add_column(col, justify="left" if col in ("stage", "rejected") else "right")
    for s in funnel(stats):
        table.add_row(s.name, f"{s.in_:,}", f"{s.created:,}", f"{s.kept:,}", s.rejected_text(COUNT), f"{s.unselected:,}")
    console.print(table)
