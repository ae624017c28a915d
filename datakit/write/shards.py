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
    sources: tuple[tuple[str, tuple[int, ...], tuple[int, ...]], ...]  # (work file, row indices, copy of each)
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
    `repeat_for(lang)` gives the language's way of making repeats.
    """
    jobs: list[ShardJob] = []
    if keys.num_rows == 0:
        return jobs
    keys = keys.take(pc.sort_indices(keys, sort_keys=[("lang", "ascending"), ("split", "ascending"), ("id", "ascending"), ("copy", "ascending")]))
    lang_codes = pc.dictionary_encode(keys.column("lang").combine_chunks())  # not a Python string per row
    split_codes = pc.dictionary_encode(keys.column("split").combine_chunks())
    langs, lang_names = lang_codes.indices.to_numpy(), lang_codes.dictionary.to_pylist()
    splits, split_names = split_codes.indices.to_numpy(), split_codes.dictionary.to_pylist()
    parts = keys.column("part").to_numpy()
    rows = keys.column("row").to_numpy()
    copy = keys.column("copy").to_numpy()
    nbytes = keys.column("nbytes").to_numpy()
    change = (langs[1:] != langs[:-1]) | (splits[1:] != splits[:-1])
    bounds = np.flatnonzero(np.r_[True, change, True])
    for start, end in zip(bounds[:-1], bounds[1:], strict=True):
        lang, split = lang_names[langs[start]], split_names[splits[start]]
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
            by_file: dict[int, list[tuple[int, int]]] = {}
            for p, r, c in zip(parts[lo:hi], rows[lo:hi], copy[lo:hi], strict=True):
                by_file.setdefault(int(p), []).append((int(r), int(c)))
            sources = tuple((files[p], tuple(r for r, _ in sorted(rc)), tuple(c for _, c in sorted(rc))) for p, rc in sorted(by_file.items()))
            jobs.append(ShardJob(path=f"data/{lang}/{split}-{k:05d}-of-{n:05d}.parquet", lang=lang, split=split, sources=sources,
                                 rows=hi - lo, output=output, out=out, fingerprint=fingerprint,
                                 repeat=repeat_for(lang) if repeat_for else None))
    return jobs


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
    for f, rows, copies in job.sources:
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
