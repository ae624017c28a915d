"""Construction throughput next to pyarrow writing the same bytes, and its memory as records grow.

Reads NTREX-128 through the bitext adapter (every language, both hubs), builds the translation and
interactive records (`datakit.construct.build`: templates, CLDR names, ids), and writes them to
Parquet in batches, the way the prepare phase does (batches of BATCH_ROWS raw rows, each read,
built, turned into columns and written with the cyclic collector paused; `records.to_table`, a
batch's columns at once). Then writes the very same rows again with pyarrow alone, from the Python
rows and from Arrow tables. Both passes run three times, alternating, in one process; each counts
process CPU seconds and the best of three is kept (the machine is shared: wall time would measure
the neighbours). Prints records/s of each and the ratios (target: construct + write within 3x of
the write alone), and the peak traced memory of the construct + write pass at two sizes (target:
flat in the number of records).

The timed construct pass runs as a build's task does: what the process starts with (modules, the
recipe, and the rows the write side takes, made once in an untimed pass) is frozen out of the
cyclic collector's way (`gc.freeze`, as `partition.process_partition` does), and each batch is
dropped once written. Keeping every record of the run alive while timing it made the collector
walk a growing heap: about 30% of the measured time, which no build spends. What a worker keeps
of the files it read (line counts, the hub files' line ranges: `sources.parallel.forget_files`)
is dropped before each pass, so every pass counts and reads the files as a fresh worker does.

    python bench/bench_construct.py --data-dir ../shared/corpus [--sizes 200,1000]
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import time
import tracemalloc
from itertools import islice
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from datakit.collector import collector_paused
from datakit.construct import Rejected, build
from datakit.partition import BATCH_ROWS
from datakit.recipe import load_recipe
from datakit.records import to_row, to_table
from datakit.schema import record_schema
from datakit.sources import adapter_for
from datakit.sources.base import RawRow, ReadContext
from datakit.sources.parallel import forget_files

ROOT = Path(__file__).resolve().parents[1]


def construct_and_write(data_dir: Path, sample: int, path: Path, keep: list | None) -> tuple[int, float]:
    """Records made and CPU seconds to read, construct and write them; `keep` collects the batches.
    As a build's task (`partition.process_partition`): raw rows read in batches of BATCH_ROWS, and
    each batch's whole life (its rows read, its records built, turned into columns and written,
    then freed) runs with the cyclic collector paused."""
    forget_files()  # each pass counts and reads the files afresh, as a build's worker does once
    recipe = load_recipe(ROOT / "pipelines" / "local.yaml")
    source = next(s for s in recipe.sources if s.name == "ntrex128")
    ctx = ReadContext(data_dir, None, sample, None, tuple(recipe.pivots))
    adapter, schema = adapter_for(source), record_schema()
    items = (item for part in adapter.partitions(source, ctx) for item in adapter.read(source, part, ctx))
    raw_rows = (item for item in items if isinstance(item, RawRow))
    n, started = 0, time.process_time()
    with pq.ParquetWriter(path, schema, compression="zstd") as writer:
        while True:
            with collector_paused():
                rows = list(islice(raw_rows, BATCH_ROWS))
                if not rows:
                    break
                batch = [r for row in rows for r in build(row, source, recipe) if not isinstance(r, Rejected)]
                writer.write_table(to_table(batch, schema))
                n += len(batch)
                if keep is not None:
                    keep.append(batch)
                del rows, batch
    return n, time.process_time() - started


def write_only(batches: list[list[dict]], path: Path) -> tuple[float, float]:
    """CPU seconds to write the same rows with pyarrow: from the Python rows (Table.from_pylist,
    then write), and from the Arrow tables alone."""
    schema = record_schema()
    started = time.process_time()
    tables = [pa.Table.from_pylist(b, schema=schema) for b in batches]
    converted = time.process_time()
    with pq.ParquetWriter(path, schema, compression="zstd") as writer:
        for t in tables:
            writer.write_table(t)
    done = time.process_time()
    return done - started, done - converted


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "corpus"))
    ap.add_argument("--sizes", default="200,1000", help="NTREX lines per language (--sample), small then large")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        peaks = []
        for size in sizes:
            tracemalloc.start()
            n, _ = construct_and_write(Path(args.data_dir), size, Path(tmp) / "c.parquet", None)
            peaks.append((size, n, tracemalloc.get_traced_memory()[1]))
            tracemalloc.stop()
        batches: list[list[dict]] = []  # the rows the write side takes: an untimed pass
        construct_and_write(Path(args.data_dir), sizes[0], Path(tmp) / "a.parquet", batches)
        rows = [[to_row(r) for r in batch] for batch in batches]
        del batches
        gc.collect()
        gc.freeze()  # as a build's task does once set up (partition.process_partition)
        built = from_rows = from_tables = float("inf")
        for _ in range(3):  # alternating, best of three
            n, seconds = construct_and_write(Path(args.data_dir), sizes[0], Path(tmp) / "a.parquet", None)
            built = min(built, seconds)
            rows_s, tables_s = write_only(rows, Path(tmp) / "b.parquet")
            from_rows, from_tables = min(from_rows, rows_s), min(from_tables, tables_s)
        same = (Path(tmp) / "a.parquet").stat().st_size, (Path(tmp) / "b.parquet").stat().st_size
    print(f"{n:,} records: read + construct + write {n / built:,.0f} records/s; pyarrow writing the same rows "
          f"{n / from_rows:,.0f} records/s from Python rows ({built / from_rows:.1f}x), {n / from_tables:,.0f} records/s "
          f"from Arrow tables ({built / from_tables:.1f}x) (target <= 3x); files {same[0]:,} and {same[1]:,} bytes")
    for size, count, peak in peaks:
        print(f"  sample {size:>5} lines/language: {count:>9,} records, peak traced memory {peak / 2**20:,.1f} MB")
    print(f"  memory ratio {peaks[-1][2] / peaks[0][2]:.2f}x for {peaks[-1][1] / peaks[0][1]:.1f}x the records")


if __name__ == "__main__":
    main()
