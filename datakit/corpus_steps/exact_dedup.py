"""Exact deduplication on normalised content, global across every source and worker.

Each record gets a 16-byte key in its partition task (`dedup_key`): a hash of its task, languages
and normalised text (NFKC, case-folded, punctuation and symbols removed, whitespace collapsed).
What the text is depends on the task: the two sides of a translation (its instruction wording is
a template choice, not content), the turns of a conversation otherwise. The corpus step
(`find_duplicates`) works on those keys alone, so it fits in memory at millions of records; in
each group of equal keys the record with the smallest id stays, whichever worker made it.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from datakit.hashing import canonical_bytes
from datakit.records import Record, content_texts, dedup_scope
from datakit.text import dedup_text


def dedup_key(record: Record) -> bytes:
    parts = content_texts(record)
    content = [record["task"], record.get("src_lang"), record.get("tgt_lang"), [dedup_text(p) for p in parts], dedup_scope(record)]
    return hashlib.blake2b(canonical_bytes(content), digest_size=16).digest()


def find_duplicates(keys: pa.Table) -> pa.Table:
    """Rows that duplicate another row's key: (`part`, `row`, `duplicate_of`).

    `keys` has columns `part` (int), `row` (int), `id` (str), `key` (binary). The representative of
    each group is its smallest id (ties by part and row), so the answer does not depend on the order
    the rows arrive in.
    """
    if keys.num_rows == 0:
        return pa.table({"part": pa.array([], pa.int64()), "row": pa.array([], pa.int64()), "duplicate_of": pa.array([], pa.string())})
    order = pc.sort_indices(keys, sort_keys=[("key", "ascending"), ("id", "ascending"), ("part", "ascending"), ("row", "ascending")])
    sorted_keys = keys.take(order)
    key = sorted_keys.column("key").combine_chunks()
    same = np.zeros(len(key), dtype=bool)
    if len(key) > 1:
        same[1:] = pc.equal(key.slice(1), key.slice(0, len(key) - 1)).to_numpy(zero_copy_only=False)
    group_start = np.where(same, 0, np.arange(len(key)))
    group_start = np.maximum.accumulate(group_start)
    dup_rows = np.nonzero(same)[0]
    ids = sorted_keys.column("id").combine_chunks()
    return pa.table({
        "part": sorted_keys.column("part").take(pa.array(dup_rows)),
        "row": sorted_keys.column("row").take(pa.array(dup_rows)),
        "duplicate_of": ids.take(pa.array(group_start[dup_rows])),
    })


def duplicates_among(ids: pa.Array | pa.ChunkedArray, keys: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, list[str]]:
    """Positions of the rows whose key an earlier-ranked row holds, and the id each duplicates (the
    smallest id of its group, ties by position): `find_duplicates` over one list of rows."""
    n = len(ids)
    dups = find_duplicates(pa.table({"id": ids, "key": keys, "part": pa.array(np.zeros(n, dtype=np.int64)),
                                     "row": pa.array(np.arange(n, dtype=np.int64))}))
    return dups.column("row").to_numpy(), dups.column("duplicate_of").to_pylist()
