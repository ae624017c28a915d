"""Benchmark of the local build: records/s and peak memory of the driver and the Dask workers.

Runs `python -m datakit.build` over the local corpus at several sizes (--sample N, then the whole
corpus) and samples the process tree's resident memory while it runs. Memory bounded by a shard
means the workers' peak stays flat while the corpus grows; the ratio line says by how much.

    python bench/bench_build.py --data-dir ../shared/corpus [--workers 2] [--samples 100,500]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]


class TreeMemory:
    """Peak RSS of a process (the driver) and, separately, of each of its descendants (workers)."""

    def __init__(self, pid: int, every: float = 0.1):
        self.root = psutil.Process(pid)
        self.every = every
        self.driver_peak = 0
        self.worker_peak = 0
        self.total_peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                driver = self.root.memory_info().rss
                workers = [c.memory_info().rss for c in self.root.children(recursive=True) if c.is_running()]
            except psutil.Error:
                workers, driver = [], self.driver_peak
            self.driver_peak = max(self.driver_peak, driver)
            self.worker_peak = max([self.worker_peak, *workers])
            self.total_peak = max(self.total_peak, driver + sum(workers))
            self._stop.wait(self.every)

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def run(data_dir: str, workers: int, sample: int | None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        cmd = [sys.executable, "-m", "datakit.build", "--recipe", str(ROOT / "pipelines/local.yaml"), "--data-dir", data_dir,
               "--output", str(out), "--workers", str(workers)]
        if sample:
            cmd += ["--sample", str(sample)]
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        with TreeMemory(proc.pid) as mem:
            stdout, stderr = proc.communicate()
        seconds = time.perf_counter() - started
        if proc.returncode:
            raise SystemExit(f"build failed ({proc.returncode}):\n{stderr[-3000:]}")
        stats = json.loads((out / "stats.json").read_text())
        data_bytes = sum(f.stat().st_size for f in (out / "data").rglob("*.parquet"))
    constructed = stats["stages"][1]["kept"]
    rows = stats["stages"][-1]["kept"]
    return {"sample": sample or "all", "raw_rows": stats["stages"][0]["in"], "records": constructed, "rows_out": rows,
            "seconds": round(seconds, 1), "records_per_s": round(constructed / seconds), "data_mb": round(data_bytes / 2**20, 1),
            "driver_peak_mb": round(mem.driver_peak / 2**20), "worker_peak_mb": round(mem.worker_peak / 2**20),
            "total_peak_mb": round(mem.total_peak / 2**20)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "corpus"))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--samples", default="100,500", help="comma list of --sample sizes to run before the whole corpus")
    ap.add_argument("--skip-full", action="store_true")
    args = ap.parse_args()
    sizes = [int(s) for s in args.samples.split(",") if s] + ([] if args.skip_full else [None])
    results = []
    for size in sizes:
        r = run(args.data_dir, args.workers, size)
        results.append(r)
        print(json.dumps(r), flush=True)
    small, big = results[0], results[-1]
    print(f"records x{big['records'] / small['records']:.1f} -> worker peak memory x{big['worker_peak_mb'] / small['worker_peak_mb']:.2f}, "
          f"driver peak x{big['driver_peak_mb'] / small['driver_peak_mb']:.2f}; "
          f"throughput {big['records_per_s']:,} records/s at full size ({args.workers} workers)")


if __name__ == "__main__":
    main()
