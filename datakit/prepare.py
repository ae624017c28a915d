"""The per-partition task: read -> construct -> per-record stages -> a work file of records.

This is the path a record takes from its source to just before the global stages, in the order
it happens. A task streams its partition in batches, so its memory is bounded by a batch and
the Parquet writer's row group, never by the source. Every record it does not keep is written to
a rejected file of the stage that rejected it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from datakit.construct import Rejected, build
from datakit.engine.store import StageDir, atomic_path
from datakit.errors import SourceError
from datakit.recipe import Recipe
from datakit.records import Record, record_id, to_row, unparsed_record
from datakit.schema import record_schema, rejected_schema
from datakit.sources import adapter_for
from datakit.sources.base import Partition, RawError, ReadContext
from datakit.stages.base import RecordStage, Rejection, StageStats
from datakit.stages.decontaminate import Decontaminate, Index
from datakit.stages.dedup import dedup_key
from datakit.stages.length import Length
from datakit.stages.lid import LanguageId
from datakit.stages.near_dedup import MinHashParams, params_for, signature_columns, work_fields
from datakit.stages.normalise import Normalise
from datakit.stages.quality import Quality

log = logging.getLogger(__name__)

BATCH_ROWS = 2_000
WORK_ROW_GROUP = 1_000


def record_stages(recipe: Recipe, lid_model: str | None, contamination: Index | None) -> list[RecordStage]:
    """The per-record stages, in the order a record goes through them."""
    stages: list[RecordStage] = [Normalise(recipe.filters.normalise), Length(recipe.filters.length)]
    # Contamination first: a record holding a benchmark item is reported as such, whatever else is wrong with it.
    if recipe.filters.decontaminate.sets:
        assert contamination is not None, "the driver builds the decontamination index before any task runs"
        stages.append(Decontaminate(contamination))
    if recipe.filters.lid.enabled:
        assert lid_model is not None, "the driver resolves the LID model before any task runs"
        stages.append(LanguageId(recipe.filters.lid, lid_model))
    if recipe.filters.quality.enabled:
        stages.append(Quality(recipe.filters.quality))
    return stages


def stage_names(recipe: Recipe) -> list[str]:
    f = recipe.filters
    names = ["read", "construct", "normalise", "length"]
    return names + ["decontaminate"] * bool(f.decontaminate.sets) + ["lid"] * f.lid.enabled + ["quality"] * f.quality.enabled


def work_schema(near: MinHashParams | None) -> pa.Schema:
    """Records as the global stages need them: the record columns, the exact-dedup key, the size and,
    for near dedup, the bucket key and MinHash signature."""
    schema = record_schema().append(pa.field("_dkey", pa.binary(16))).append(pa.field("_nbytes", pa.int64()))
    for f in work_fields(near) if near else []:
        schema = schema.append(f)
    return schema


@dataclass(frozen=True)
class PrepareJob:
    recipe: Recipe
    partition: Partition
    ctx: ReadContext
    out: str
    fingerprint: str
    strict: bool = False
    lid_model: str | None = None
    contamination: Index | None = None


class _Writers:
    """The task's open Parquet writers: one for kept records, one per stage that rejected something."""

    def __init__(self, stage_dir: StageDir, task: str, near: MinHashParams | None):
        self.stage_dir, self.task, self.near = stage_dir, task, near
        self.schema = work_schema(near)
        self.kept_path = stage_dir.file("records", f"{task}.parquet")
        self._kept: pq.ParquetWriter | None = None
        self._kept_ctx = None
        self._rejected: dict[str, tuple[Any, pq.ParquetWriter]] = {}
        self.rejected_files: dict[str, str] = {}
        self.rows = 0

    def keep(self, records: list[Record]) -> None:
        if self._kept is None:
            self._kept_ctx = atomic_path(self.kept_path)
            self._kept = pq.ParquetWriter(self._kept_ctx.__enter__(), self.schema, compression="zstd")
        if not records:
            return
        rows = [to_row(r) for r in records]
        for row, rec in zip(rows, records, strict=True):
            row["_dkey"] = dedup_key(rec)
            row["_nbytes"] = sum(len(m["content"].encode("utf-8")) for m in rec["messages"])
        base = pa.schema([f for f in self.schema if not f.name.startswith(("_nkey", "_mh"))])
        table = pa.Table.from_pylist(rows, schema=base)
        if self.near:
            for name, column in signature_columns(records, self.near).items():
                table = table.append_column(name, column)
        self._kept.write_table(table, row_group_size=WORK_ROW_GROUP)
        self.rows += len(rows)

    def reject(self, rejections: list[Rejection]) -> None:
        by_stage: dict[str, list[dict]] = {}
        for rej in rejections:
            row = to_row(rej.record)
            row["stage"], row["reason"] = rej.stage, rej.reason
            by_stage.setdefault(rej.stage, []).append(row)
        for stage, rows in by_stage.items():
            if stage not in self._rejected:
                path = self.stage_dir.file("rejected", stage, f"{self.task}.parquet")
                ctx = atomic_path(path)
                self._rejected[stage] = (ctx, pq.ParquetWriter(ctx.__enter__(), rejected_schema(), compression="zstd"))
                self.rejected_files[stage] = str(path)
            self._rejected[stage][1].write_table(pa.Table.from_pylist(rows, schema=rejected_schema()))

    def close(self) -> None:
        self.keep([])  # a partition with no kept records still has a (empty) records file
        for ctx, writer in [(self._kept_ctx, self._kept), *self._rejected.values()]:
            writer.close()
            ctx.__exit__(None, None, None)

    def abort(self, exc: BaseException) -> None:
        for ctx, writer in [(self._kept_ctx, self._kept), *self._rejected.values()]:
            if writer is not None:
                writer.close()
                ctx.__exit__(type(exc), exc, None)


