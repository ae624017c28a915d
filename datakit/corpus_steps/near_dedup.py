"""Near-duplicate detection: MinHash signatures per record, LSH buckets and verified clusters, globally.

Each record's text (both sides of a translation, every turn of a conversation) is normalised like
the exact-dedup key, cut into word n-grams, or character n-grams where a script has no spaces
(Chinese, Japanese, Thai, ...), and hashed into a MinHash signature in its partition task. Records
are compared only within the same task and languages: two translations of one sentence into
different languages are not duplicates; the same instruction with a slightly edited answer is.

The corpus step hashes each record's bucket in one LSH band at a time (8 bytes per record per band),
collects candidate pairs from colliding buckets, keeps the pairs whose estimated Jaccard
similarity reaches the threshold (the banding only proposes), and joins them into clusters
(connected components, in numpy). Each cluster keeps its smallest id. Bands and rows are chosen from the threshold, like
so that a pair at the threshold is proposed with 99% probability and as few pairs below it as possible.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import rensa
import xxhash

from datakit.hashing import canonical_bytes
from datakit.records import Record, content_texts, dedup_scope
from datakit.scripts import UNSPACED, mostly_unspaced, script_count_matrix
from datakit.text import dedup_text

# The share of unspaced letters from which a text is cut into characters: `mostly_unspaced`'s own,
# read from it so the per-text and the batch answers cannot drift apart.
UNSPACED_SHARE: float = inspect.signature(mostly_unspaced).parameters["share"].default
PAIR_CHUNK = 65_536  # candidate pairs compared at once when verifying them
# What makes a signature: part of the prepare fingerprint, so a resume never mixes two algorithms.
ALGORITHM = f"rensa.RMinHash v{rensa.RMinHash.ALGORITHM_VERSION}"


@dataclass(frozen=True)
class MinHashParams:
    num_perm: int
    bands: int
    rows: int
    threshold: float
    word_ngram: int = 3
    char_ngram: int = 4
    seed: int = 1


def minhash_params(threshold: float, num_perm: int, word_ngram: int = 3, char_ngram: int = 4) -> MinHashParams:
    """Settings with bands and rows chosen for the threshold."""
    bands, rows = choose_bands(threshold, num_perm)
    return MinHashParams(num_perm, bands, rows, threshold, word_ngram, char_ngram)


def params_for(config) -> MinHashParams | None:
    """The recipe's near-dedup settings (None: off)."""
    if not config.enabled:
        return None
    return minhash_params(config.threshold, config.num_perm, config.word_ngram, config.char_ngram)


def _false_positive_area(threshold: float, b: int, r: int, steps: int = 200) -> float:
    xs = np.linspace(0, threshold, steps + 1)
    return float(np.trapezoid(1 - (1 - xs**r) ** b, xs))


