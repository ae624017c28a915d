"""Rows of a file that cannot be read from its middle, kept for reading by quota's later bands.

A JSON array (OpenHermes-2.5's 1.9 GB file, a local `.json` array) is parsed from its first byte
on: ijson gives no byte offsets to seek to, so every band task of reading by quota parsed the whole
file again to keep a few of its rows. The first band task that reads such a file reads it as
before and, row by row, keeps each row in a spool beside the band's index (a Parquet file: its
location, its value or what made it unreadable, and its band position). Later bands
read the positions, then only the row groups that hold their rows, and decode only those rows.

A spool is written whole or not at all, and is used only for the files as they were when it was
written, by the Python that wrote it (the files' stamps and the marshal format are in its
metadata; a Hub file at a commit is stamped by its URL, so a task on a machine that never fetched
it uses the spool without fetching it). Rows are kept with `marshal`, which gives every value back
exactly as read (key order, floats to the bit, NaN, integers of any size, a lone surrogate) and,
unlike pickle, runs no code as it loads: a band's records are byte-identical to those of a whole
read. (JSON through the standard library took longer than parsing the file; orjson writes NaN as
null.)
"""

from __future__ import annotations

import json
import marshal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from datakit.sources.base import Passed, RawError, RowBand
from datakit.store import atomic_path

Row = tuple[dict, Any] | RawError
SPOOL_ROWS = 2_048  # rows per row group: what a band reads to take one row of it
_STAMP = b"datakit.spool.files"
_SCHEMA = pa.schema([
    ("position", pa.uint32()),
    ("loc", pa.binary()),
    ("value", pa.binary()),  # null for an unreadable row
    ("reason", pa.string()),  # an unreadable row's RawError fields
    ("raw", pa.binary()),
    ("lang", pa.string()),
    ("detail", pa.string()),
])


def read_by_band(read_all: Callable[[], Iterator[Row]], band: RowBand, stamps: list[Any],
                 numbered: tuple[dict[str, Any], str]) -> Iterator[Row]:
    """The rows `read_all` gives, for a band with an index: from the spool where one was kept for
    the same files (the band's rows, then one `Passed` for the others), else every row as `read_all`
    gives it, kept in a spool on the way (the task leaves out the rows outside its band, as it does
    for any reader that cannot pass over rows). `stamps`: what tells the files' contents apart
    without reading them (`file_stamp` of a file on disk, the URL of a Hub file at a commit), so a
    kept spool is used without the files at hand. `numbered`: (base, key) such that a readable
    row's location is {**base, key: n}, so that the positions of a batch's rows are computed at once."""
    assert band.index is not None
    spool = band.index.with_suffix(".spool.parquet")
    stamp = json.dumps([marshal.version, sys.version_info[:2], stamps]).encode()
    kept = _open(spool, stamp)
    if kept is None:
        yield from _keep(read_all(), band, numbered, spool, stamp)
    else:
        yield from _band_rows(kept, band)


def _open(spool: Path, stamp: bytes) -> pq.ParquetFile | None:
    try:
        kept = pq.ParquetFile(spool)
    except (FileNotFoundError, OSError, pa.ArrowInvalid):
        return None
    return kept if (kept.schema_arrow.metadata or {}).get(_STAMP) == stamp else None


def _band_rows(kept: pq.ParquetFile, band: RowBand) -> Iterator[Row | Passed]:
    for item in band.parquet_rows(kept, kept.read(columns=["position"]).column(0).to_numpy()):
        yield item if isinstance(item, Passed) else _row(item[1])


def _keep(rows: Iterator[Row], band: RowBand, numbered: tuple[dict[str, Any], str], spool: Path,
          stamp: bytes) -> Iterator[Row]:
    """Every row, as it comes; each is written to the spool before it is handed on (the task may
    change the row's dicts). The spool takes its name only once the last row is written
    (`store.atomic_path`): a task that stops early, or fails, leaves none."""
    base, key = numbered
    batch: list[dict[str, Any]] = []
    numbers: list[int] = []  # the readable rows' numbers, for their positions

    def flush() -> None:
        readable = iter(band.positions(base, key, numbers).tolist())
        for kept in batch:
            if kept["position"] is None:
                kept["position"] = next(readable)
        writer.write_table(pa.Table.from_pylist(batch, schema=_SCHEMA), row_group_size=SPOOL_ROWS)
        batch.clear()
        numbers.clear()

    with atomic_path(spool) as tmp, pq.ParquetWriter(tmp, _SCHEMA.with_metadata({_STAMP: stamp}), compression="zstd") as writer:
        for row in rows:
            if isinstance(row, RawError):
                batch.append({"position": band.position(row.loc), "loc": _dump(row.loc), "value": None,
                              "reason": row.reason, "raw": _dump(row.raw), "lang": row.lang, "detail": row.detail})
            else:
                numbers.append(row[0][key])
                batch.append({"position": None, "loc": _dump(row[0]), "value": _dump(row[1])})
            if len(batch) >= SPOOL_ROWS:
                flush()
            yield row
        if batch:
            flush()


def _row(kept: dict[str, Any]) -> Row:
    loc = _load(kept["loc"])
    if kept["value"] is None:
        return RawError(loc, kept["reason"], _load(kept["raw"]), kept["lang"], kept["detail"])
    return (loc, _load(kept["value"]))


_dump, _load = marshal.dumps, marshal.loads
