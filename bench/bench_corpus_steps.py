"""The whole-corpus steps alone, re-run over an existing build's work files: driver peak RSS and wall time.

Building a large corpus takes minutes; the driver's peak comes from the corpus steps (exact dedup,
near dedup, balance) over the work files the partition tasks left in `<build>/.datakit/prepare/`.
This runs only those steps, each run in a fresh process (its peak RSS is `ru_maxrss`, its baseline
the RSS just before the step, after loading the recipe and the partition results), for one or more
copies of the code (`--code`, a folder holding `datakit/`), alternating between them, best of
`--repeat`. Each run prints a digest of everything the step produced (removals in order, the
selected rows, the bytes of every rejected file, the quotas; or the after-dedup cell counts), and
the digests of all copies must agree: a change meant to save memory must not change the output.

    python bench/bench_corpus_steps.py --build /tmp/corpus_out_1m --recipe /tmp/corpus_in_1m/recipe.yaml \
        --data-dir /tmp/corpus_in_1m --code /tmp/snap_before/main --code /tmp/snap_after/main
    python bench/bench_corpus_steps.py --build /tmp/bench-quota/out-10x --recipe /tmp/bench-quota/input-10x/recipe.yaml \
        --data-dir /tmp/bench-quota/input-10x --target-size 20000 --step cells --calls 3 --code ...

`--step run`: `run_corpus_steps` (rejected files written by 2 worker processes, as the build's Dask
workers would: not the driver's memory); `--step cells`: `cells_after_dedup`, called `--calls` times
(reading by quota calls it once per check, over a growing set of files).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import psutil


class PoolEngine:
    """The engine's `map` on a pool of spawned processes: the driver only waits, as with Dask."""

    def __init__(self, workers: int):
        self.pool = ProcessPoolExecutor(workers, mp_context=get_context("spawn"))

    def map(self, fn, jobs, label: str) -> list[Any]:
        return list(self.pool.map(fn, jobs))


def partitions_of(build: Path, recipe_path: str, data_dir: str, target: int | None) -> tuple[Any, list[Any]]:
    """The recipe and the partition results of a finished build, in the order the build handed them
    to the corpus steps: planned order, and a partition's bands (reading by quota) by where they start."""
    from datakit.build import BuildOptions, plan_partitions, read_context, resolve_recipe
    from datakit.partition import PartitionResult

    overrides = {"balance.target_size": target} if target else {}
    opts = BuildOptions(recipe=recipe_path, data_dir=data_dir, overrides=overrides)
    recipe, path = resolve_recipe(opts)
    ctx = read_context(recipe, path, opts)
    [prepare] = list((build / ".datakit" / "prepare").iterdir())
    markers = {p.name.removesuffix(".done.json"): p for p in (prepare / "_done").glob("*.done.json")}
    results = []
    for part in plan_partitions(recipe, ctx):
        name = part.task_name
        mine = [t for t in markers if t == name or t.startswith(f"{name}--band")]
        mine.sort(key=lambda t: int(t.rsplit("--band", 1)[1].split("-")[0], 16) if "--band" in t else 0)
        results += [PartitionResult(**json.loads(markers[t].read_text(encoding="utf-8"))) for t in mine]
    return recipe, results


def digest_run(result: Any) -> str:
    """Everything run_corpus_steps hands on, as one hash: stats, selection, rejected files' bytes, plan."""
    import pyarrow as pa

    h = hashlib.sha256()
    h.update(json.dumps([s.to_json() for s in result.stages], sort_keys=True).encode())
    h.update(json.dumps({k: [s.to_json() for s in v] for k, v in result.per_source.items()}, sort_keys=True).encode())
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, result.selected.schema) as w:
        w.write_table(result.selected.combine_chunks())  # the content, not how it happens to be chunked
    h.update(sink.getvalue().to_pybytes())
    for stage, files in sorted(result.rejected_files.items()):
        for f in files:
            h.update(f"{stage}:{Path(f).name}".encode())
            h.update(Path(f).read_bytes())
    h.update(json.dumps([result.files, result.file_sources, result.quotas, result.available, result.shortfall], sort_keys=True).encode())
    return h.hexdigest()[:16]