@functools.lru_cache(maxsize=64)
def choose_bands(threshold: float, num_perm: int, recall: float = 0.99) -> tuple[int, int]:
    """(bands, rows), bands * rows <= num_perm: a pair at the threshold becomes a candidate with
    probability `recall` or more, and as few pairs below it as possible do. Candidates are verified
    on the full signature, so a false candidate costs a comparison, a missed one a duplicate."""
    best, best_fp = None, float("inf")
    for b in range(1, num_perm + 1):
        for r in range(1, num_perm // b + 1):
            if 1 - (1 - threshold**r) ** b < recall:
                continue
            fp = _false_positive_area(threshold, b, r)
            if fp < best_fp:
                best, best_fp = (b, r), fp
    return best or (num_perm, 1)


def _cut(norm: str, unspaced: bool, word_n: int, char_n: int) -> frozenset[str]:
    """The shingles of one normalised text: its character n-grams (`unspaced`) or word n-grams; a
    text shorter than one n-gram is one shingle (the empty text: the empty string). Word n-grams are
    joined by map over zip, in C, not by a slice and a join per position in a Python generator."""
    if unspaced:
        chars = norm.replace(" ", "")
        if len(chars) <= char_n:
            return frozenset((chars,))
        return frozenset([chars[i : i + char_n] for i in range(len(chars) - char_n + 1)])
    words = norm.split()
    if len(words) <= word_n:
        return frozenset((" ".join(words),))
    # zip stops at the shortest shifted list: one n-gram per position where a whole one fits
    return frozenset(map(" ".join, zip(*(words[k:] for k in range(word_n)), strict=False)))


@functools.lru_cache(maxsize=16384)
def _part_shingles(text: str, word_n: int, char_n: int) -> frozenset[str]:
    # dedup_text is cached: the exact-dedup key normalised the same part
    return _cut(dedup_text(text), mostly_unspaced(text), word_n, char_n)


def shingles(parts: list[str], params: MinHashParams) -> set[str]:
    """Shingles of each part (both sides of a translation, every turn), each cut its own way: a
    Chinese answer into characters, its English source into words."""
    out: set[str] = set()
    for part in parts:
        out |= _part_shingles(part, params.word_ngram, params.char_ngram)
    return out


def unspaced_texts(texts: Sequence[str]) -> np.ndarray:
    """`mostly_unspaced` of many texts at once, from one vectorised script count of the batch
    (`script_count_matrix`) instead of a pass per text. Kana count as unspaced, as `script_counts`
    merges them into Jpan whenever they occur."""
    counts, scripts = script_count_matrix(texts)
    total = counts.sum(axis=1)
    unspaced = counts[:, [k for k, s in enumerate(scripts) if s in UNSPACED]].sum(axis=1)
    return (total > 0) & (unspaced >= UNSPACED_SHARE * total)


def text_shingles(texts: Sequence[str], norms: Sequence[str], params: MinHashParams) -> list[frozenset[str]]:
    """`shingles([text])` of each text of a batch, given each one's `dedup_text` (a caller that keys
    exact dedup has it already): the scripts counted for the whole batch at once, and nothing cached,
    for a stream of texts that each come once."""
    unspaced = unspaced_texts(texts).tolist()
    return [_cut(norm, u, params.word_ngram, params.char_ngram) for norm, u in zip(norms, unspaced, strict=True)]


def signatures(shingle_sets: Sequence[Iterable[str]], params: MinHashParams) -> np.ndarray:
    """MinHash of each set of shingles, one row each, every minimum kept as 16 bits (enough to
    estimate Jaccard). rensa's RMinHash (Rust) hashes and permutes, about 4x faster than the same
    in numpy; an empty set gets zeros, as before."""
    out = np.zeros((len(shingle_sets), params.num_perm), dtype=np.uint32)
    for i, items in enumerate(shingle_sets):
        if items:
            m = rensa.RMinHash(params.num_perm, params.seed)
            m.update(items)
            out[i] = m.digest()
    return (out & np.uint32(0xFFFF)).astype(np.uint16)


def bucket_key(record: Record) -> int:
    """Only records of the same task and languages (and scope: a QA passage) are compared."""
    scope = [record["task"], record.get("src_lang"), record.get("tgt_lang"), record["lang"], dedup_scope(record)]
    return xxhash.xxh64_intdigest(canonical_bytes(scope))


def columns(params: MinHashParams) -> list[str]:
    return [f"_mh{i:03d}" for i in range(params.num_perm)]


# A work file holds a record's signature as one fixed-size binary value (num_perm little-endian
# uint16), not num_perm columns: a band task of reading by quota writes a small work file per
# language, and Parquet's cost per file grows with its columns (3.6 ms against 0.8 ms for 12 rows).
SIGNATURE = "_sig"


def work_fields(params: MinHashParams) -> list[pa.Field]:
    return [pa.field("_nkey", pa.uint64()), pa.field(SIGNATURE, pa.binary(2 * params.num_perm))]


def signature_array(sigs: np.ndarray) -> pa.Array:
    """A (n, num_perm) uint16 matrix as one fixed-size binary column."""
    n, k = sigs.shape
    data = pa.py_buffer(np.ascontiguousarray(sigs, dtype="<u2").tobytes())
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(2 * k), n, [None, data])


def signature_matrix(column: pa.Array | pa.ChunkedArray, params: MinHashParams) -> np.ndarray:
    """The (n, num_perm) uint16 matrix of a signature column (views of its buffers, one copy)."""
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    parts = [np.frombuffer(c.buffers()[1], dtype="<u2", count=(c.offset + len(c)) * params.num_perm)
             .reshape(-1, params.num_perm)[c.offset :] for c in chunks if len(c)]
    return np.concatenate(parts) if parts else np.zeros((0, params.num_perm), dtype=np.uint16)


def signature_columns(records: list[Record], params: MinHashParams) -> dict[str, pa.Array]:
    """The bucket key and signature of a batch of records, as Arrow columns."""
    sigs = signatures([shingles(content_texts(r), params) for r in records], params)
    return {"_nkey": pa.array(np.array([bucket_key(r) for r in records], dtype=np.uint64)), SIGNATURE: signature_array(sigs)}


FNV_PRIME, BAND_SALT = np.uint64(0x100000001B3), np.uint64(0x9E3779B97F4A7C15)


def band_hash(nkey: np.ndarray, band_columns: Sequence[np.ndarray], band: int) -> np.ndarray:
    """Each row's LSH bucket in one band: its bucket key and the band's minima, hashed (FNV-style),
    salted by the band. Worked in place on one array: 8 bytes a row, whatever the band's width."""
    h = nkey.astype(np.uint64, copy=True)
    with np.errstate(over="ignore"):
        for column in band_columns:
            np.bitwise_xor(h, column.astype(np.uint64, copy=False), out=h)
            np.multiply(h, FNV_PRIME, out=h)
        h ^= np.uint64(band) * BAND_SALT
    return h


