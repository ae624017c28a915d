"""The steps that need the whole corpus at once: exact dedup, near dedup, balance, and their driver.

They run on the driver over compact keys read from the work files (id, group, language,
task, dedup key, size: a few dozen bytes a record; near dedup reads its signature one LSH band at a
time), never over the text. Each stage narrows a mask of surviving rows; its rejections are then
written per work file by one task per file that has any, with what each rejected row matched.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from datakit.corpus_steps import near_dedup as nd
from datakit.corpus_steps.balance import BalanceSettings, Quotas, plan_selection
from datakit.corpus_steps.exact_dedup import duplicates_among
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
    meta: tuple[dict, ...]
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
    table = take_rows(job.source_file, job.rows)
    rows = table.select([c for c in rejected_schema().names if c in table.column_names]).to_pylist()
    for row, extra in zip(rows, job.meta, strict=True):
        meta = json.loads(row["meta"])
        meta.update(extra)
        row["meta"] = canonical_json(meta)
        row["stage"], row["reason"] = job.stage, job.reason
    path = stage_dir.file("rejected", job.stage, f"{job.task}.parquet")
    with atomic_path(path) as tmp:
        pq.write_table(pa.Table.from_pylist(rows, schema=rejected_schema()), tmp, compression="zstd")
    stage_dir.complete(job.task, {"file": str(path), "rows": len(rows)})
    return RejectedFile(file=str(path), rows=len(rows))


@dataclass
class Removal:
    """What one corpus step took out: rows (global indices) and, per row, what to add to its meta."""

    stage: str
    reason: str
    rows: np.ndarray
    meta: list[dict] = field(default_factory=list)


def exact_removal(keys: pa.Table, alive: np.ndarray) -> Removal:
    index = np.flatnonzero(alive)
    sub = keys.select(["id", "key"]).take(pa.array(index))  # the two columns it compares, not the whole key table
    positions, originals = duplicates_among(sub.column("id"), sub.column("key"))
    return Removal("exact_dedup", "exact_duplicate", index[positions], [{"duplicate_of": m} for m in originals])


NEAR_READ_BYTES = 256 << 20  # signature columns held at once while near dedup reads its bands


def near_removal(keys: pa.Table, alive: np.ndarray, files: list[str], params: nd.MinHashParams) -> Removal:
    """Near duplicates among the surviving rows (global indices in, global indices out)."""
    index = np.flatnonzero(alive)
    if len(index) == 0:
        return Removal("near_dedup", "near_duplicate", np.zeros(0, dtype=np.int64))
    parts = keys.column("part").to_numpy()
    rows = keys.column("row").to_numpy()
    cols = nd.columns(params)

    # Bands are read a few at a time, as many as fit NEAR_READ_BYTES: every work file is opened once
    # per group of bands, not once per band (thousands of small files), and memory stays bounded.
    per_group = max(1, NEAR_READ_BYTES // max(1, keys.num_rows * params.rows * 2))
    group: dict[str, Any] = {}

    def read_band(band: int):
        if not group or not group["first"] <= band < group["first"] + per_group:
            wanted = cols[band * params.rows : min(params.bands, band + per_group) * params.rows]
            t = pa.concat_tables([pq.ParquetFile(f).read(columns=["_nkey", *wanted]) for f in files])
            group.update(first=band, table=t, nkey=t.column("_nkey").to_numpy()[index])
        t = group["table"]
        band_cols = np.stack([t.column(c).to_numpy() for c in cols[band * params.rows : (band + 1) * params.rows]], axis=1)[index]
        return band_cols, group["nkey"]

    def read_signatures(involved: np.ndarray) -> np.ndarray:
        sigs = np.zeros((len(involved), params.num_perm), dtype=np.uint16)
        glob_rows = index[involved]
        for p in np.unique(parts[glob_rows]):  # one read per work file, of its candidate rows only
            mine = np.flatnonzero(parts[glob_rows] == p)
            t = take_rows(files[int(p)], tuple(int(r) for r in rows[glob_rows[mine]]), cols)
            sigs[mine] = np.stack([t.column(c).to_numpy() for c in cols], axis=1)
        return sigs

    # The surviving rows' ids stay in Arrow: millions of Python strings would be the driver's largest object.
    local_ids = keys.column("id").take(pa.array(index)).combine_chunks()
    found = nd.find_near(read_band, read_signatures, len(index), local_ids, params)
    if not found:
        return Removal("near_dedup", "near_duplicate", np.zeros(0, dtype=np.int64))
    out_rows = np.array(sorted(index[r] for r in found), dtype=np.int64)
    by_global = {int(index[r]): (rep, s) for r, (rep, s) in found.items()}
    meta = [{"near_duplicate_of": local_ids[by_global[int(g)][0]].as_py(), "similarity": round(by_global[int(g)][1], 3)}
            for g in out_rows]
    return Removal("near_dedup", "near_duplicate", out_rows, meta)


def reject_jobs(removal: Removal, keys: pa.Table, files: list[str], tasks: list[str], out: Path, fingerprint: str) -> list[RejectJob]:
    parts = keys.column("part").to_numpy()
    rows = keys.column("row").to_numpy()
    by_part: dict[int, list[tuple[int, dict]]] = {}
    for g, extra in zip(removal.rows, removal.meta, strict=True):
        by_part.setdefault(int(parts[g]), []).append((int(rows[g]), extra))
    jobs = []
    for p, items in sorted(by_part.items()):
        items.sort(key=lambda x: x[0])
        jobs.append(RejectJob(stage=removal.stage, reason=removal.reason, source_file=files[p], rows=tuple(r for r, _ in items),
                              meta=tuple(m for _, m in items), out=str(out), fingerprint=fingerprint, task=tasks[p]))
    return jobs


def dedup_removals(recipe: Recipe, keys: pa.Table, files: list[str], alive: np.ndarray) -> Iterator[Removal]:
    """The recipe's dedup steps in order, each over the rows the ones before left `alive` (the
    caller takes each removal's rows out of `alive` before asking for the next)."""
    if recipe.dedup.exact:
        yield exact_removal(keys, alive)
        pa.default_memory_pool().release_unused()  # Arrow keeps freed buffers otherwise: the driver's peak
    params = nd.params_for(recipe.dedup.near)
    if params is not None:
        yield near_removal(keys, alive, files, params)
        pa.default_memory_pool().release_unused()


