"""Reading by quota on a Hub Parquet shard: one band of the shard, read two ways in this one run.

  - streamed: what reading by quota did before, and still does for layouts other than one Parquet
    file per shard: `datasets` streams every row of the shard and the task keeps the band's rows;
  - banded: `hub.iter_hub_rows` with the band: only the row groups holding band rows are read and
    only those rows become Python objects; the first band computes the row positions and keeps them
    in an index, the next bands read the index.

The shard is an OPUS-100-shaped Parquet file (`translation` {en, xx}, 100k-row groups) of real
NTREX sentence pairs, as large as asked. Printed: seconds per band each way and the ratio.

    python bench/bench_hub_band.py --data-dir ../shared/corpus --rows 1000000 --share 0.01
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from datakit.recipe import Source
from datakit.sources import hub
from datakit.sources.base import BAND_SCALE, Partition, Passed, ReadContext

ROOT = Path(__file__).resolve().parents[1]


def make_shard(data_dir: Path, repo: Path, rows: int) -> None:
    """One config (en-fr) of one Parquet shard: NTREX English and French lines, cycled to `rows`."""
    folder = data_dir / "ntrex128/NTREX-128"
    en = (folder / "newstest2019-ref.eng-US.txt").read_text(encoding="utf-8").splitlines()
    fr = (folder / "newstest2019-ref.fra.txt").read_text(encoding="utf-8").splitlines()
    pairs = itertools.islice(itertools.cycle(zip(en, fr, strict=True)), rows)
    table = pa.table({"translation": [{"en": f"{e} ({i})", "fr": f"{f} ({i})"} for i, (e, f) in enumerate(pairs)]})
    (repo / "en-fr").mkdir(parents=True, exist_ok=True)
    pq.write_table(table, repo / "en-fr" / "train-00000-of-00001.parquet", row_group_size=100_000)
    (repo / "README.md").write_text("---\nconfigs:\n- config_name: en-fr\n  data_files:\n  - split: train\n"
                                    "    path: en-fr/train-*\n---\n", encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "corpus"))
    ap.add_argument("--work", default="/tmp/datakit-bench-hub-band")
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--share", type=float, default=0.01, help="the band's share of the shard's rows")
    args = ap.parse_args()
    work = Path(args.work)
    mirror = work / "mirror"
    repo = mirror / "org" / "pairs"
    shard = repo / "en-fr" / "train-00000-of-00001.parquet"
    if not shard.exists() or pq.read_metadata(shard).num_rows != args.rows:
        make_shard(Path(args.data_dir), repo, args.rows)
    source = Source(name="pairs", format="bitext", hub="org/pairs", configs=["en-fr"], license="CC-BY-4.0")
    ctx = ReadContext(None, mirror, None, None, ("eng_Latn", "zho_Hans"), seed=7)
    part = Partition("pairs", "en-fr:0", {"config": "en-fr", "shard": 0, "shards": 1}, ("eng_Latn", "fra_Latn"))
    index = work / "positions.npz"
    index.unlink(missing_ok=True)
    width = int(args.share * BAND_SCALE)

    def streamed(lo: int, hi: int) -> int:
        kept = 0
        for loc, _ in hub.iter_hub_rows(source, "en-fr", mirror, 0, 1, None):
            kept += lo <= part.position(ctx.seed, loc) < hi
        return kept

    def banded(lo: int, hi: int) -> int:
        band = dataclasses.replace(ctx.band(dataclasses.replace(part, band=(lo, hi))), index=index)
        return sum(not isinstance(item, Passed) for item in hub.iter_hub_rows(source, "en-fr", mirror, 0, 1, None, band))

    print(f"shard: {args.rows:,} rows; band: {args.share:.1%} of them", flush=True)
    for n, (lo, hi) in enumerate([(0, width), (width, 2 * width), (2 * width, 3 * width)]):
        t = time.perf_counter()
        a = streamed(lo, hi)
        t_streamed = time.perf_counter() - t
        t = time.perf_counter()
        b = banded(lo, hi)
        t_banded = time.perf_counter() - t
        assert a == b, (a, b)
        what = "first band (computes the positions)" if n == 0 else f"band {n + 1} (positions from the index)"
        print(f"{what}: {b:,} rows; streamed {t_streamed:.1f} s, banded {t_banded:.2f} s: {t_streamed / t_banded:.0f}x", flush=True)


if __name__ == "__main__":
    main()
