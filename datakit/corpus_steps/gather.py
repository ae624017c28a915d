"""Rows of an Arrow column or table by position, without a copy of the whole column.

The key table is made of many chunks. Arrow's `take` on a chunked column concatenates every chunk
first: a transient copy of the whole column (36 MB of ids a million records) for a few thousand
rows. `gather` takes from each chunk the rows it holds.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa


def gather(column: pa.ChunkedArray | pa.Array, rows: np.ndarray) -> pa.Array:
    """column[rows], in the order of `rows`."""
    if isinstance(column, pa.Array):
        return column.take(pa.array(rows, pa.int64()))
    rows = np.asarray(rows, dtype=np.int64)
    ascending = bool(np.all(rows[1:] >= rows[:-1])) if len(rows) > 1 else True
    order = np.arange(len(rows)) if ascending else np.argsort(rows, kind="stable")
    wanted = rows[order]
    starts = np.cumsum([0] + [len(c) for c in column.chunks])
    chunk = np.searchsorted(starts, wanted, side="right") - 1
    bounds = np.flatnonzero(np.r_[True, chunk[1:] != chunk[:-1], True]) if len(wanted) else np.zeros(1, dtype=np.int64)
    pieces = [column.chunk(int(chunk[lo])).take(pa.array(wanted[lo:hi] - starts[chunk[lo]]))
              for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]
    out = pa.concat_arrays(pieces) if pieces else pa.array([], column.type)
    if ascending:
        return out
    back = np.empty(len(order), dtype=np.int64)
    back[order] = np.arange(len(order))
    return out.take(pa.array(back))


def gather_table(table: pa.Table, rows: np.ndarray, columns: list[str] | None = None) -> pa.Table:
    """The given rows of `table` (of the given columns), column by column with `gather`."""
    names = columns or table.column_names
    return pa.table({c: gather(table.column(c), rows) for c in names}, schema=pa.schema([table.schema.field(c) for c in names]))