def prepare(job: PrepareJob) -> dict[str, Any]:
    """Run one partition through read, construct and the per-record stages (skipped if done)."""
    stage_dir = StageDir(Path(job.out), "prepare", job.fingerprint)
    task = job.partition.task_name
    done = stage_dir.result(task)
    if done is not None:
        return {**done, "reused": True}
    recipe = job.recipe
    source = next(s for s in recipe.sources if s.name == job.partition.source)
    adapter = adapter_for(source)
    stages = record_stages(recipe, job.lid_model, job.contamination)
    stats = {name: StageStats(name) for name in stage_names(recipe)}
    writers = _Writers(stage_dir, task, params_for(recipe.dedup.near))
    try:
        batch = []
        for item in adapter.read(source, job.partition, job.ctx):
            stats["read"].in_ += 1
            if isinstance(item, RawError):
                if job.strict:
                    raise SourceError(f"source {source.name!r}: {_where(item.loc)}: {item.reason}" + (f" ({item.detail})" if item.detail else ""))
                loc = {**item.loc, **({"detail": item.detail} if item.detail else {})}
                record = unparsed_record(source=source.name, license=source.license, lang=item.lang, loc=loc, raw=item.raw)
                writers.reject([Rejection(record, "read", item.reason)])
                stats["read"].rejected[item.reason] += 1
                continue
            stats["read"].kept += 1
            batch.append(item)
            if len(batch) >= BATCH_ROWS:
                _flush(batch, source, job, stages, stats, writers)
                batch = []
        _flush(batch, source, job, stages, stats, writers)
        writers.close()
    except BaseException as e:
        writers.abort(e)
        raise
    result = {
        "task": task,
        "source": source.name,
        "records": str(writers.kept_path),
        "rows": writers.rows,
        "rejected_files": writers.rejected_files,
        "stats": [stats[name].to_json() for name in stage_names(recipe)],
    }
    return stage_dir.complete(task, result)


def _where(loc: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in loc.items())


def _flush(batch, source, job: PrepareJob, stages: list[RecordStage], stats: dict[str, StageStats], writers: _Writers) -> None:
    records: list[Record] = []
    rejections: list[Rejection] = []
    construct = stats["construct"]
    for row in batch:
        construct.in_ += 1
        built = build(row, source, job.recipe)
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
    for stage in stages:
        records, rejected = stage.run(records, stats[stage.name])
        rejections.extend(rejected)
    for r in records:
        r["id"] = record_id(r)
    writers.reject(rejections)
    writers.keep(records)
