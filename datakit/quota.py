"""Reading by quota: read only what the mix needs, the same rows on every run.

With a target size the build does not read every row of every source and balance down at the end.
It reads in rounds, each a set of ordinary partition tasks over a band of the partitions' rows
(rows are placed in [0, BAND_SCALE) by a seeded hash of their location: `Partition.position`):

  1. a pilot: a few rows of each partition (its size from metadata, or from a counting pass that
     reads without constructing where no metadata tells), which measures what each partition holds (rows in the band and after it) and how many
     records of each (group, language, task) one row yields after the per-record stages;
  2. the plan: records each cell would hold if everything were read (rows x yield, summed over the
     partitions), quotas from the balance settings on those sizes (`plan_quotas`, the same rule
     balance applies), and per cell the fraction of its partitions' rows that fills its quota with
     `HEADROOM` for what dedup removes;
  3. top-ups: a cell still short reads the next band of the partitions that feed it, scaled by how
     short it came, until its quota is met or its partitions are read whole (`MAX_ROUNDS` in all);
     before it stops, the quotas are checked against what dedup would leave (near duplicates can
     take a large share of generated text), and short cells read further.

Every band is its own task, so a resume reuses finished bands, and the rounds depend only on counts
that are the same whatever the engine or the number of workers. The rows never read are counted
where they are: `unselected` of the read stage, so the stats identity still holds.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from datakit.corpus_steps.balance import BalanceSettings, Cell, Quotas, plan_quotas
from datakit.partition import PartitionJob, PartitionResult
from datakit.recipe import Recipe
from datakit.sources.base import BAND_SCALE

log = logging.getLogger(__name__)

PILOT_ROWS = 200  # at most, per partition; fewer when the target is small against the number of partitions
MIN_PILOT_ROWS = 10
HEADROOM = 1.25
MAX_ROUNDS = 6

RunTasks = Callable[[list[PartitionJob], str], list[PartitionResult]]  # (jobs, progress label) -> results
CountRows = Callable[[list[PartitionJob], str], list[int]]  # (jobs, progress label) -> rows of each
AfterDedup = Callable[[list[PartitionResult]], Counter]  # results -> records per cell that dedup leaves


@dataclass
class SourceReading:
    """What reading by quota did with one source (stats.json, the card and the log say it)."""

    available: int = 0  # rows the source holds (its partitions' rows, in and after the bands read)
    read: int = 0  # rows read
    kept: int = 0  # records the per-record stages kept from them

    def to_json(self) -> dict[str, int]:
        return {"available": self.available, "read": self.read, "kept": self.kept}


@dataclass
class Reading:
    """The outcome: the tasks' results (every band of every partition), the quotas balance applies,
    and per source what was available and what was read."""

    results: list[PartitionResult]
    quotas: Quotas | None = None
    sources: dict[str, SourceReading] = field(default_factory=dict)
    rounds: int = 1
    mismatches: list[str] = field(default_factory=list)  # partitions whose metadata disagreed with their rows


@dataclass
class _Progress:
    """One partition's bands so far."""

    job: PartitionJob
    bands: list[tuple[tuple[int, int], PartitionResult]] = field(default_factory=list)  # in the order read

    @property
    def hi(self) -> int:
        return self.bands[-1][0][1] if self.bands else 0

    @property
    def rows_read(self) -> int:
        return sum(_read_stats(r)["in"] for _, r in self.bands)

    @property
    def rows_total(self) -> int:
        return self.rows_read + self.bands[-1][1].beyond

    @property
    def kept(self) -> Counter:
        out: Counter = Counter()
        for _, r in self.bands:
            out.update(r.cells)
        return out


def _read_stats(result: PartitionResult) -> dict[str, Any]:
    return next(s for s in result.stats if s["name"] == "read")


def _cell(key: str) -> Cell:
    g, lang, t = key.split("|")
    return g, lang, t


def _with_band(job: PartitionJob, lo: int, hi: int) -> PartitionJob:
    return replace(job, partition=replace(job.partition, band=(lo, hi)))


