"""The steps that need the whole corpus at once: exact dedup, near dedup, balance, and their driver.

They run on the driver over compact keys read from the work files (id, group, language,
task, dedup key, size: a few dozen bytes a record), never over the text. What each step adds to
them is bounded: exact dedup sorts the 16-byte keys in numpy (ids only for rows that share a key),
near dedup hashes each surviving row's LSH bucket file by file, a few bands at a time
(`near_read`), and only the rows a step removes or selects are gathered from the key table.
Each stage narrows a mask of surviving rows; its rejections are then written per work file by one
task per file that has any, with what each rejected row matched.
"""

from __future__ import annotations

import functools
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from datakit.corpus_steps import near_dedup as nd
from datakit.corpus_steps.balance import BalanceSettings, Quotas, plan_selection
from datakit.corpus_steps.exact_dedup import duplicates_among
from datakit.corpus_steps.file_cache import WorkFileCache
from datakit.corpus_steps.gather import gather, gather_table
from datakit.corpus_steps.memory import prefer_jemalloc, release_memory
from datakit.corpus_steps.near_read import BandReader, SurvivingRows, read_signatures
from datakit.engine import Engine
from datakit.hashing import canonical_json
from datakit.partition import PartitionResult
from datakit.recipe import Recipe
from datakit.schema import rejected_schema
from datakit.stats import StageStats
from datakit.store import StageDir, atomic_path, take_rows
from datakit.workfile import read_keys


@dataclass(frozen=True, kw_only=True)
class RejectJob:
    """Write the rows of one work file that a corpus step rejected, with reason and what they matched."""

    stage: str
    reason: str
    source_file: str
    rows: tuple[int, ...]
    meta: tuple[tuple[str, tuple], ...]  # (meta key, its value for each row): columns, not a dict per row
    out: str
    fingerprint: str
    task: str


@dataclass(kw_only=True)
class RejectedFile:
    file: str
    rows: int
    reused: bool = False


def write_rejected(job: RejectJob) -> RejectedFile:
    stage_dir = StageDir(Path(job.out), job.stage, job.fingerprint)
    done = stage_dir.result(job.task)
    if done is not None:
        return RejectedFile(**done, reused=True)
    prefer_jemalloc()
    table = take_rows(job.source_file, job.rows)
    rows = table.select([c for c in rejected_schema().names if c in table.column_names]).to_pylist()
    for i, row in enumerate(rows):
        meta = json.loads(row["meta"])
        meta.update({name: values[i] for name, values in job.meta})
        row["meta"] = canonical_json(meta)
        row["stage"], row["reason"] = job.stage, job.reason
    path = stage_dir.file("rejected", job.stage, f"{job.task}.parquet")
    with atomic_path(path) as tmp:
        pq.write_table(pa.Table.from_pylist(rows, schema=rejected_schema()), tmp, compression="zstd")
    stage_dir.complete(job.task, {"file": str(path), "rows": len(rows)})
    return RejectedFile(file=str(path), rows=len(rows))


@dataclass
class Removal:
    """What one corpus step took out: rows (global indices) and what to add to their meta, as
    columns (meta key -> a value per row): a dict per row was tens of MB at a million records."""

    stage: str
    reason: str
    rows: np.ndarray
    meta: dict[str, list] = field(default_factory=dict)


def exact_removal(keys: pa.Table, alive: np.ndarray) -> Removal:
    index = np.flatnonzero(alive)
    positions, originals = duplicates_among(keys.column("id"), keys.column("key"), index)
    return Removal("exact_dedup", "exact_duplicate", index[positions], {"duplicate_of": originals})


def rows_per_file(keys: pa.Table, files: list[str]) -> np.ndarray:
    """Rows of each work file in the key table (`part`), counted one chunk at a time."""
    counts = np.zeros(len(files), dtype=np.int64)
    for chunk in keys.column("part").chunks:
        counts += np.bincount(chunk.to_numpy(), minlength=len(files))
    return counts


def near_removal(keys: pa.Table, alive: np.ndarray, files: list[str], params: nd.MinHashParams,
                 cache: WorkFileCache | None = None) -> Removal:
    """Near duplicates among the surviving rows (global indices in, global indices out)."""
    rows = SurvivingRows.of(files, rows_per_file(keys, files), alive)
    index = rows.index
    if len(index) == 0:
        return Removal("near_dedup", "near_duplicate", np.zeros(0, dtype=np.int64))
    id_column = keys.column("id")

    def ids(local: np.ndarray) -> pa.Array:
        return gather(id_column, index[local])

    found = nd.find_near(BandReader(rows, params, cache), functools.partial(read_signatures, rows, params, cache=cache), len(index), ids, params)
    if not found:
        return Removal("near_dedup", "near_duplicate", np.zeros(0, dtype=np.int64))
    local = np.array(sorted(found), dtype=np.int64)
    reps = ids(np.array([found[r][0] for r in local.tolist()], dtype=np.int64)).to_pylist()
    meta = {"near_duplicate_of": reps, "similarity": [round(found[r][1], 3) for r in local.tolist()]}
    return Removal("near_dedup", "near_duplicate", index[local], meta)


