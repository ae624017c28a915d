"""Sharded Parquet in the Hub's dataset layout: `data/<lang>/train-0000k-of-0000n.parquet`.

The driver plans the shards from compact keys only (which rows, from which work file, sorted by
id, cut by rows and bytes); each shard is then one task that reads just its rows' row groups,
sorts them by id and writes the file atomically. A shard's bytes depend on the set of records
and the output settings, not on how many workers produced them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from datakit.engine.store import StageDir, atomic_path
from datakit.recipe import Output
from datakit.schema import record_schema


@dataclass(frozen=True)
class ShardJob:
    path: str  # relative to the output folder
    lang: str
    split: str
    sources: tuple[tuple[str, tuple[int, ...]], ...]  # (work file, row indices)
    rows: int
    output: Output
    out: str
    fingerprint: str


def plan_shards(keys: pa.Table, files: list[str], output: Output, out: str, fingerprint: str, split: str = "train") -> list[ShardJob]:
    """Cut each language's rows (sorted by id) into shards of at most shard_max_rows / shard_max_bytes.

    `keys` has columns part (index into `files`), row, id, lang, nbytes.
    """
    jobs: list[ShardJob] = []
    if keys.num_rows == 0:
        return jobs
    keys = keys.take(pc.sort_indices(keys, sort_keys=[("lang", "ascending"), ("id", "ascending")]))
    langs = keys.column("lang").to_numpy(zero_copy_only=False)
    parts = keys.column("part").to_numpy()
    rows = keys.column("row").to_numpy()
    nbytes = keys.column("nbytes").to_numpy()
    bounds = np.flatnonzero(np.r_[True, langs[1:] != langs[:-1], True])
    for start, end in zip(bounds[:-1], bounds[1:], strict=True):
        lang = str(langs[start])
        cuts, count, size = [start], 0, 0
        for i in range(start, end):
            if count and (count >= output.shard_max_rows or size + nbytes[i] > output.shard_max_bytes):
                cuts.append(i)
                count, size = 0, 0
            count += 1
            size += int(nbytes[i])
        cuts.append(end)
        n = len(cuts) - 1
        for k in range(n):
            lo, hi = cuts[k], cuts[k + 1]
            by_file: dict[int, list[int]] = {}
            for p, r in zip(parts[lo:hi], rows[lo:hi], strict=True):
                by_file.setdefault(int(p), []).append(int(r))
            sources = tuple((files[p], tuple(sorted(rs))) for p, rs in sorted(by_file.items()))
            jobs.append(ShardJob(f"data/{lang}/{split}-{k:05d}-of-{n:05d}.parquet", lang, split, sources, hi - lo, output, out, fingerprint))
    return jobs


def take_rows(path: str, rows: tuple[int, ...] | list[int], columns: list[str] | None = None) -> pa.Table:
    """The given rows of a Parquet file, reading only the row groups that hold them."""
    pf = pq.ParquetFile(path)
    starts = np.cumsum([0] + [pf.metadata.row_group(g).num_rows for g in range(pf.num_row_groups)])
    wanted = np.asarray(rows, dtype=np.int64)
    groups = sorted(set(np.searchsorted(starts, wanted, side="right") - 1))
    table = pf.read_row_groups(groups, columns=columns)
    offset = np.concatenate([np.arange(starts[g], starts[g + 1]) for g in groups])
    local = np.searchsorted(offset, wanted)
    return table.take(pa.array(local))


def write_shard(job: ShardJob) -> dict[str, Any]:
    stage_dir = StageDir(Path(job.out), "write", job.fingerprint)
    final = Path(job.out) / job.path
    task = job.path.replace("/", "--")
    done = stage_dir.result(task)
    if done is not None and final.is_file() and final.stat().st_size == done["bytes"]:
        return done
    columns = list(record_schema().names)
    tables = [take_rows(f, rows, columns) for f, rows in job.sources]
    table = pa.concat_tables(tables).cast(record_schema())
    table = table.take(pc.sort_indices(table, sort_keys=[("id", "ascending")]))
    compression = None if job.output.compression == "none" else job.output.compression
    with atomic_path(final) as tmp:
        pq.write_table(table, tmp, compression=compression, row_group_size=job.output.row_group_rows, write_statistics=True)
    digest = hashlib.sha256(final.read_bytes()).hexdigest()
    return stage_dir.complete(task, {"path": job.path, "rows": table.num_rows, "bytes": final.stat().st_size, "sha256": digest})
