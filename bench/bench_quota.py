"""Reading by quota: a target size costs what the target needs, not what the sources hold.

Two comparisons, each measured in this one run on the same machine and workers:
  1. the same `--target-size` from a generated corpus (bench/gen_scale.py) and from one whose
     parallel source holds 10x the rows: time and rows read (target: within 1.5x);
  2. the local corpus (pipelines/local.yaml) built whole and with `--target-size 20000`
     (target: the second at least 5x faster).

    python bench/bench_quota.py --data-dir ../shared/corpus --work /tmp/bench-quota [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "corpus"))
    ap.add_argument("--work", default="/tmp/datakit-bench-quota")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--records", type=int, default=200_000, help="records of the smaller generated corpus (the larger has 10x)")
    ap.add_argument("--target", type=int, default=20_000)
    ap.add_argument("--skip-local", action="store_true", help="only the generated corpora")
    args = ap.parse_args()
    sys.path.insert(0, str(BENCH))
    from bench_scale import run_datakit
    from gen_scale import RECIPE, generate

    work, target = Path(args.work), ("--target-size", str(args.target))
    rows = {}
    for scale in (1, 10):
        inputs = work / f"input-{scale}x"
        if not (inputs / "recipe.yaml").exists():
            generate(Path(args.data_dir), inputs, args.records * scale)
            (inputs / "recipe.yaml").write_text(RECIPE, encoding="utf-8")
        rows[f"generated {scale}x, target {args.target:,}"] = run_datakit(inputs, work / f"out-{scale}x", args.workers, extra=target)
        print(json.dumps({"run": f"generated {scale}x", **rows[f"generated {scale}x, target {args.target:,}"]}), flush=True)
    small, big = rows[f"generated 1x, target {args.target:,}"], rows[f"generated 10x, target {args.target:,}"]
    print(f"10x the rows, same target: {big['seconds'] / small['seconds']:.2f}x the time, "
          f"{big['rows_read'] / max(small['rows_read'], 1):.2f}x the rows read ({small['rows_read']:,} -> {big['rows_read']:,} "
          f"of {small['rows_in']:,} -> {big['rows_in']:,})", flush=True)
    if args.skip_local:
        return
    local = ROOT / "pipelines" / "local.yaml"
    whole = run_datakit(Path(args.data_dir), work / "local-whole", args.workers, recipe=local, extra=("--langs", "all"))
    print(json.dumps({"run": "local whole", **whole}), flush=True)
    quota = run_datakit(Path(args.data_dir), work / "local-target", args.workers, recipe=local,
                        extra=("--langs", "all", *target))
    print(json.dumps({"run": f"local target {args.target:,}", **quota}), flush=True)
    print(f"local corpus: whole {whole['seconds']:.0f} s, target {args.target:,} {quota['seconds']:.0f} s: "
          f"{whole['seconds'] / quota['seconds']:.1f}x faster, {quota['rows_read']:,} of {quota['rows_in']:,} rows read", flush=True)


if __name__ == "__main__":
    main()