def pilot_rows(target: int, partitions: int) -> int:
    """Rows a pilot reads of each partition: enough to measure yields, and together (a row yields
    a few records) well under the target."""
    return max(MIN_PILOT_ROWS, min(PILOT_ROWS, target // (8 * max(partitions, 1))))


def pilot_band(expected_rows: int | None, rows: int) -> int:
    """The end of a partition's pilot band: about `rows` rows, or all of it when its size is unknown."""
    if not expected_rows or expected_rows <= rows:
        return BAND_SCALE
    return min(BAND_SCALE, math.ceil(BAND_SCALE * rows / expected_rows))


def read_by_quota(recipe: Recipe, jobs: list[PartitionJob], run: RunTasks, count: CountRows,
                  after_dedup: AfterDedup | None = None) -> Reading:
    """Run the partition tasks over only as many rows as the recipe's target needs (all of them
    without a target size). `count` is the counting pass for partitions of unknown size;
    `after_dedup` tells what dedup would leave, checked before reading stops."""
    settings = BalanceSettings.from_recipe(recipe.balance, recipe.seed)
    if settings.target is None:
        return Reading(run(jobs, "prepare"))
    progress = [_Progress(job) for job in jobs]
    sizes = [job.partition.expected_rows for job in jobs]
    unknown = [i for i, n in enumerate(sizes) if n is None]
    if unknown:
        for i, n in zip(unknown, count([jobs[i] for i in unknown], "count rows"), strict=True):
            sizes[i] = n
    rows = pilot_rows(settings.target, len(jobs))
    _run_round(progress, [(i, 0, pilot_band(sizes[i], rows)) for i in range(len(jobs))], run, "prepare (pilot)")
    # A partition smaller than its estimate may have had no row in its band: now that its size is
    # known, its pilot is read again at the right size.
    mismatches = [f"{p.job.partition.task_name}: its metadata said {sizes[i]:,} rows, it holds {p.rows_total:,}"
                  for i, p in enumerate(progress) if sizes[i] is not None and not 0.5 <= (p.rows_total + 1) / (sizes[i] + 1) <= 2]
    for m in mismatches:
        log.warning("read by quota: %s; planned from what it holds", m)
    again = [(i, p.hi, pilot_band(p.rows_total, rows)) for i, p in enumerate(progress) if not p.rows_read and p.rows_total]
    if again:
        _run_round(progress, again, run, "prepare (pilot, resized)")

    # The plan: what every cell would hold if everything were read, and the quotas on that.
    expected: Counter = Counter()
    for p in progress:
        if p.rows_read:
            for key, n in p.kept.items():
                expected[_cell(key)] += p.rows_total * n / p.rows_read
    quotas = plan_quotas({cell: round(n) for cell, n in sorted(expected.items())}, settings)
    share = {cell: min(1.0, HEADROOM * q / expected[cell]) for cell, q in quotas.cells.items() if q and expected[cell]}

    rounds, checked = 1, False
    while rounds < MAX_ROUNDS:
        todo = []
        for i, p in enumerate(progress):
            wanted = max((share.get(_cell(key), 0.0) for key in p.kept), default=0.0)
            hi = min(BAND_SCALE, math.ceil(wanted * BAND_SCALE))
            if hi > p.hi:
                todo.append((i, p.hi, hi))
        if not todo:  # the quotas are met before dedup: check them after it, once per state
            if after_dedup is None or checked:
                break
            checked = True
            if not _widen(share, quotas, after_dedup([r for p in progress for _, r in p.bands])):
                break
            continue
        checked = False
        rounds += 1
        _run_round(progress, todo, run, f"prepare (round {rounds})")
        got: Counter = Counter()
        for p in progress:
            for key, n in p.kept.items():
                got[_cell(key)] += n
        _widen(share, quotas, got)

    results, sources = _account(progress)
    for name, s in sources.items():
        log.info("read by quota: %-22s %s of %s rows read (%.1f%%), %s records kept", name, f"{s.read:,}",
                 f"{s.available:,}", 100 * s.read / max(s.available, 1), f"{s.kept:,}")
    return Reading(results, quotas, sources, rounds, mismatches)


def _widen(share: dict[Cell, float], quotas: Quotas, got: Counter) -> bool:
    """Read further for every cell short of its quota, by how short it came; whether any changed."""
    changed = False
    for cell, q in quotas.cells.items():
        if q and got[cell] < q and cell in share and share[cell] < 1.0:
            share[cell] = min(1.0, share[cell] * (HEADROOM * q / got[cell] if got[cell] else 4.0))
            changed = True
    return changed


def _run_round(progress: list[_Progress], todo: list[tuple[int, int, int]], run: RunTasks, label: str) -> None:
    batch = [_with_band(progress[i].job, lo, hi) for i, lo, hi in todo]
    for (i, lo, hi), result in zip(todo, run(batch, label), strict=True):
        progress[i].bands.append(((lo, hi), result))


def _account(progress: list[_Progress]) -> tuple[list[PartitionResult], dict[str, SourceReading]]:
    """Every band's result in a fixed order; the rows after a partition's last band are counted as
    read-stage `unselected` on that band's result, so each input row is counted exactly once."""
    results: list[PartitionResult] = []
    sources: dict[str, SourceReading] = {}
    for p in progress:
        ordered = [r for _, r in p.bands]  # bands are read in order: the last one ends highest
        last = ordered[-1]
        if last.beyond:
            stats = [dict(s) for s in last.stats]
            read = next(s for s in stats if s["name"] == "read")
            read["in"] += last.beyond
            read["unselected"] = read.get("unselected", 0) + last.beyond
            ordered[-1] = replace(last, stats=stats)
        results.extend(ordered)
        s = sources.setdefault(p.job.partition.source, SourceReading())
        s.available += p.rows_total
        s.read += p.rows_read
        s.kept += sum(p.kept.values())
    return results, dict(sorted(sources.items()))
