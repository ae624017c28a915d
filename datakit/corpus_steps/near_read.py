"""What near dedup reads of the work files: each surviving row's LSH bucket per band, and the full
signatures of the rows that became candidates.

The driver never holds signature columns of the whole corpus: each work file is read on its own
(its bucket key and the columns of a few bands), its surviving rows' buckets are hashed straight
into one array per band, and the file's columns are dropped before the next file. How many bands
are hashed per pass over the files is set by HASH_BYTES (8 bytes a surviving row a band): a small
corpus is read once, a large one a few times, and the memory it takes stays the same.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from datakit.corpus_steps import near_dedup as nd
from datakit.corpus_steps.file_cache import WorkFileCache
from datakit.corpus_steps.memory import release_memory
from datakit.store import open_piece, read_piece, take_rows

HASH_BYTES = 16 << 20  # band buckets held at once
SIGNATURE_READ_BYTES = 8 << 20  # signature row groups read at once when verifying candidates


@dataclass
class SurvivingRows:
    """Rows of a list of work files (concatenated in order, every file's rows in order) that are
    still in the corpus: `alive` over all rows, `starts[p]` the first row of file p."""

    files: list[str]
    starts: np.ndarray  # len(files) + 1
    alive: np.ndarray

    @classmethod
    def of(cls, files: list[str], rows_per_file: np.ndarray, alive: np.ndarray) -> SurvivingRows:
        return cls(files, np.r_[0, np.cumsum(rows_per_file)].astype(np.int64), alive)

    @functools.cached_property
    def index(self) -> np.ndarray:
        """The surviving rows, ascending: survivor k is row index[k]."""
        return np.flatnonzero(self.alive)


class BandReader:
    """`bucket_hashes(b)` for `near_dedup.find_near`: reads the bands of one pass over the files
    when asked for the first of them, and hands each band's array over (holding it no longer)."""

    def __init__(self, rows: SurvivingRows, params: nd.MinHashParams, cache: WorkFileCache | None = None):
        self.rows, self.params, self.cache = rows, params, cache
        self.n = int(rows.alive.sum())
        self.per_pass = max(1, HASH_BYTES // max(1, 8 * self.n))
        self.ready: dict[int, np.ndarray] = {}

    def __call__(self, band: int) -> np.ndarray:
        if band not in self.ready:
            release_memory()  # the last pass's arrays, before this one's reads
            self.ready = self._read(range(band, min(self.params.bands, band + self.per_pass)))
        return self.ready.pop(band)

    def _read(self, bands: range) -> dict[int, np.ndarray]:
        width = self.params.rows
        out = {b: np.empty(self.n, dtype=np.uint64) for b in bands}
        at = 0
        for p, path in enumerate(self.rows.files):
            mine = self.rows.alive[self.rows.starts[p] : self.rows.starts[p + 1]]
            k = int(mine.sum())
            if not k:
                continue  # every row of it removed already: not read
            table = _near_columns(path) if self.cache is None else self.cache.read(path, "near", functools.partial(_near_columns, path))
            if table.num_rows != len(mine):
                raise ValueError(f"{path}: {table.num_rows:,} rows, but {len(mine):,} when its keys were read")
            nkey = table.column("_nkey").to_numpy()[mine]
            sigs = nd.signature_matrix(table.column(nd.SIGNATURE), self.params)[mine]
            for b in bands:
                out[b][at : at + k] = nd.band_hash(nkey, [sigs[:, c] for c in range(b * width, (b + 1) * width)], b)
            at += k
        return out


def _near_columns(path: str) -> pa.Table:
    return read_piece(path, ["_nkey", nd.SIGNATURE])


def read_signatures(rows: SurvivingRows, params: nd.MinHashParams, involved: np.ndarray, cache: WorkFileCache | None = None) -> np.ndarray:
    """Full signatures of the surviving rows at positions `involved` (sorted) among the survivors:
    each work file that holds any opened once, the row groups that hold them read a few at a time
    (SIGNATURE_READ_BYTES), so a file whose every row group has a candidate is never held whole;
    taken from the `cache` where the band passes kept the file."""
    release_memory()  # the band passes' arrays
    sigs = np.zeros((len(involved), params.num_perm), dtype=np.uint16)
    rows_of = rows.index[involved]
    part = np.searchsorted(rows.starts, rows_of, side="right") - 1
    bounds = np.flatnonzero(np.r_[True, part[1:] != part[:-1], True])
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        p = int(part[lo])
        local = rows_of[lo:hi] - rows.starts[p]
        kept = cache.kept(rows.files[p], "near") if cache is not None else None
        if kept is not None:
            sigs[lo:hi] = nd.signature_matrix(kept.column(nd.SIGNATURE).take(pa.array(local)), params)
            continue
        pf, parts = open_piece(rows.files[p])
        sizes = [end - first for _, first, end in parts]
        starts = np.cumsum([0, *sizes])
        part_of = np.searchsorted(starts, local, side="right") - 1  # the piece's k-th part (row group or rows of one)
        per_read = max(1, SIGNATURE_READ_BYTES // max(1, max(sizes) * params.num_perm * 2))
        needed = np.unique(part_of)
        for k in range(0, len(needed), per_read):
            mine = np.flatnonzero(np.isin(part_of, needed[k : k + per_read]))
            table = take_rows(rows.files[p], local[mine].tolist(), [nd.SIGNATURE])
            sigs[lo + mine] = nd.signature_matrix(table.column(nd.SIGNATURE), params)
    return sigs
