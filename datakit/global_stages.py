"""The stages that need the whole corpus at once: exact dedup and balance.

They run on the driver over compact keys read from the prepared work files (id, group, language,
task, dedup key, size: a few dozen bytes a record), never over the text. Their decisions are then
applied per work file: rejected duplicates are written by one task per file that has any.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from datakit.engine.store import StageDir, atomic_path
from datakit.schema import rejected_schema
from datakit.write.shards import take_rows

KEY_COLUMNS = ["id", "group", "lang", "task", "_dkey", "_nbytes"]


def load_keys(files: list[str]) -> pa.Table:
    """Compact keys of every prepared record, with the work file (`part`) and row it is in."""
    tables = []
    for part, path in enumerate(files):
        t = pq.read_table(path, columns=KEY_COLUMNS)
        n = t.num_rows
        t = t.append_column("part", pa.array(np.full(n, part, dtype=np.int64)))
        t = t.append_column("row", pa.array(np.arange(n, dtype=np.int64)))
        tables.append(t)
    if not tables:
        return pa.table({c: pa.array([], pa.string()) for c in ["id", "group", "lang", "task"]}
                        | {"_dkey": pa.array([], pa.binary(16)), "_nbytes": pa.array([], pa.int64()),
                           "part": pa.array([], pa.int64()), "row": pa.array([], pa.int64())})
    return pa.concat_tables(tables).rename_columns(["id", "group", "lang", "task", "key", "nbytes", "part", "row"])


@dataclass(frozen=True)
class RejectJob:
    """Write the rows of one work file that a global stage rejected, with reason and what they matched."""

    stage: str
    reason: str
    source_file: str
    rows: tuple[int, ...]
    matched: tuple[str, ...]
    matched_field: str
    out: str
    fingerprint: str
    task: str


def write_rejected(job: RejectJob) -> dict[str, Any]:
    stage_dir = StageDir(Path(job.out), job.stage, job.fingerprint)
    done = stage_dir.result(job.task)
    if done is not None:
        return done
    table = take_rows(job.source_file, job.rows)
    rows = table.drop_columns(["_dkey", "_nbytes"]).to_pylist()
    for row, matched in zip(rows, job.matched, strict=True):
        meta = json.loads(row["meta"])
        meta[job.matched_field] = matched
        row["meta"] = json.dumps(meta, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        row["stage"], row["reason"] = job.stage, job.reason
    path = stage_dir.file("rejected", job.stage, f"{job.task}.parquet")
    with atomic_path(path) as tmp:
        pq.write_table(pa.Table.from_pylist(rows, schema=rejected_schema()), tmp, compression="zstd")
    return stage_dir.complete(job.task, {"file": str(path), "rows": len(rows)})