def child(args: argparse.Namespace) -> None:
    recipe, partitions = partitions_of(Path(args.build), args.recipe, args.data_dir, args.target_size)
    partitions = partitions[: args.partitions]
    records = sum(sum(p.rows.values()) for p in partitions)
    files = sum(len(p.records) for p in partitions)
    baseline = psutil.Process().memory_info().rss
    with tempfile.TemporaryDirectory() as tmp:
        started, cpu = time.perf_counter(), time.process_time()
        if args.step == "cells":
            from datakit.corpus_steps import run

            cache = [run.WorkFileCache()] if hasattr(run, "WorkFileCache") else []  # kept between checks, as the build does (code before it: none)
            for _ in range(args.calls):
                counts = run.cells_after_dedup(recipe, partitions, *cache)
            seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            digest = hashlib.sha256(json.dumps(sorted((list(k), v) for k, v in counts.items())).encode()).hexdigest()[:16]
        else:
            from datakit.corpus_steps.run import run_corpus_steps

            engine = PoolEngine(2)
            fp = {"exact_dedup": "bench-exact-dedup", "near_dedup": "bench-near-dedup"}
            result = run_corpus_steps(recipe, partitions, fp, Path(tmp), engine)
            seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
            engine.pool.shutdown()
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # before the digest's own copies
            digest = digest_run(result)
    print(json.dumps({"records": records, "files": files, "seconds": round(seconds, 2), "cpu_s": round(cpu, 2), "baseline_mb": round(baseline / 2**20),
                      "peak_mb": round(peak / 2**20), "digest": digest}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", required=True, help="a finished build's output folder (its .datakit/ work files)")
    ap.add_argument("--recipe", required=True)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--target-size", type=int, help="as the build was given it (reading by quota)")
    ap.add_argument("--step", choices=["run", "cells"], default="run")
    ap.add_argument("--partitions", type=int, help="only the first N partition results: a smaller corpus from the same build, "
                    "to see how the peak grows with the corpus")
    ap.add_argument("--calls", type=int, default=1, help="--step cells: calls in one process")
    ap.add_argument("--code", action="append", help="a folder holding datakit/ (default: this checkout); give several to compare")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)
    codes = args.code or [str(Path(__file__).resolve().parents[1])]
    passed = [a for a in sys.argv[1:] if a not in ("--child",)]
    cmd_args, skip = [], False
    for a in passed:  # the child gets everything but --code/--repeat
        if skip:
            skip = False
            continue
        if a in ("--code", "--repeat"):
            skip = True
            continue
        cmd_args.append(a)
    runs: dict[str, list[dict]] = {c: [] for c in codes}
    for rep in range(args.repeat):
        for code in codes:
            env = {**os.environ, "PYTHONPATH": code}
            proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), *cmd_args, "--child"], cwd=code, env=env,
                                  capture_output=True, text=True)
            if proc.returncode:
                raise SystemExit(f"{code}: failed\n{proc.stderr[-3000:]}")
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            runs[code].append(row)
            print(json.dumps({"code": code, "rep": rep, **row}), flush=True)
    best = {c: {"seconds": min(r["seconds"] for r in rows), "cpu_s": min(r["cpu_s"] for r in rows), "peak_mb": min(r["peak_mb"] for r in rows),
                "baseline_mb": min(r["baseline_mb"] for r in rows), "digests": sorted({r["digest"] for r in rows})}
            for c, rows in runs.items()}
    for c, b in best.items():
        print(f"{c}: best of {args.repeat}: {b['seconds']:.2f} s ({b['cpu_s']:.2f} s CPU in the driver), peak RSS {b['peak_mb']:,} MB "
              f"(baseline {b['baseline_mb']:,} MB, step {b['peak_mb'] - b['baseline_mb']:,} MB), digest {','.join(b['digests'])}")
    digests = {d for b in best.values() for d in b["digests"]}
    print("outputs identical" if len(digests) == 1 else f"OUTPUTS DIFFER: {digests}")


if __name__ == "__main__":
    main()
