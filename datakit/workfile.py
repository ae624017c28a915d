"""Work files: the records a partition task kept, as the whole-corpus steps and the shards read them.

A task writes one work file per language (a shard then reads only its language's files) holding
the contract's columns plus what the corpus steps need without the text: the exact-dedup key
(`_dkey`), the size (`_nbytes`) and, for near dedup, the bucket key and MinHash signature. Records
a stage rejected go to one rejected file per stage. Rows are buffered and written in fixed-size
row groups, so a file's bytes depend on its rows alone, not on how they were batched on their way
(the Dask task and the datatrove steps batch differently).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from datakit.corpus_steps.exact_dedup import dedup_key
from datakit.corpus_steps.near_dedup import MinHashParams, signature_columns, work_fields
from datakit.record_stages.base import Rejection
from datakit.records import Record, to_row
from datakit.schema import record_schema, rejected_schema
from datakit.store import StageDir, atomic_path

ROW_GROUP = 1_000
# Work files live only until the shards are written: lz4, and no dictionary for the signature
# columns (random 16-bit values never repeat enough to pay for one). Writing them took a third of a
# task's keep step with zstd and dictionaries everywhere; rejected files keep zstd (they are output).
def work_file_options(schema: pa.Schema) -> dict[str, Any]:
    return {"compression": "lz4", "use_dictionary": [f.name for f in schema if not f.name.startswith("_mh")]}
KEY_COLUMNS = ["id", "group", "lang", "task", "_dkey", "_nbytes"]


def work_schema(near: MinHashParams | None) -> pa.Schema:
    """The record columns, the exact-dedup key, the size and, for near dedup, bucket and signature."""
    schema = record_schema().append(pa.field("_dkey", pa.binary(16))).append(pa.field("_nbytes", pa.int64()))
    for f in work_fields(near) if near else []:
        schema = schema.append(f)
    return schema


class TaskWriters:
    """A task's Parquet writers: one work file per language for kept records, one file per stage
    that rejected something."""

    def __init__(self, stage_dir: StageDir, task: str, near: MinHashParams | None):
        self.stage_dir, self.task, self.near = stage_dir, task, near
        self.schema = work_schema(near)
        self.kept_paths: dict[str, Path] = {}
        self._open: dict[str, tuple[Any, pq.ParquetWriter, pa.Schema]] = {}
        self._buffers: dict[str, list[pa.Table]] = {}
        self.rejected_files: dict[str, str] = {}
        self.rows: dict[str, int] = {}

    def _writer(self, key: str, path: Path, schema: pa.Schema, **options: Any) -> None:
        if key not in self._open:
            ctx = atomic_path(path)
            self._open[key] = (ctx, pq.ParquetWriter(ctx.__enter__(), schema, **(options or {"compression": "zstd"})), schema)
            self._buffers[key] = []

    def _add(self, key: str, table: pa.Table, final: bool = False) -> None:
        buffer = self._buffers[key]
        if table.num_rows:
            buffer.append(table)
        pending = pa.concat_tables(buffer) if buffer else None
        if pending is None:
            return
        cut = pending.num_rows if final else pending.num_rows - pending.num_rows % ROW_GROUP
        if cut:
            self._open[key][1].write_table(pending.slice(0, cut), row_group_size=ROW_GROUP)
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
            self._writer(f"kept:{lang}", self.kept_paths[lang], self.schema, **work_file_options(self.schema))
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


def read_keys(files: list[str]) -> pa.Table:
    """Compact keys of every kept record, with the work file (`part`, an index into `files`) and
    the row it is in: what the whole-corpus steps work on, a few dozen bytes a record."""
    tables = []
    for part, path in enumerate(files):
        t = pq.ParquetFile(path).read(columns=KEY_COLUMNS)  # lighter than read_table: thousands of small files
        n = t.num_rows
        t = t.append_column("part", pa.array(np.full(n, part, dtype=np.int64)))
        t = t.append_column("row", pa.array(np.arange(n, dtype=np.int64)))
        tables.append(t)
    if not tables:  # nothing survived the per-record stages: the same columns, no rows
        tables = [pa.table({c: pa.array([], pa.string()) for c in ["id", "group", "lang", "task"]}
                           | {"_dkey": pa.array([], pa.binary(16)), "_nbytes": pa.array([], pa.int64()),
                              "part": pa.array([], pa.int64()), "row": pa.array([], pa.int64())})]
    return pa.concat_tables(tables).rename_columns(["id", "group", "lang", "task", "key", "nbytes", "part", "row"])
