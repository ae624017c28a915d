"""Sharded Parquet in the Hub's dataset layout: `data/<lang>/train-0000k-of-0000n.parquet`.

The driver plans the shards from compact keys only (which rows, from which work file, sorted by
id, cut by rows and bytes); each shard is then one task that reads just its rows' row groups,
sorts them by id and writes the file atomically. A shard's bytes depend on the set of records
and the output settings, not on how many workers produced them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from datakit.corpus_steps.memory import prefer_jemalloc
from datakit.hashing import file_sha256
from datakit.recipe import Output
from datakit.schema import record_schema
from datakit.store import StageDir, atomic_path, take_rows

Repeat = Callable[[dict[str, Any], int], dict[str, Any]]  # (row, copy >= 1) -> the copy-th repeat of the row


@dataclass(frozen=True, kw_only=True)
class ShardJob:
    path: str  # relative to the output folder
    lang: str
    split: str
    sources: tuple[tuple[str, np.ndarray, np.ndarray], ...]  # (work file, row indices, copy of each): int64 arrays
    rows: int
    output: Output
    out: str
    fingerprint: str
    repeat: Repeat | None = None  # how a repeated row is made (the build passes construct.rerender)


@dataclass(kw_only=True)
class ShardResult:
    path: str
    rows: int
    bytes: int
    sha256: str
    joined: int = 0  # rows made from a pair completed through another language (sources/join.py)
    reused: bool = False


def expand_copies(selected: pa.Table) -> pa.Table:
    """One row per copy that goes into the corpus: copy 0 is the record, 1.. its repeats."""
    copies = selected.column("copies").to_numpy()
    index = np.repeat(np.arange(selected.num_rows), copies)
    copy = np.arange(len(index)) - np.repeat(np.cumsum(copies) - copies, copies)  # rank of each copy among its record's
    return selected.take(pa.array(index)).append_column("copy", pa.array(copy.astype(np.int64)))


def plan_shards(keys: pa.Table, files: list[str], output: Output, out: str, fingerprint: str,
                repeat_for: Callable[[str], Repeat] | None = None) -> list[ShardJob]:
    """Cut each language's rows of each split (sorted by id, then copy) into shards of at most
    shard_max_rows / shard_max_bytes.

    `keys` has columns part (index into `files`), row, id, lang, nbytes, copy, split;
    `repeat_for(lang)` gives the language's way of making repeats. Only the sort order and the
    number columns are taken (not the ids again), and each shard's rows travel as arrays: tuples
    of Python ints were about 45 bytes a row held by the driver until the shards were written.
    """
    jobs: list[ShardJob] = []
    if keys.num_rows == 0:
        return jobs
    order = pc.sort_indices(keys, sort_keys=[("lang", "ascending"), ("split", "ascending"), ("id", "ascending"), ("copy", "ascending")]).to_numpy()
    lang_codes = pc.dictionary_encode(keys.column("lang").combine_chunks())  # not a Python string per row
    split_codes = pc.dictionary_encode(keys.column("split").combine_chunks())
    langs, lang_names = lang_codes.indices.to_numpy()[order], lang_codes.dictionary.to_pylist()
    splits, split_names = split_codes.indices.to_numpy()[order], split_codes.dictionary.to_pylist()
    parts, rows, copy, nbytes = (keys.column(c).to_numpy()[order] for c in ("part", "row", "copy", "nbytes"))
    change = (langs[1:] != langs[:-1]) | (splits[1:] != splits[:-1])
    bounds = np.flatnonzero(np.r_[True, change, True])
    for start, end in zip(bounds[:-1], bounds[1:], strict=True):
        lang, split = lang_names[langs[start]], split_names[splits[start]]
        cuts = start + shard_cuts(nbytes[start:end], output.shard_max_rows, output.shard_max_bytes)
        n = len(cuts) - 1
        for k in range(n):
            lo, hi = int(cuts[k]), int(cuts[k + 1])
            p, r, c = parts[lo:hi], rows[lo:hi], copy[lo:hi]
            by = np.lexsort((c, r, p))  # by work file, then row, then copy
            p, r, c = p[by], r[by], c[by]
            files_at = np.flatnonzero(np.r_[True, p[1:] != p[:-1], True])
            sources = tuple((files[int(p[a])], r[a:b].astype(np.int64), c[a:b].astype(np.int64))
                            for a, b in zip(files_at[:-1], files_at[1:], strict=True))
            jobs.append(ShardJob(path=f"data/{lang}/{split}-{k:05d}-of-{n:05d}.parquet", lang=lang, split=split, sources=sources,
                                 rows=hi - lo, output=output, out=out, fingerprint=fingerprint,
                                 repeat=repeat_for(lang) if repeat_for else None))
    return jobs


def shard_cuts(nbytes: np.ndarray, max_rows: int, max_bytes: int) -> np.ndarray:
    """Where the rows (in order, `nbytes` each) are cut into shards: each takes rows while it has
    fewer than `max_rows` and the next row keeps it within `max_bytes` (a shard has at least one
    row). Positions from 0 to len(nbytes), one step per shard, not per row."""
    total = np.r_[0, np.cumsum(nbytes, dtype=np.int64)]
    cuts, at, n = [0], 0, len(nbytes)
    while at < n:
        by_bytes = int(np.searchsorted(total, total[at] + max_bytes, side="right")) - 1
        at = max(at + 1, min(at + max_rows, by_bytes, n))
        cuts.append(at)
    return np.array(cuts, dtype=np.int64)


def write_shard(job: ShardJob) -> ShardResult:
    stage_dir = StageDir(Path(job.out), "write", job.fingerprint)
    final = Path(job.out) / job.path
    task = job.path.replace("/", "--")
    done = stage_dir.result(task)
    if done is not None and final.is_file() and final.stat().st_size == done["bytes"]:
        return ShardResult(**done, reused=True)
    prefer_jemalloc()
    columns = list(record_schema().names)
    tables = []
    for f, row_array, copy_array in job.sources:
        rows, copies = row_array.tolist(), copy_array.tolist()
        unique = tuple(sorted(set(rows)))
        table = take_rows(f, unique, columns)
        if any(copies):
            if job.repeat is None:
                raise ValueError(f"{job.path}: rows are repeated but the job has no way to make repeats")
            by_row = dict(zip(unique, table.to_pylist(), strict=True))
            table = pa.Table.from_pylist([by_row[r] if c == 0 else job.repeat(by_row[r], c) for r, c in zip(rows, copies, strict=True)],
                                         schema=record_schema())
        tables.append(table)
    table = pa.concat_tables(tables).cast(record_schema())
    table = table.take(pc.sort_indices(table, sort_keys=[("id", "ascending")]))
    compression = None if job.output.compression == "none" else job.output.compression
    with atomic_path(final) as tmp:
        pq.write_table(table, tmp, compression=compression, row_group_size=job.output.row_group_rows, write_statistics=True)
    joined = pc.sum(pc.match_substring(table.column("meta"), '"joined_through":')).as_py() or 0
    result = ShardResult(path=job.path, rows=table.num_rows, bytes=final.stat().st_size, sha256=file_sha256(final), joined=joined)
    stage_dir.complete(task, {"path": result.path, "rows": result.rows, "bytes": result.bytes, "sha256": result.sha256, "joined": joined})
    return result