def reject_jobs(removal: Removal, keys: pa.Table, files: list[str], tasks: list[str], out: Path, fingerprint: str) -> list[RejectJob]:
    """One job per work file with removed rows, its rows ascending, each with its meta values."""
    parts = gather(keys.column("part"), removal.rows).to_numpy()
    rows = gather(keys.column("row"), removal.rows).to_numpy()
    order = np.lexsort((rows, parts))
    bounds = np.flatnonzero(np.r_[True, parts[order][1:] != parts[order][:-1], True]) if len(order) else np.zeros(1, dtype=np.int64)
    jobs = []
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        mine = order[lo:hi].tolist()
        p = int(parts[mine[0]])
        jobs.append(RejectJob(stage=removal.stage, reason=removal.reason, source_file=files[p], rows=tuple(rows[mine].tolist()),
                              meta=tuple((name, tuple(values[i] for i in mine)) for name, values in sorted(removal.meta.items())),
                              out=str(out), fingerprint=fingerprint, task=tasks[p]))
    return jobs


KEY_BATCH_FILES = 32  # work files whose keys are read, then made one chunk, at a time


def _file_keys(files: list[str], first: int, cache: WorkFileCache | None, take: bool) -> pa.Table:
    """Keys of a batch of work files, one chunk, `part` counted from `first`."""
    if cache is None:
        batch = read_keys(files)
        part = batch.column("part").to_numpy() + first
    else:
        tables = [cache.read(path, "keys", functools.partial(read_keys, [path]), take) for path in files]
        batch = pa.concat_tables(tables)
        part = np.repeat(np.arange(first, first + len(files), dtype=np.int64), [t.num_rows for t in tables])
    at = batch.schema.get_field_index("part")
    return batch.set_column(at, batch.field(at), pa.array(part)).combine_chunks()


def read_corpus_keys(files: list[str], cache: WorkFileCache | None = None, take: bool = False) -> pa.Table:
    """The key table of the work files (`workfile.read_keys`), read a batch of files at a time and
    each batch made one chunk: one chunk per file left thousands of small buffers that the
    allocator held at nearly twice their size, the larger part of the driver's memory. `cache`:
    keys read before (`take`: taken out of it as they are used)."""
    if not files:
        return read_keys(files)
    batches = []
    for k in range(0, len(files), KEY_BATCH_FILES):
        batches.append(_file_keys(files[k : k + KEY_BATCH_FILES], k, cache, take))
        release_memory()
    return pa.concat_tables(batches)


def dedup_removals(recipe: Recipe, keys: pa.Table, files: list[str], alive: np.ndarray,
                   cache: WorkFileCache | None = None) -> Iterator[Removal]:
    """The recipe's dedup steps in order, each over the rows the ones before left `alive` (the
    caller takes each removal's rows out of `alive` before asking for the next)."""
    if recipe.dedup.exact:
        removal = exact_removal(keys, alive)
        release_memory()
        yield removal
    params = nd.params_for(recipe.dedup.near)
    if params is not None:
        removal = near_removal(keys, alive, files, params, cache)
        release_memory()
        yield removal


def cells_after_dedup(recipe: Recipe, partitions: list[PartitionResult], cache: WorkFileCache | None = None) -> Counter:
    """Records per (group, language, task) that dedup would leave, written nowhere: what reading by
    quota checks its quotas against before it stops reading. `cache`: what earlier calls read of
    the work files (filled by this one)."""
    files = [path for p in partitions for path in p.records.values()]
    keys = read_corpus_keys(files, cache)
    alive = np.ones(keys.num_rows, dtype=bool)
    for removal in dedup_removals(recipe, keys, files, alive, cache):
        alive[removal.rows] = False
    counts = keys.filter(pa.array(alive)).group_by(["group", "lang", "task"]).aggregate([([], "count_all")])
    columns = (counts.column(c).to_pylist() for c in ("group", "lang", "task", "count_all"))
    return Counter({(g, lang, t): n for g, lang, t, n in zip(*columns, strict=True)})


