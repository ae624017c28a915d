"""Reading by quota on a Hub shard: one band of the shard, read two ways in this one run.

  - streamed: what reading by quota did before, and still does for layouts other than one Parquet
    file or one JSON array per shard: every row of the shard is read and the task keeps the band's;
  - banded: `hub.iter_hub_rows` with the band. A Parquet shard: only the row groups holding band
    rows are read and only those rows become Python objects; the first band computes the row
    positions and keeps them in an index, the next bands read the index. A JSON array (`--layout
    json-array`, OpenHermes-2.5's layout): the first band parses the file whole, as before, and
    keeps its rows in a spool (`sources/spool.py`); the next bands read only their rows from it.

The shard holds real NTREX sentence pairs, as many rows as asked: an OPUS-100-shaped Parquet file
(`translation` {en, xx}, 100k-row groups), or an OpenHermes-shaped JSON array of two-turn
conversations. Printed: seconds per band each way and the ratio.

    python bench/bench_hub_band.py --data-dir ../shared/corpus --rows 1000000 --share 0.01 [--layout json-array]
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from datakit.recipe import Source
from datakit.sources import hub
from datakit.sources.base import BAND_SCALE, Partition, Passed, ReadContext

ROOT = Path(__file__).resolve().parents[1]


def _pairs(data_dir: Path, rows: int):
    folder = data_dir / "ntrex128/NTREX-128"
    en = (folder / "newstest2019-ref.eng-US.txt").read_text(encoding="utf-8").splitlines()
    fr = (folder / "newstest2019-ref.fra.txt").read_text(encoding="utf-8").splitlines()
    return ((f"{e} ({i})", f"{f} ({i})") for i, (e, f) in enumerate(itertools.islice(itertools.cycle(zip(en, fr, strict=True)), rows)))


def make_shard(data_dir: Path, repo: Path, rows: int) -> Path:
    """One config (en-fr) of one Parquet shard: NTREX English and French lines, cycled to `rows`."""
    table = pa.table({"translation": [{"en": e, "fr": f} for e, f in _pairs(data_dir, rows)]})
    (repo / "en-fr").mkdir(parents=True, exist_ok=True)
    pq.write_table(table, repo / "en-fr" / "train-00000-of-00001.parquet", row_group_size=100_000)
    (repo / "README.md").write_text("---\nconfigs:\n- config_name: en-fr\n  data_files:\n  - split: train\n"
                                    "    path: en-fr/train-*\n---\n", encoding="utf-8")
    return repo / "en-fr" / "train-00000-of-00001.parquet"


def make_array(data_dir: Path, repo: Path, rows: int) -> Path:
    """One JSON array of conversations (OpenHermes-2.5's layout: `conversations` of {from, value}),
    written element by element."""
    repo.mkdir(parents=True, exist_ok=True)
    path = repo / "conversations.json"
    with open(path, "w", encoding="utf-8") as f:
        f.write("[")
        for i, (e, fr) in enumerate(_pairs(data_dir, rows)):
            turns = [{"from": "human", "value": f"Translate into French: {e}"}, {"from": "gpt", "value": fr, "weight": 1.0}]
            f.write(("," if i else "") + json.dumps({"conversations": turns, "source": "ntrex"}, ensure_ascii=False))
        f.write("]")
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "corpus"))
    ap.add_argument("--work", default="/tmp/datakit-bench-hub-band")
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--share", type=float, default=0.01, help="the band's share of the shard's rows")
    ap.add_argument("--layout", choices=["parquet", "json-array"], default="parquet")
    args = ap.parse_args()
    work = Path(args.work) / args.layout
    mirror = work / "mirror"
    repo = mirror / "org" / "pairs"
    stamp = work / "rows.txt"  # the rows the shard was made with
    if not stamp.exists() or stamp.read_text() != str(args.rows):
        (make_array if args.layout == "json-array" else make_shard)(Path(args.data_dir), repo, args.rows)
        stamp.write_text(str(args.rows))
    if args.layout == "json-array":
        source = Source(name="pairs", format="messages", lang="eng_Latn", hub="org/pairs", license="MIT",
                        columns={"messages": "conversations", "role": "from", "content": "value"})
        config, langs = None, ("eng_Latn",)
    else:
        source = Source(name="pairs", format="bitext", hub="org/pairs", configs=["en-fr"], license="CC-BY-4.0")
        config, langs = "en-fr", ("eng_Latn", "fra_Latn")
    ctx = ReadContext(None, mirror, None, None, ("eng_Latn", "zho_Hans"), seed=7)
    part = Partition("pairs", f"{config or 'default'}:0", {"config": config, "shard": 0, "shards": 1}, langs)
    index = work / "positions.npz"
    index.unlink(missing_ok=True)
    index.with_suffix(".spool.parquet").unlink(missing_ok=True)
    width = int(args.share * BAND_SCALE)

    def streamed(lo: int, hi: int) -> int:
        kept = 0
        for item in hub.iter_hub_rows(source, config, mirror, 0, 1, None):
            kept += lo <= part.position(ctx.seed, item[0]) < hi
        return kept

    def banded(lo: int, hi: int) -> int:
        band = dataclasses.replace(ctx.band(dataclasses.replace(part, band=(lo, hi))), index=index)
        # The first band of a JSON array hands on every row (the task keeps its band's): count those.
        return sum(not isinstance(item, Passed) and lo <= part.position(ctx.seed, item[0]) < hi
                   for item in hub.iter_hub_rows(source, config, mirror, 0, 1, None, band))

    size = sum(f.stat().st_size for f in repo.rglob("*") if f.suffix in (".json", ".parquet"))
    print(f"{args.layout} shard: {args.rows:,} rows, {size / 2**20:,.0f} MB; band: {args.share:.1%} of them", flush=True)
    for n, (lo, hi) in enumerate([(0, width), (width, 2 * width), (2 * width, 3 * width)]):
        t = time.perf_counter()
        a = streamed(lo, hi)
        t_streamed = time.perf_counter() - t
        t = time.perf_counter()
        b = banded(lo, hi)
        t_banded = time.perf_counter() - t
        assert a == b, (a, b)
        what = ("first band (computes the positions" + (", keeps the rows)" if args.layout == "json-array" else ")")
                if n == 0 else f"band {n + 1} (" + ("rows from the spool)" if args.layout == "json-array" else "positions from the index)"))
        print(f"{what}: {b:,} rows; streamed {t_streamed:.1f} s, banded {t_banded:.2f} s: {t_streamed / t_banded:.1f}x", flush=True)


if __name__ == "__main__":
    main()
