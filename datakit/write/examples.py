"""The records the report shows: a few per removal reason and per kept (language, task).

A reviewer trusts a filter after reading what it removed, so every reason gets examples, and the
kept records get some too. They are chosen, not dumped: a seeded rank of each record's id (the
recipe seed, so the same build shows the same records and another seed others), spread over
sources and languages (a reason that hit three sources shows one record of each before a second of
any). The files are read a row group at a time and only the columns that choose (id, the bucket
and the spread), so a build of millions of records is chosen from in bounded memory; then only the
chosen rows are read whole.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from datakit.store import take_rows
from datakit.write.evidence import duplicate_of, loads

REJECTED_BUCKET = ("stage", "reason")
REJECTED_SPREAD = ("source", "lang")
KEPT_BUCKET = ("lang", "task")
KEPT_SPREAD = ("source",)
_SEP = "\x1f"
_HEX = np.zeros(256, dtype=np.uint64)
_HEX[np.frombuffer(b"0123456789", dtype=np.uint8)] = np.arange(10, dtype=np.uint64)
_HEX[np.frombuffer(b"abcdef", dtype=np.uint8)] = np.arange(10, 16, dtype=np.uint64)


def seeded_ranks(ids: pa.Array, seed: int) -> np.ndarray:
    """A 64-bit rank per record id (32 hex digits), mixed with the seed (splitmix64): a fixed,
    seed-dependent order of records that does not depend on files, workers or row order."""
    raw = np.asarray(ids.to_numpy(zero_copy_only=False), dtype="S32").view(np.uint8).reshape(-1, 32)[:, :16]
    value = np.zeros(len(raw), dtype=np.uint64)
    for i in range(16):
        value = (value << np.uint64(4)) | _HEX[raw[:, i]]
    salt = int.from_bytes(hashlib.blake2b(f"datakit report examples {seed}".encode(), digest_size=8).digest(), "big")
    z = value ^ np.uint64(salt)
    with np.errstate(over="ignore"):
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@dataclass(frozen=True, order=True)
class Candidate:
    rank: int
    file: int  # index into the scanned files
    row: int  # row in that file
    spread: tuple[str, ...] = ()  # the values examples are spread over (source, language)


def _key_column(batch: pa.RecordBatch, columns: Sequence[str]) -> pa.Array:
    parts = [pc.fill_null(batch.column(c).cast(pa.string()), "-") for c in columns]
    return pc.binary_join_element_wise(*parts, _SEP) if len(parts) > 1 else parts[0]


def scan(files: Sequence[Path], bucket: Sequence[str], spread: Sequence[str], seed: int, per_key: int) -> dict[tuple[str, ...], list[Candidate]]:
    """Per bucket (e.g. stage and reason), the `per_key` lowest-ranked rows of each spread value
    (e.g. source and language): enough to choose from, whatever the files hold, in bounded memory."""
    columns = ["id", *dict.fromkeys([*bucket, *spread])]
    best: dict[str, list[Candidate]] = {}
    for f, path in enumerate(files):
        offset = 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=65_536, columns=columns):
            n = batch.num_rows
            ranks = seeded_ranks(batch.column("id"), seed)
            encoded = _key_column(batch, [*bucket, *spread]).dictionary_encode()
            codes = encoded.indices.to_numpy()
            order = np.lexsort((np.arange(n), ranks, codes))
            sorted_codes = codes[order]
            place = np.arange(n) - np.searchsorted(sorted_codes, sorted_codes, side="left")
            for i in order[place < per_key]:
                key = encoded.dictionary[codes[i]].as_py()
                values = key.split(_SEP)
                cands = best.setdefault(key, [])
                cands.append(Candidate(int(ranks[i]), f, offset + int(i), tuple(values[len(bucket):])))
                if len(cands) > per_key:
                    cands.sort()
                    del cands[per_key:]
            offset += n
    out: dict[tuple[str, ...], list[Candidate]] = {}
    for key, cands in sorted(best.items()):
        out.setdefault(tuple(key.split(_SEP)[: len(bucket)]), []).extend(cands)
    return out


def spread_pick(candidates: list[Candidate], k: int) -> list[Candidate]:
    """`k` candidates, lowest rank first, preferring ones whose source and language are new: first
    those new in every respect, then new in one, then any."""
    ordered = sorted(candidates)
    chosen: list[Candidate] = []
    seen: list[set[str]] = [set() for _ in (ordered[0].spread if ordered else ())]
    tests = (lambda c: all(v not in s for v, s in zip(c.spread, seen, strict=True)),
             lambda c: any(v not in s for v, s in zip(c.spread, seen, strict=True)),
             lambda c: True)
    for test in tests:
        for c in ordered:
            if len(chosen) >= k:
                return chosen
            if c not in chosen and test(c):
                chosen.append(c)
                for v, s in zip(c.spread, seen, strict=True):
                    s.add(v)
    return chosen


def read_chosen(files: Sequence[Path], chosen: dict[tuple[str, ...], list[Candidate]]) -> dict[tuple[str, ...], list[dict[str, Any]]]:
    """The chosen rows, whole: each file read once, only the row groups that hold them."""
    wanted: dict[int, set[int]] = {}
    for cands in chosen.values():
        for c in cands:
            wanted.setdefault(c.file, set()).add(c.row)
    rows: dict[tuple[int, int], dict[str, Any]] = {}
    for f, rs in sorted(wanted.items()):
        ordered = sorted(rs)
        for r, row in zip(ordered, take_rows(str(files[f]), ordered).to_pylist(), strict=True):
            rows[(f, r)] = {**row, "file": files[f]}
    return {key: [rows[(c.file, c.row)] for c in cands] for key, cands in chosen.items()}


def choose(files: Sequence[Path], bucket: Sequence[str], spread: Sequence[str], seed: int, k: int) -> dict[tuple[str, ...], list[dict[str, Any]]]:
    """Up to `k` whole rows per bucket, chosen by seeded rank and spread (see the module docstring)."""
    pools = scan(files, bucket, spread, seed, per_key=k)
    return read_chosen(files, {key: spread_pick(cands, k) for key, cands in pools.items()})


def find_by_id(files: Sequence[Path], ids: set[str]) -> dict[str, dict[str, Any]]:
    """Rows of data/ with the given ids: data/ shards are sorted by id and carry row-group
    statistics, so only the row groups whose id range holds one are read."""
    found: dict[str, dict[str, Any]] = {}
    for path in files:
        left = sorted(ids - found.keys())
        if not left:
            break
        pf = pq.ParquetFile(path)
        column = pf.schema_arrow.get_field_index("id")
        for g in range(pf.metadata.num_row_groups):
            stats = pf.metadata.row_group(g).column(column).statistics
            inside = [i for i in left if stats is None or not stats.has_min_max or stats.min <= i <= stats.max]
            if not inside:
                continue
            table = pf.read_row_group(g)
            for row in table.filter(pc.is_in(table.column("id"), pa.array(inside))).to_pylist():
                found[row["id"]] = {**row, "file": path}
    return found


def originals(data_root: Path, examples: dict[tuple[str, ...], list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """The records the duplicate examples were folded into, where data/ holds them: looked for in
    the duplicate's own language folder first (dedup compares records of one language), then in all."""
    wanted: dict[str, set[str]] = {}
    for rows in examples.values():
        for row in rows:
            original = duplicate_of(loads(row["meta"]))
            if original:
                wanted.setdefault(row.get("lang") or "", set()).add(original)
    found: dict[str, dict[str, Any]] = {}
    for lang, ids in sorted(wanted.items()):
        found.update(find_by_id(sorted((data_root / lang).glob("*.parquet")) if lang else [], ids))
    rest = {i for ids in wanted.values() for i in ids} - found.keys()
    return {**found, **(find_by_id(sorted(data_root.glob("*/*.parquet")), rest) if rest else {})}