@dataclass(kw_only=True)
class CorpusResult:
    """What the whole-corpus steps leave for the shards, the stats and the card."""

    stages: list[StageStats]  # exact_dedup, near_dedup (when enabled), balance: the totals
    per_source: dict[str, list[StageStats]]  # the same, per source
    selected: pa.Table  # the rows balance selected (compact keys, `copies` per row)
    files: list[str]  # the work files `part` indexes
    file_sources: list[str]  # the source of each work file
    rejected_files: dict[str, list[str]]  # stage -> its rejected files
    quotas: dict[str, dict[str, int]]  # balance: group -> "lang|task" -> records
    available: dict[str, dict[str, int]]  # what each cell held before balancing
    shortfall: dict[str, int]  # what the data could not fill


def run_corpus_steps(recipe: Recipe, partitions: list[PartitionResult], fp: dict[str, str], out: Path, engine: Engine,
                     quotas: Quotas | None = None, cache: WorkFileCache | None = None) -> CorpusResult:
    """Exact dedup, near dedup and balance over every kept record, in that order; the rejected rows
    of each dedup step are written by one engine task per work file that has any. `quotas`: planned
    by reading by quota (else balance plans them from the records it is given); `cache`: what
    reading by quota read of the work files already (emptied here once dedup is done)."""
    # One work file per (task, language): `part` indexes this list.
    parts = [(p, lang, path) for p in partitions for lang, path in p.records.items()]
    files = [path for _, _, path in parts]
    tasks = [f"{p.task}--{lang}" for p, lang, _ in parts]
    keys = read_corpus_keys(files, cache, take=True)
    n = keys.num_rows
    # Each row's source as a small integer (the index of its name, sorted), one Arrow chunk at a time.
    names = sorted({p.source for p, _, _ in parts})
    part_source = np.array([names.index(p.source) for p, _, _ in parts] or [0], dtype=np.int32)
    chunks = [part_source[c.to_numpy()] for c in keys.column("part").chunks]
    source = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int32)
    alive = np.ones(n, dtype=bool)
    stages: list[StageStats] = []
    per_source: dict[str, list[StageStats]] = {names[k]: [] for k in np.unique(source).tolist()}
    rejected_files: dict[str, list[str]] = {}

    def account(name: str, entering: np.ndarray, removed: np.ndarray, reason: str | None, unselected: bool = False) -> None:
        st = StageStats(name, in_=int(entering.sum()))
        gone = int((entering & removed).sum())
        st.kept = st.in_ - gone
        if gone and unselected:
            st.unselected = gone
        elif gone:
            st.rejected[reason] = gone
        stages.append(st)
        for src in per_source:
            mine = source == names.index(src)
            s = StageStats(name, in_=int((entering & mine).sum()))
            g = int((entering & removed & mine).sum())
            s.kept = s.in_ - g
            if g and unselected:
                s.unselected = g
            elif g:
                s.rejected[reason] = g
            per_source[src].append(s)

    for removal in dedup_removals(recipe, keys, files, alive, cache):
        removed = np.zeros(n, dtype=bool)
        removed[removal.rows] = True
        stage_name = removal.stage
        account(stage_name, alive.copy(), removed, removal.reason)
        jobs = reject_jobs(removal, keys, files, tasks, out, fp[stage_name])
        rejected_files[stage_name] = [r.file for r in engine.map(write_rejected, jobs, stage_name.replace("_", " "))]
        alive &= ~removed
    if cache is not None:
        cache.clear()

    index = np.flatnonzero(alive)
    survivors = gather_table(keys, index, ["id", "group", "lang", "task"])
    release_memory()
    plan = plan_selection(survivors, BalanceSettings.from_recipe(recipe.balance, recipe.seed), quotas)
    del survivors
    left_out = np.zeros(n, dtype=bool)
    left_out[index[~plan.selected]] = True
    account("balance", alive.copy(), left_out, None, unselected=True)
    repeats = np.maximum(plan.copies - 1, 0)
    stages[-1].repeated = int(repeats.sum())
    stages[-1].kept += int(repeats.sum())
    for src, per in per_source.items():
        extra = int(repeats[source[index] == names.index(src)].sum()) if len(index) else 0
        per[-1].repeated, per[-1].kept = extra, per[-1].kept + extra
    chosen = plan.selected
    selected = gather_table(keys, index[chosen]).append_column("copies", pa.array(plan.copies[chosen]))
    return CorpusResult(stages=stages, per_source=per_source, selected=selected, files=files,
                        file_sources=[p.source for p, _, _ in parts], rejected_files=rejected_files,
                        quotas=plan.quotas, available=plan.available, shortfall=plan.shortfall)
