"""Columns of work files read once while reading by quota asks, round after round, what dedup would leave.

Each check runs exact and near dedup over every work file read so far, and the corpus steps then
run them once more over all of them: without a cache the files of the first round were read once
per round (bench/bench_quota.py's 10x corpus left 3,011 small band files, read four times over).
The files never change once their task has finished, so what was read of them is kept, up to a
byte budget: files beyond it are read from disk each time, as before.
"""

from __future__ import annotations

from collections.abc import Callable

import pyarrow as pa

MAX_BYTES = 256 << 20  # about 110 bytes a record of keys and 264 of near-dedup columns: ~700k records


class WorkFileCache:
    """(work file, what was read of it) -> the table read, within `max_bytes` in all."""

    def __init__(self, max_bytes: int = MAX_BYTES):
        self.max_bytes = max_bytes
        self.tables: dict[tuple[str, str], pa.Table] = {}
        self.bytes = 0

    def read(self, path: str, kind: str, load: Callable[[], pa.Table], take: bool = False) -> pa.Table:
        """What `load` reads of the file, read once; `take`: handed over and no longer kept (the
        caller holds it from then on)."""
        key = (path, kind)
        table = self.tables.pop(key, None) if take else self.tables.get(key)
        if table is not None and take:
            self.bytes -= table.nbytes
        if table is None:
            table = load()
            if not take and self.bytes + table.nbytes <= self.max_bytes:
                self.tables[key] = table
                self.bytes += table.nbytes
        return table

    def kept(self, path: str, kind: str) -> pa.Table | None:
        """The table kept for the file, if any (never a read)."""
        return self.tables.get((path, kind))

    def clear(self) -> None:
        self.tables.clear()
        self.bytes = 0
