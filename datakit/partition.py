"""One partition's task: read -> construct -> per-record stages -> work files.

This is the path a record takes from its source to just before the whole-corpus steps, in the
order it happens. A task streams its partition in batches, so its memory is bounded by a batch and
the Parquet writer's row group, never by the source. Every record it does not keep is written to
a rejected file of the stage that rejected it (`workfile.TaskWriters`).
"""

from __future__ import annotations

import collections
import gc
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from datakit.collector import collector_paused, each_batch_paused
from datakit.construct import Rejected, build
from datakit.construct.templates import NativeTemplates
from datakit.corpus_steps.memory import prefer_jemalloc, release_memory
from datakit.corpus_steps.near_dedup import params_for
from datakit.errors import SourceError
from datakit.recipe import Recipe
from datakit.record_stages.base import RecordStage, Rejection
from datakit.record_stages.order import StageResources, record_stages, stage_names
from datakit.records import Record, record_id, unparsed_record
from datakit.sources import adapter_for
from datakit.sources.base import FULL_BAND, Parallel, Partition, Passed, RawError, ReadContext, Unread
from datakit.sources.join import JoinIndex
from datakit.stats import StageStats
from datakit.store import StageDir
from datakit.workfile import TaskWriters

BATCH_ROWS = 2_000


@dataclass(frozen=True, kw_only=True)
class PartitionJob:
    recipe: Recipe
    partition: Partition
    ctx: ReadContext
    out: str
    fingerprint: str
    strict: bool = False
    resources: StageResources = field(default_factory=StageResources)
    native: NativeTemplates | None = None  # translation templates in languages other than zh/en
    join_index: str | None = None  # the source's join index (sources/join.py), when its recipe entry has `join`