def cells_after_dedup(recipe: Recipe, partitions: list[PartitionResult]) -> Counter:
    """Records per (group, language, task) that dedup would leave, written nowhere: what reading by
    quota checks its quotas against before it stops reading."""
    files = [path for p in partitions for path in p.records.values()]
    keys = read_keys(files)
    alive = np.ones(keys.num_rows, dtype=bool)
    for removal in dedup_removals(recipe, keys, files, alive):
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
                     quotas: Quotas | None = None) -> CorpusResult:
    """Exact dedup, near dedup and balance over every kept record, in that order; the rejected rows
    of each dedup step are written by one engine task per work file that has any. `quotas`: planned
    by reading by quota (else balance plans them from the records it is given)."""
    # One work file per (task, language): `part` indexes this list.
    parts = [(p, lang, path) for p in partitions for lang, path in p.records.items()]
    files = [path for _, _, path in parts]
    tasks = [f"{p.task}--{lang}" for p, lang, _ in parts]
    keys = read_keys(files)
    n = keys.num_rows
    source_of_part = np.array([p.source for p, _, _ in parts] or [""], dtype=object)
    source = source_of_part[keys.column("part").to_numpy()] if n else np.array([], dtype=object)
    alive = np.ones(n, dtype=bool)
    stages: list[StageStats] = []
    per_source: dict[str, list[StageStats]] = {name: [] for name in sorted(set(source))}
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
            mine = source == src
            s = StageStats(name, in_=int((entering & mine).sum()))
            g = int((entering & removed & mine).sum())
            s.kept = s.in_ - g
            if g and unselected:
                s.unselected = g
            elif g:
                s.rejected[reason] = g
            per_source[src].append(s)

    for removal in dedup_removals(recipe, keys, files, alive):
        removed = np.zeros(n, dtype=bool)
        removed[removal.rows] = True
        stage_name = removal.stage
        account(stage_name, alive.copy(), removed, removal.reason)
        jobs = reject_jobs(removal, keys, files, tasks, out, fp[stage_name])
        rejected_files[stage_name] = [r.file for r in engine.map(write_rejected, jobs, stage_name.replace("_", " "))]
        alive &= ~removed

    index = np.flatnonzero(alive)
    survivors = keys.take(pa.array(index))
    plan = plan_selection(survivors.select(["id", "group", "lang", "task"]), BalanceSettings.from_recipe(recipe.balance, recipe.seed), quotas)
    left_out = np.zeros(n, dtype=bool)
    left_out[index[~plan.selected]] = True
    account("balance", alive.copy(), left_out, None, unselected=True)
    repeats = np.maximum(plan.copies - 1, 0)
    stages[-1].repeated = int(repeats.sum())
    stages[-1].kept += int(repeats.sum())
    for src, per in per_source.items():
        extra = int(repeats[source[index] == src].sum()) if len(index) else 0
        per[-1].repeated, per[-1].kept = extra, per[-1].kept + extra
    selected = survivors.append_column("copies", pa.array(plan.copies)).filter(pa.array(plan.selected))
    return CorpusResult(stages=stages, per_source=per_source, selected=selected, files=files,
                        file_sources=list(source_of_part[: len(files)]), rejected_files=rejected_files,
                        quotas=plan.quotas, available=plan.available, shortfall=plan.shortfall)
