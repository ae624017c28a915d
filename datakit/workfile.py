"""Work files: the records a partition task kept, as the whole-corpus steps and the shards read them.

A task writes one work file holding the contract's columns plus what the corpus steps need without
the text: the exact-dedup key (`_dkey`), the size (`_nbytes`) and, for near dedup, the bucket key
and MinHash signature. A language's rows are written in row groups of ROW_GROUP rows as they
come, and what is left of every language at the end goes into shared row groups, in order of
language; each language's row groups and row ranges are a piece of the file (`store.piece`): a
shard reads only its language's pieces. Records a stage rejected go to one rejected file per stage.
Each language's rows, and how they are cut into row groups, depend on the rows alone, not on how
they were batched on their way (the Dask task and the datatrove steps batch differently); where in
the file a language's full row groups fall may differ between the two, and nothing reads the file
in any other order than by piece.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from datakit.corpus_steps.exact_dedup import dedup_key
from datakit.corpus_steps.near_dedup import SIGNATURE, MinHashParams, signature_columns, work_fields
from datakit.record_stages.base import Rejection
from datakit.records import Record, to_table
from datakit.schema import record_schema, rejected_schema
from datakit.store import Part, StageDir, atomic_path, piece, read_piece

ROW_GROUP = 1_000
# What is left of every language at the end of a task shares row groups of this many rows or more:
# at most SHARED_GROUPS of them, so a task's footer stays small, and a language's piece reads little
# beyond its own rows.
SHARED_MIN_ROWS, SHARED_GROUPS = 128, 32
# Kept records wait, as whole batch tables, until this many are in hand, and are then split by
# language in one pass: with a hundred languages in a batch, splitting every batch was a hundred
# small copies of 130 columns each (a sixth of the keep step). Holds a few MB.
SPLIT_ROWS = 16_000
# Work files live only until the shards are written: lz4, and no dictionary for the signature
# columns (random 16-bit values never repeat enough to pay for one). Writing them took a third of a
# task's keep step with zstd and dictionaries everywhere; rejected files keep zstd (they are output).
def work_file_options(schema: pa.Schema) -> dict[str, Any]:
    plain = [f.name for f in schema if f.name != SIGNATURE]  # the signature: no dictionary, no min/max statistics
    return {"compression": "lz4", "use_dictionary": plain, "write_statistics": plain}
KEY_COLUMNS = ["id", "group", "lang", "task", "_dkey", "_nbytes"]


def work_schema(near: MinHashParams | None) -> pa.Schema:
    """The record columns, the exact-dedup key, the size and, for near dedup, bucket and signature."""
    schema = record_schema().append(pa.field("_dkey", pa.binary(16))).append(pa.field("_nbytes", pa.int64()))
    for f in work_fields(near) if near else []:
        schema = schema.append(f)
    return schema


class TaskWriters:
    """A task's Parquet writers: one work file per language for kept records, one file per stage
    that rejected something.

    A batch becomes one Arrow table (columns built once, keys and signatures for the whole batch),
    and batches are split by language only every `SPLIT_ROWS` rows: a build with a hundred
    languages in a batch used to make a hundred small tables of 130 columns each, one column at a
    time, and most of the keep step went to that bookkeeping. `kept_paths` and `rows` are complete
    after `close`."""

    def __init__(self, stage_dir: StageDir, task: str, near: MinHashParams | None):
        self.stage_dir, self.task, self.near = stage_dir, task, near
        self.schema = work_schema(near)
        self.kept_path = stage_dir.file("records", f"{task}.parquet")
        self._open: dict[str, tuple[Any, pq.ParquetWriter, pa.Schema]] = {}  # writer key -> (atomic path, writer, schema)
        self._buffers: dict[str, list[pa.Table]] = {}  # buffer key -> tables waiting for a row group
        self._pending: dict[str, int] = {}
        self._parts: dict[str, list[Part]] = {}  # buffer key -> what of its writer's file it wrote (store.piece)
        self._written: dict[str, int] = {}  # writer key -> row groups written
        self._unsplit: list[pa.Table] = []  # kept batches not yet split by language
        self._unsplit_langs: list[str] = []
        self.rejected_files: dict[str, str] = {}
        self.rows: dict[str, int] = {}

    @property
    def kept_paths(self) -> dict[str, str]:
        """Each language's kept rows: a piece of the task's work file (complete after `close`)."""
        return {key.removeprefix("kept:"): piece(self.kept_path, parts) for key, parts in sorted(self._parts.items()) if key.startswith("kept:") and parts}

    def _writer(self, key: str, path: Path, schema: pa.Schema, **options: Any) -> None:
        if key not in self._open:
            ctx = atomic_path(path)
            self._open[key] = (ctx, pq.ParquetWriter(ctx.__enter__(), schema, **(options or {"compression": "zstd"})), schema)
            self._written[key] = 0

    def _add(self, key: str, table: pa.Table, final: bool = False, writer: str | None = None) -> None:
        """Buffer the rows; write whole row groups only (all that is left when `final`), so the
        rows' row groups do not depend on how the rows were batched. Tables are joined only when
        a row group is due, not on every batch. `writer`: the file, when it is not the buffer's own
        (every language's rows go to the one work file)."""
        writer = writer or key
        if key not in self._buffers:
            self._buffers[key], self._pending[key], self._parts[key] = [], 0, []
        if table.num_rows:
            self._buffers[key].append(table)
            self._pending[key] += table.num_rows
        rows = self._pending[key]
        cut = rows if final else rows - rows % ROW_GROUP
        if not cut:
            return
        pending = pa.concat_tables(self._buffers[key])
        self._open[writer][1].write_table(pending.slice(0, cut), row_group_size=ROW_GROUP)
        groups = -(-cut // ROW_GROUP)
        self._parts[key] += [(g, None, None) for g in range(self._written[writer], self._written[writer] + groups)]
        self._written[writer] += groups
        rest = pending.slice(cut)
        self._buffers[key], self._pending[key] = ([rest] if rest.num_rows else []), rest.num_rows

    def keep(self, records: list[Record]) -> None:
        """Take a batch of kept records, with their keys, for their languages' work files."""
        if not records:
            return
        self._unsplit.append(self._work_table(records))
        self._unsplit_langs += [r["lang"] for r in records]
        if len(self._unsplit_langs) >= SPLIT_ROWS:
            self._split()

    def _split(self) -> None:
        """The waiting rows to their languages' buffers, in their order: one copy per language
        (a slice would keep every waiting row in memory until its language's next row group)."""
        if not self._unsplit:
            return
        by_lang: dict[str, list[int]] = {}
        for i, lang in enumerate(self._unsplit_langs):
            by_lang.setdefault(lang, []).append(i)
        table = pa.concat_tables(self._unsplit)
        self._unsplit, self._unsplit_langs = [], []
        if len(by_lang) == 1:
            self._keep(next(iter(by_lang)), table)
            return
        table = table.combine_chunks()  # else every take would join the batches' chunks again
        for lang, rows in sorted(by_lang.items()):
            self._keep(lang, table.take(pa.array(rows, pa.int64())))

    def _work_table(self, records: list[Record]) -> pa.Table:
        """The batch as work-file columns: the record's, the exact-dedup key, the size and, for
        near dedup, bucket key and signature (one matrix for the batch)."""
        extra: dict[str, list | pa.Array] = {
            "_dkey": [dedup_key(r) for r in records],
            "_nbytes": [sum(len(m["content"].encode("utf-8")) for m in r["messages"]) for r in records],
        }
        if self.near:
            extra.update(signature_columns(records, self.near))
        return to_table(records, self.schema, extra)

    def _keep(self, lang: str, table: pa.Table) -> None:
        self._writer("kept", self.kept_path, self.schema, **work_file_options(self.schema))
        self._add(f"kept:{lang}", table, writer="kept")
        self.rows[lang] = self.rows.get(lang, 0) + table.num_rows

    def reject(self, rejections: list[Rejection]) -> None:
        by_stage: dict[str, list[Rejection]] = {}
        for rej in rejections:
            by_stage.setdefault(rej.stage, []).append(rej)
        for stage, group in by_stage.items():
            path = self.stage_dir.file("rejected", stage, f"{self.task}.parquet")
            self._writer(stage, path, rejected_schema())
            self.rejected_files[stage] = str(path)
            table = to_table([rej.record for rej in group], rejected_schema(),
                             {"stage": [stage] * len(group), "reason": [rej.reason for rej in group]})
            self._add(stage, table)

    def close(self) -> None:
        """What is left of every language (fewer than ROW_GROUP rows each) into shared row groups, in
        order of language, each language's rows a range of them; each stage's rejected rows; the
        files closed."""
        self._split()
        left = [(key, pa.concat_tables(self._buffers[key])) for key in sorted(self._buffers) if key.startswith("kept:") and self._pending[key]]
        if left:
            first, at = self._written["kept"], 0
            shared = pa.concat_tables([table for _, table in left])
            size = min(ROW_GROUP, max(SHARED_MIN_ROWS, -(-shared.num_rows // SHARED_GROUPS)))
            self._open["kept"][1].write_table(shared, row_group_size=size)
            self._written["kept"] += -(-shared.num_rows // size)
            for key, table in left:
                end = at + table.num_rows
                while at < end:  # a language's rows may run on into the next shared row group
                    group, row = divmod(at, size)
                    take = min(size - row, end - at)
                    self._parts[key].append((first + group, row, row + take))
                    at += take
                self._buffers[key], self._pending[key] = [], 0
        for key in sorted(k for k in self._buffers if not k.startswith("kept:")):
            self._add(key, self._open[key][2].empty_table(), final=True)
        for ctx, writer, _ in self._open.values():
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
        t = read_piece(path, KEY_COLUMNS)
        n = t.num_rows
        t = t.append_column("part", pa.array(np.full(n, part, dtype=np.int64)))
        t = t.append_column("row", pa.array(np.arange(n, dtype=np.int64)))
        tables.append(t)
    if not tables:  # nothing survived the per-record stages: the same columns, no rows
        tables = [pa.table({c: pa.array([], pa.string()) for c in ["id", "group", "lang", "task"]}
                           | {"_dkey": pa.array([], pa.binary(16)), "_nbytes": pa.array([], pa.int64()),
                              "part": pa.array([], pa.int64()), "row": pa.array([], pa.int64())})]
    return pa.concat_tables(tables).rename_columns(["id", "group", "lang", "task", "key", "nbytes", "part", "row"])