@dataclass(kw_only=True)
class PartitionResult:
    """What a finished task hands the driver (and keeps in its completion marker)."""

    task: str
    source: str
    records: dict[str, str]  # language -> work file
    rows: dict[str, int]  # language -> records kept
    rejected_files: dict[str, str]  # stage -> rejected file
    stats: list[dict[str, Any]]  # StageStats.to_json() per stage, in stats order
    seconds: dict[str, float]  # CPU seconds per stage, for the build's profile
    cells: dict[str, int] = field(default_factory=dict)  # "group|lang|task" -> records kept: what reading by quota plans from
    beyond: int = 0  # rows after the partition's band (not read by this task)
    reused: bool = False  # finished by an earlier run

    def to_marker(self) -> dict[str, Any]:
        """The result as its marker holds it (JSON: the fields are plain values; not `asdict`, which
        copies every nested stats dict first)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "reused"}


class PartitionRun:
    """One partition's way through read, construct and the per-record stages.

    The pieces (constructed batches, one stage applied, records kept, the end) are used in one loop
    by `process_partition`, the Dask task, and one piece per step by the datatrove steps
    (datatrove_steps/partition.py)."""

    def __init__(self, job: PartitionJob):
        self.job = job
        self.stage_dir = StageDir(Path(job.out), "prepare", job.fingerprint)
        self.task = job.partition.task_name
        self.source = next(s for s in job.recipe.sources if s.name == job.partition.source)
        self.stats = {name: StageStats(name) for name in stage_names(job.recipe)}
        self.stages: list[RecordStage] = []
        self.writers: TaskWriters | None = None
        self.seconds: collections.Counter = collections.Counter()
        self.cells: collections.Counter = collections.Counter()
        self.beyond = 0
        self.joiner: JoinIndex | None = None

    def done(self) -> PartitionResult | None:
        marker = self.stage_dir.result(self.task)
        return None if marker is None else PartitionResult(**marker, reused=True)

    def start(self) -> None:
        prefer_jemalloc()
        self.stages = record_stages(self.job.recipe, self.job.resources)
        if self.job.join_index is not None:
            self.joiner = JoinIndex(self.source.join, self.job.join_index)
        self.writers = TaskWriters(self.stage_dir, self.task, params_for(self.job.recipe.dedup.near))

    def constructed(self) -> Iterator[list[Record]]:
        """Batches of constructed records; unreadable rows and failed constructions are written as rejected."""
        job, source, read = self.job, self.source, self.stats["read"]
        lo, hi = job.partition.band
        batch = []
        started = time.perf_counter()
        ctx = job.ctx if (lo, hi) == FULL_BAND else replace(job.ctx, index_dir=str(self.stage_dir.file("_bands")))
        for item in adapter_for(source).read(source, job.partition, ctx):
            if isinstance(item, Passed):  # rows outside the band the adapter knew from its index
                self.beyond += item.beyond
                continue
            if (lo, hi) != FULL_BAND:  # reading by quota: only the rows whose position is in the band
                position = job.partition.position(job.recipe.seed, item.loc)
                if not lo <= position < hi:
                    self.beyond += position >= hi
                    continue
                if isinstance(item, Unread):
                    raise AssertionError(f"{self.task}: the adapter passed over a row of the band ({item.loc})")
            read.in_ += 1
            if isinstance(item, RawError):
                if job.strict:
                    raise SourceError(f"source {source.name!r}: {_where(item.loc)}: {item.reason}" + (f" ({item.detail})" if item.detail else ""))
                loc = {**item.loc, **({"detail": item.detail} if item.detail else {})}
                record = unparsed_record(source=source.name, license=source.license, lang=item.lang, loc=loc, raw=item.raw)
                self.writers.reject([Rejection(record, "read", item.reason)])
                read.rejected[item.reason] += 1
                continue
            read.kept += 1
            if self.joiner is not None and isinstance(item.example, Parallel):
                self.joiner.complete(item.example)
            batch.append(item)
            if len(batch) >= BATCH_ROWS:
                records = self._construct(batch)
                self.seconds["read+construct"] += time.perf_counter() - started
                yield records
                started = time.perf_counter()
                batch = []
        if batch:
            records = self._construct(batch)
            self.seconds["read+construct"] += time.perf_counter() - started
            yield records

    def _construct(self, batch: list) -> list[Record]:
        records: list[Record] = []
        rejections: list[Rejection] = []
        construct, job, source = self.stats["construct"], self.job, self.source
        with collector_paused():
            for row in batch:
                construct.in_ += 1
                built = build(row, source, job.recipe, job.native)
                if not built:
                    stub = unparsed_record(source=source.name, license=source.license, lang=None, loc=row.loc, raw="")
                    built = [Rejected(stub, "nothing_to_build")]
                construct.created += len(built) - 1
                for b in built:
                    if isinstance(b, Rejected):
                        rejections.append(Rejection(b.record, "construct", b.reason))
                        construct.rejected[b.reason] += 1
                    elif not job.ctx.selected(b["lang"]):
                        rejections.append(Rejection(b, "construct", "lang_not_selected"))
                        construct.rejected["lang_not_selected"] += 1
                    else:
                        records.append(b)
        construct.kept += len(records)
        self.writers.reject(rejections)
        return records

    def apply(self, stage: RecordStage, records: list[Record]) -> list[Record]:
        kept, rejected = stage.run(records, self.stats[stage.name])
        self.writers.reject(rejected)
        return kept

    def stage_and_keep(self, records: list[Record]) -> None:
        """A constructed batch through every per-record stage, then into the work file."""
        for stage in self.stages:
            records = self.apply(stage, records)
        self.keep(records)

    def keep(self, records: list[Record]) -> None:
        started = time.perf_counter()
        with collector_paused():
            for r in records:
                r["id"] = record_id(r)
                self.cells[f"{r['group']}|{r['lang']}|{r['task']}"] += 1
            self.writers.keep(records)
        self.seconds["dedup keys, minhash, work file"] += time.perf_counter() - started

    def finish(self) -> PartitionResult:
        self.writers.close()
        result = PartitionResult(
            task=self.task,
            source=self.source.name,
            records={lang: str(path) for lang, path in sorted(self.writers.kept_paths.items())},
            rows=dict(sorted(self.writers.rows.items())),
            rejected_files=self.writers.rejected_files,
            stats=[self.stats[name].to_json() for name in stage_names(self.job.recipe)],
            seconds={**self.seconds, **{s.name: round(s.seconds, 3) for s in self.stages}},
            cells=dict(sorted(self.cells.items())),
            beyond=self.beyond,
        )
        self.stage_dir.complete(self.task, result.to_marker())
        return result

    def abort(self, exc: BaseException) -> None:
        if self.writers is not None:
            self.writers.abort(exc)


def process_partition(job: PartitionJob) -> PartitionResult:
    """Run one partition through read, construct and the per-record stages (skipped if done)."""
    run = PartitionRun(job)
    done = run.done()
    if done is not None:
        return done
    run.start()
    # What the task starts with (modules, models, the stages' tables) lives as long as the worker:
    # kept out of the collector's way, the per-record objects are collected at a fraction of the cost.
    # Never unfrozen: the next task's collection then walks only what was made since (unfrozen after
    # each task, every task's first collection walked everything again: 0.33 s a task).
    gc.collect()
    gc.freeze()
    try:
        each_batch_paused(run.constructed(), run.stage_and_keep)
        return run.finish()
    except BaseException as e:
        run.abort(e)
        raise
    finally:  # a worker runs many tasks: what this one freed goes back to the system
        release_memory()


def count_rows(job: PartitionJob) -> int:
    """Rows the partition holds, read without constructing anything: reading by quota's counting
    pass, for partitions whose size no metadata tells (unreadable rows count: they are rows)."""
    source = next(s for s in job.recipe.sources if s.name == job.partition.source)
    return sum(1 for _ in adapter_for(source).read(source, job.partition, job.ctx))


def _where(loc: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in loc.items())