def candidate_pairs(bucket_hashes: Callable[[int], np.ndarray], n: int, params: MinHashParams) -> np.ndarray:
    """Pairs (i, j), i < j, sorted, that share a bucket in some band: consecutive members of each
    bucket. `bucket_hashes(b)` gives every row's bucket in band b (`band_hash`)."""
    if n < 2:
        return np.zeros((0, 2), dtype=np.int64)
    if n >= 1 << 32:
        raise ValueError(f"near dedup compares at most {1 << 32:,} rows at once, not {n:,}")
    pairs = []  # each pair as one number, i << 32 | j: half the memory of two columns, and one sort
    for band in range(params.bands):
        h = bucket_hashes(band)
        order = np.argsort(h, kind="stable")
        h = h[order]
        same = np.flatnonzero(h[1:] == h[:-1])
        del h
        if same.size:
            a, b = order[same].astype(np.uint64), order[same + 1].astype(np.uint64)
            pairs.append((np.minimum(a, b) << np.uint64(32)) | np.maximum(a, b))
        del order
    if not pairs:
        return np.zeros((0, 2), dtype=np.int64)
    packed = np.unique(np.concatenate(pairs))
    return np.stack([packed >> np.uint64(32), packed & np.uint64(0xFFFFFFFF)], axis=1).astype(np.int64)


Ids = Sequence[str] | pa.Array | pa.ChunkedArray | Callable[[np.ndarray], pa.Array]


def find_near(bucket_hashes: Callable[[int], np.ndarray], read_signatures: Callable[[np.ndarray], np.ndarray], n: int, ids: Ids,
              params: MinHashParams) -> dict[int, tuple[int, float]]:
    """Row -> (representative row, similarity) for the near duplicates among `n` rows.

    `bucket_hashes(b)` gives every row's bucket in band b; `read_signatures(rows)` the full
    signatures of the (sorted) rows that became candidates, to verify them. Both are callbacks so
    the caller decides what sits in memory (a few bands' buckets at a time in a build)."""
    pairs = candidate_pairs(bucket_hashes, n, params)
    if len(pairs) == 0:
        return {}
    involved = np.unique(pairs)
    sigs = read_signatures(involved)
    at = np.searchsorted(involved, pairs)
    # In chunks: both sides of a million pairs at once would be gigabytes of (pairs, num_perm) copies.
    similarity = np.concatenate([(sigs[at[k : k + PAIR_CHUNK, 0]] == sigs[at[k : k + PAIR_CHUNK, 1]]).mean(axis=1)
                                 for k in range(0, len(at), PAIR_CHUNK)])
    return clusters(pairs, similarity, ids, params.threshold)


def names_of(ids: Ids, rows: np.ndarray) -> pa.Array:
    """The ids of the given rows, as an Arrow array: no Python string per row (millions of them
    would be the driver's largest object)."""
    if callable(ids):
        return ids(rows)
    if isinstance(ids, (pa.Array, pa.ChunkedArray)):
        return ids.take(pa.array(rows, pa.int64()))
    return pa.array([ids[int(r)] for r in rows], pa.string())


def components(a: np.ndarray, b: np.ndarray, n: int) -> np.ndarray:
    """The connected component of each of `n` nodes joined by edges (a[k], b[k]), as the smallest
    node in it: labels spread along the edges and jump to their label's label until none changes."""
    label = np.arange(n)
    while True:
        low = np.minimum(label[a], label[b])
        new = label.copy()
        np.minimum.at(new, a, low)
        np.minimum.at(new, b, low)
        new = new[new]
        if np.array_equal(new, label):
            return label
        label = new


def clusters(pairs: np.ndarray, similarity: np.ndarray, ids: Ids, threshold: float) -> dict[int, tuple[int, float]]:
    """Row -> (representative row, similarity) for every row that is a near duplicate of another:
    pairs at the threshold join clusters, each cluster keeps its smallest id (ties: the smallest
    row), a row's similarity is the highest of its pairs. In numpy over the rows of kept pairs;
    `ids`: a sequence, an Arrow array or a function of rows (`names_of`)."""
    keep = similarity >= threshold
    kept, sim = pairs[keep], similarity[keep]
    if len(kept) == 0:
        return {}
    rows = np.unique(kept)
    a, b = np.searchsorted(rows, kept[:, 0]), np.searchsorted(rows, kept[:, 1])
    best = np.zeros(len(rows))
    np.maximum.at(best, a, sim)
    np.maximum.at(best, b, sim)
    by_name = pc.sort_indices(pa.table({"id": names_of(ids, rows), "row": np.arange(len(rows))}),
                              sort_keys=[("id", "ascending"), ("row", "ascending")]).to_numpy()
    rank = np.empty(len(rows), dtype=np.int64)
    rank[by_name] = np.arange(len(rows))
    label = components(a, b, len(rows))
    first = np.full(len(rows), len(rows), dtype=np.int64)
    np.minimum.at(first, label, rank)
    rep = by_name[first[label]]
    moved = np.flatnonzero(rep != np.arange(len(rows)))
    return {int(rows[i]): (int(rows[rep[i]]), float(best[i])) for i in moved.tolist()}
