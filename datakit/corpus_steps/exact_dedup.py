"""Exact deduplication on normalised content, global across every source and worker.

Each record gets a 16-byte key in its partition task (`dedup_key`): a hash of its task, languages
and normalised text (NFKC, case-folded, punctuation and symbols removed, whitespace collapsed).
What the text is depends on the task: the two sides of a translation (its instruction wording is
a template choice, not content), the turns of a conversation otherwise. The corpus step
(`duplicates_among`) works on those keys alone, so it fits in memory at millions of records; in
each group of equal keys the record with the smallest id stays, whichever worker made it.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from datakit.corpus_steps.gather import gather
from datakit.hashing import canonical_bytes
from datakit.records import Record, content_texts, dedup_scope
from datakit.text import dedup_text


def dedup_key(record: Record) -> bytes:
    parts = content_texts(record)
    content = [record["task"], record.get("src_lang"), record.get("tgt_lang"), [dedup_text(p) for p in parts], dedup_scope(record)]
    return hashlib.blake2b(canonical_bytes(content), digest_size=16).digest()


def find_duplicates(keys: pa.Table) -> pa.Table:
    """Rows that duplicate another row's key: (`part`, `row`, `duplicate_of`).

    `keys` has columns `part` (int), `row` (int), `id` (str), `key` (16 bytes). The representative
    of each group is its smallest id (ties by part and row), so the answer does not depend on the
    order the rows arrive in.
    """
    order = pc.sort_indices(keys, sort_keys=[("part", "ascending"), ("row", "ascending")])
    ranked = keys.take(order)
    positions, originals = duplicates_among(ranked.column("id"), ranked.column("key"))
    at = pa.array(positions)
    return pa.table({"part": ranked.column("part").take(at), "row": ranked.column("row").take(at),
                     "duplicate_of": pa.array(originals, pa.string())})


KEY_TYPE = pa.binary(16)


def key_words(keys: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """The 16-byte keys as an (n, 2) uint64 array, copied one Arrow chunk at a time: the only
    full-size copy exact dedup makes (an Arrow sort of the key column took several)."""
    keys = keys if isinstance(keys, pa.ChunkedArray) else pa.chunked_array([keys], type=keys.type)
    if keys.type != KEY_TYPE:
        keys = keys.cast(KEY_TYPE)  # a variable-width binary column of 16-byte values; fails on any other length
    if keys.null_count:
        raise ValueError(f"{keys.null_count} rows have no exact-dedup key")
    out = np.empty((len(keys), 2), dtype=np.uint64)
    at = 0
    for chunk in keys.chunks:
        n = len(chunk)
        if n:
            words = np.frombuffer(chunk.buffers()[1], dtype=np.uint64, count=2 * (chunk.offset + n)).reshape(-1, 2)
            out[at : at + n] = words[chunk.offset :]
        at += n
    return out


def duplicates_among(ids: pa.Array | pa.ChunkedArray, keys: pa.Array | pa.ChunkedArray,
                     rows: np.ndarray | None = None) -> tuple[np.ndarray, list[str]]:
    """Positions (ascending) of the rows whose key a better-ranked row holds, and the id each
    duplicates: the smallest id of its group, ties by position. `rows`: compare only these rows
    (ascending; positions are then into `rows`).

    Equal keys are found by a numpy sort of the keys alone (24 bytes a row); ids are looked at
    only for the rows in a group of two or more, a few percent of a corpus."""
    words = key_words(keys)
    if rows is not None:
        words = words[rows]
    n = len(words)
    if n < 2:
        return np.zeros(0, dtype=np.int64), []
    order = np.lexsort((words[:, 1], words[:, 0]))
    same = words[order[1:], 0] == words[order[:-1], 0]
    same &= words[order[1:], 1] == words[order[:-1], 1]  # same[i]: sorted rows i and i+1 hold one key
    del words
    grouped = np.zeros(n, dtype=bool)
    grouped[1:] = same
    grouped[:-1] |= same
    at = np.flatnonzero(grouped)
    members = order[at]  # rows in a group of two or more, group after group
    group = np.cumsum(~np.r_[False, same][at])  # a new group wherever a row does not continue the one before
    names = gather(ids, members if rows is None else rows[members]).to_pylist()
    best: dict[int, tuple[str, int]] = {}
    for g, name, row in zip(group.tolist(), names, members.tolist(), strict=True):
        if g not in best or (name, row) < best[g]:
            best[g] = (name, row)
    dups = sorted((row, best[g][0]) for g, row in zip(group.tolist(), members.tolist(), strict=True) if best[g][1] != row)
    return np.array([r for r, _ in dups], dtype=np.int64), [name for _, name in dups]
