"""Scale benchmark: the full pipeline at several sizes, against a plain datatrove pipeline.

For each size (output records; default 320k, 1M, 3.2M): generate the input (bench/gen_scale.py),
run `python -m datakit.build` on it (LID, quality, exact + near dedup, Parquet), and run the
datatrove baseline (bench/datatrove_baseline.py: LID + exact dedup + MinHash + Parquet write with
datatrove's own blocks) on the same records as documents, with the same number of workers. Prints
per size: wall time, records/s, peak RSS of the driver and of the workers (and in total), bytes
written, and the ratio against datatrove; then time per record at the largest size against the
smallest.

    python bench/bench_scale.py --data-dir ../shared/corpus --sizes 320000,1000000,3200000 --work /tmp/scale
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench_build import TreeMemory

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent


def docs_for_baseline(inputs: Path, docs: Path) -> int:
    """The generated rows as datatrove documents: one per record datakit makes (both directions of a pair)."""
    docs.mkdir(parents=True, exist_ok=True)
    n = 0
    with open(docs / "docs.jsonl", "w", encoding="utf-8") as out:
        for path in sorted((inputs / "bitext").glob("*.jsonl")):
            for line in path.read_text(encoding="utf-8").splitlines():
                (x, a), (y, b) = json.loads(line)["translation"].items()
                for src, tgt, lang in ((a, b, y), (b, a, x)):
                    out.write(json.dumps({"id": str(n), "text": f"{src}\n{tgt}", "metadata": {"lang": lang}}, ensure_ascii=False) + "\n")
                    n += 1
        for path in sorted((inputs / "general").glob("*.jsonl")):
            for line in path.read_text(encoding="utf-8").splitlines():
                row = json.loads(line)
                out.write(json.dumps({"id": str(n), "text": f"{row['instruction']}\n{row['input']}\n{row['output']}"}, ensure_ascii=False) + "\n")
                n += 1
    return n


def run_datakit(inputs: Path, out: Path, workers: int, recipe: Path | None = None, extra: tuple[str, ...] = ()) -> dict:
    """One `python -m datakit.build` in a fresh output folder: its time, records, peak memory and what it read."""
    if out.exists():
        shutil.rmtree(out)
    cmd = [sys.executable, "-m", "datakit.build", "--recipe", str(recipe or inputs / "recipe.yaml"), "--data-dir", str(inputs),
           "--output", str(out), "--workers", str(workers), *extra]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with TreeMemory(proc.pid, every=0.25) as mem:
        _, err = proc.communicate()
    seconds = time.perf_counter() - started
    if proc.returncode:
        raise SystemExit(f"datakit build failed:\n{err[-3000:]}")
    stats = json.loads((out / "stats.json").read_text())
    made = next(s for s in stats["stages"] if s["name"] == "construct")["kept"]
    written = sum(f.stat().st_size for f in (out / "data").rglob("*.parquet"))
    read = stats["stages"][0]
    return {"records": made, "rows_out": stats["stages"][-1]["kept"], "rows_in": read["in"], "rows_read": read["in"] - read["unselected"],
            "seconds": round(seconds, 1),
            "records_per_s": round(made / seconds), "driver_peak_mb": round(mem.driver_peak / 2**20),
            "worker_peak_mb": round(mem.worker_peak / 2**20), "total_peak_mb": round(mem.total_peak / 2**20),
            "data_mb": round(written / 2**20, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "corpus"))
    ap.add_argument("--sizes", default="320000,1000000,3200000")
    ap.add_argument("--work", default="/tmp/datakit-scale")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--skip-baseline", action="store_true")
    args = ap.parse_args()
    sys.path.insert(0, str(BENCH))
    from gen_scale import RECIPE, generate

    results = []
    for size in (int(s) for s in args.sizes.split(",")):
        inputs = Path(args.work) / f"input-{size}"
        if not (inputs / "recipe.yaml").exists():
            generate(Path(args.data_dir), inputs, size)
            (inputs / "recipe.yaml").write_text(RECIPE, encoding="utf-8")
        row = {"size": size, **run_datakit(inputs, Path(args.work) / f"out-{size}", args.workers)}
        if not args.skip_baseline:
            from datatrove_baseline import run_baseline

            docs = Path(args.work) / f"docs-{size}"
            if not (docs / "docs.jsonl").exists():
                docs_for_baseline(inputs, docs)
            base = run_baseline(str(docs), str(Path(args.work) / f"baseline-{size}"), workers=args.workers)
            row["datatrove_docs_per_s"] = round(base["docs_in"] / base["seconds"])
            row["datatrove_seconds"] = round(base["seconds"], 1)
            row["ratio_vs_datatrove"] = round(row["records_per_s"] / row["datatrove_docs_per_s"], 2)
        results.append(row)
        print(json.dumps(row), flush=True)
    if len(results) > 1:
        small, big = results[0], results[-1]
        per_small, per_big = small["seconds"] / small["records"], big["seconds"] / big["records"]
        print(f"time per record at {big['size']:,} = {per_big / per_small:.2f}x that at {small['size']:,}; "
              f"peak RSS at {big['size']:,}: {big['total_peak_mb']:,} MB in total (driver {big['driver_peak_mb']:,} MB)")


if __name__ == "__main__":
    main()
