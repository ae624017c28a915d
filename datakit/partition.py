"""The per-partition task: read -> construct -> per-record stages -> a work file of records.

This is the path a record takes from its source to just before the global stages, in the order
it happens. A task streams its partition in batches, so its memory is bounded by a batch and
the Parquet writer's row group, never by the source. Every record it does not keep is written to
a rejected file of the stage that rejected it.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from datakit.construct import Rejected, build
from datakit.construct.templates import NativeTemplates
from datakit.corpus_steps.exact_dedup import dedup_key
from datakit.corpus_steps.near_dedup import MinHashParams, params_for, signature_columns, work_fields
from datakit.errors import SourceError
from datakit.recipe import Recipe
from datakit.record_stages.base import RecordStage, Rejection
from datakit.record_stages.decontaminate import Decontaminate, Index
from datakit.record_stages.judge import Judge
from datakit.record_stages.length import Length
from datakit.record_stages.lid import LanguageId
from datakit.record_stages.normalise import Normalise
from datakit.record_stages.quality import Quality
from datakit.records import Record, record_id, to_row, unparsed_record
from datakit.schema import record_schema, rejected_schema
from datakit.sources import adapter_for
from datakit.sources.base import Partition, RawError, ReadContext
from datakit.stats import StageStats
from datakit.store import StageDir, atomic_path

log = logging.getLogger(__name__)

BATCH_ROWS = 2_000
WORK_ROW_GROUP = 1_000


def record_stages(recipe: Recipe, lid_model: str | None, contamination: Index | None, llm_cache: str | None = None,
                  run_id: str = "") -> list[RecordStage]:
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
    if recipe.filters.judge.enabled:  # last: the LLM judges only what every other filter kept
        stages.append(Judge(recipe.filters.judge, llm_cache, run_id))
    return stages


def stage_names(recipe: Recipe) -> list[str]:
    f = recipe.filters
    names = ["read", "construct", "normalise", "length"]
    return (names + ["decontaminate"] * bool(f.decontaminate.sets) + ["lid"] * f.lid.enabled + ["quality"] * f.quality.enabled
            + ["judge"] * f.judge.enabled)


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
    llm_cache: str | None = None
    native: NativeTemplates | None = None  # translation templates in languages other than zh/en


class _Writers:
    """The task's Parquet writers: one for kept records, one per stage that rejected something.

    Rows are buffered and written in fixed-size row groups, so a file's bytes depend on its rows
    alone, not on how the rows were batched on their way (the Dask task and the datatrove steps
    batch differently)."""

    def __init__(self, stage_dir: StageDir, task: str, near: MinHashParams | None):
        self.stage_dir, self.task, self.near = stage_dir, task, near
        self.schema = work_schema(near)
        self.kept_paths: dict[str, Path] = {}  # one work file per language: a shard reads only its language's files
        self._open: dict[str, tuple[Any, pq.ParquetWriter, pa.Schema]] = {}
        self._buffers: dict[str, list[pa.Table]] = {}
        self.rejected_files: dict[str, str] = {}
        self.rows: dict[str, int] = {}

    def _writer(self, key: str, path: Path, schema: pa.Schema) -> None:
        if key not in self._open:
            ctx = atomic_path(path)
            self._open[key] = (ctx, pq.ParquetWriter(ctx.__enter__(), schema, compression="zstd"), schema)
            self._buffers[key] = []

    def _add(self, key: str, table: pa.Table, final: bool = False) -> None:
        buffer = self._buffers[key]
        if table.num_rows:
            buffer.append(table)
        pending = pa.concat_tables(buffer) if buffer else None
        if pending is None:
            return
        cut = pending.num_rows if final else pending.num_rows - pending.num_rows % WORK_ROW_GROUP
        if cut:
            self._open[key][1].write_table(pending.slice(0, cut), row_group_size=WORK_ROW_GROUP)
        self._buffers[key] = [pending.slice(cut)] if cut < pending.num_rows else []

    def keep(self, records: list[Record]) -> None:
        by_lang: dict[str, list[Record]] = {}
        for r in records:
            by_lang.setdefault(r["lang"], []).append(r)
        for lang, group in sorted(by_lang.items()):
            self._keep(lang, group)

    def _keep(self, lang: str, records: list[Record]) -> None:
        if lang not in self.kept_paths:
            self.kept_paths[lang] = self.stage_dir.file("records", self.task, f"{lang}.parquet")
            self._writer(f"kept:{lang}", self.kept_paths[lang], self.schema)
        rows = [to_row(r) for r in records]
        for row, rec in zip(rows, records, strict=True):
            row["_dkey"] = dedup_key(rec)
            row["_nbytes"] = sum(len(m["content"].encode("utf-8")) for m in rec["messages"])
        base = pa.schema([f for f in self.schema if not f.name.startswith(("_nkey", "_mh"))])
        table = pa.Table.from_pylist(rows, schema=base)
        if self.near:
            for name, column in signature_columns(records, self.near).items():
                table = table.append_column(name, column)
        self._add(f"kept:{lang}", table)
        self.rows[lang] = self.rows.get(lang, 0) + len(rows)

    def reject(self, rejections: list[Rejection]) -> None:
        by_stage: dict[str, list[dict]] = {}
        for rej in rejections:
            row = to_row(rej.record)
            row["stage"], row["reason"] = rej.stage, rej.reason
            by_stage.setdefault(rej.stage, []).append(row)
        for stage, rows in by_stage.items():
            path = self.stage_dir.file("rejected", stage, f"{self.task}.parquet")
            self._writer(stage, path, rejected_schema())
            self.rejected_files[stage] = str(path)
            self._add(stage, pa.Table.from_pylist(rows, schema=rejected_schema()))

    def close(self) -> None:
        for key, (ctx, writer, _) in self._open.items():
            self._add(key, self._open[key][2].empty_table(), final=True)
            writer.close()
            ctx.__exit__(None, None, None)

    def abort(self, exc: BaseException) -> None:
        for ctx, writer, _ in self._open.values():
            writer.close()
            ctx.__exit__(type(exc), exc, None)


class PartitionRun:
    """One partition's way through read, construct and the per-record stages.

    The pieces (constructed batches, one stage applied, records kept, the end) are used in one loop
    by `prepare`, the Dask task, and one piece per step by the datatrove steps (engine/datatrove.py)."""

    def __init__(self, job: PrepareJob):
        self.job = job
        self.stage_dir = StageDir(Path(job.out), "prepare", job.fingerprint)
        self.task = job.partition.task_name
        self.source = next(s for s in job.recipe.sources if s.name == job.partition.source)
        self.stats = {name: StageStats(name) for name in stage_names(job.recipe)}
        self.stages: list[RecordStage] = []
        self.writers: _Writers | None = None
        self.seconds: collections.Counter = collections.Counter()  # for the build's profile

    def done(self) -> dict[str, Any] | None:
        result = self.stage_dir.result(self.task)
        return None if result is None else {**result, "reused": True}

    def start(self) -> None:
        self.stages = record_stages(self.job.recipe, self.job.lid_model, self.job.contamination, self.job.llm_cache,
                                    self.job.fingerprint[:16])
        self.writers = _Writers(self.stage_dir, self.task, params_for(self.job.recipe.dedup.near))

    def constructed(self) -> Iterator[list[Record]]:
        """Batches of constructed records; unreadable rows and failed constructions are written as rejected."""
        job, source, read = self.job, self.source, self.stats["read"]
        batch = []
        started = time.perf_counter()
        for item in adapter_for(source).read(source, job.partition, job.ctx):
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

    def keep(self, records: list[Record]) -> None:
        started = time.perf_counter()
        for r in records:
            r["id"] = record_id(r)
        self.writers.keep(records)
        self.seconds["dedup keys, minhash, work file"] += time.perf_counter() - started

    def finish(self) -> dict[str, Any]:
        self.writers.close()
        result = {
            "task": self.task,
            "source": self.source.name,
            "records": {lang: str(path) for lang, path in sorted(self.writers.kept_paths.items())},
            "rows": dict(sorted(self.writers.rows.items())),
            "rejected_files": self.writers.rejected_files,
            "stats": [self.stats[name].to_json() for name in stage_names(self.job.recipe)],
            "seconds": {**self.seconds, **{s.name: round(s.seconds, 3) for s in self.stages}},
        }
        return self.stage_dir.complete(self.task, result)

    def abort(self, exc: BaseException) -> None:
        if self.writers is not None:
            self.writers.abort(exc)


def prepare(job: PrepareJob) -> dict[str, Any]:
    """Run one partition through read, construct and the per-record stages (skipped if done)."""
    run = PartitionRun(job)
    done = run.done()
    if done is not None:
        return done
    run.start()
    try:
        for records in run.constructed():
            for stage in run.stages:
                records = run.apply(stage, records)
            run.keep(records)
        return run.finish()
    except BaseException as e:
        run.abort(e)
        raise


def _where(loc: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in loc.items())
