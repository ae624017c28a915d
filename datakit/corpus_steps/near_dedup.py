"""Near-duplicate detection: MinHash signatures per record, LSH buckets and verified clusters, globally.

Each record's text (both sides of a translation, every turn of a conversation) is normalised like
the exact-dedup key, cut into word n-grams, or character n-grams where a script has no spaces
(Chinese, Japanese, Thai, ...), and hashed into a MinHash signature in its partition task. Records
are compared only within the same task and languages: two translations of one sentence into
different languages are not duplicates; the same instruction with a slightly edited answer is.

The corpus step reads the signature one LSH band at a time (a few bytes per record per band),
collects candidate pairs from colliding buckets, keeps the pairs whose estimated Jaccard
similarity reaches the threshold (the banding only proposes), and joins them into clusters with
union-find. Each cluster keeps its smallest id. Bands and rows are chosen from the threshold, like
so that a pair at the threshold is proposed with 99% probability and as few pairs below it as possible.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import rensa
import xxhash

from datakit.hashing import canonical_bytes
from datakit.records import Record, content_texts, dedup_scope
from datakit.scripts import mostly_unspaced
from datakit.text import dedup_text

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


@functools.lru_cache(maxsize=16384)
def _part_shingles(text: str, word_n: int, char_n: int) -> frozenset[str]:
    norm = dedup_text(text)  # cached: the exact-dedup key normalised the same part
    if mostly_unspaced(text):
        chars = norm.replace(" ", "")
        return frozenset(chars[i : i + char_n] for i in range(max(1, len(chars) - char_n + 1)))
    words = norm.split()
    return frozenset(" ".join(words[i : i + word_n]) for i in range(max(1, len(words) - word_n + 1)))


def shingles(parts: list[str], params: MinHashParams) -> set[str]:
    """Shingles of each part (both sides of a translation, every turn), each cut its own way: a
    Chinese answer into characters, its English source into words."""
    out: set[str] = set()
    for part in parts:
        out |= _part_shingles(part, params.word_ngram, params.char_ngram)
    return out


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


def work_fields(params: MinHashParams) -> list[pa.Field]:
    return [pa.field("_nkey", pa.uint64())] + [pa.field(c, pa.uint16()) for c in columns(params)]


def signature_columns(records: list[Record], params: MinHashParams) -> dict[str, pa.Array]:
    """The bucket key and signature of a batch of records, as Arrow columns (built from one matrix)."""
    sigs = signatures([shingles(content_texts(r), params) for r in records], params)
    out = {"_nkey": pa.array(np.array([bucket_key(r) for r in records], dtype=np.uint64))}
    for k, name in enumerate(columns(params)):
        out[name] = pa.array(sigs[:, k])
    return out


class UnionFind:
    def __init__(self, n: int):
        self.parent = np.arange(n, dtype=np.int64)

    def find(self, x: int) -> int:
        root = x
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[x] != root:
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, x: int, y: int) -> None:
        rx, ry = self.find(x), self.find(y)
        if rx != ry:
            self.parent[max(rx, ry)] = min(rx, ry)


def candidate_pairs(read_band, n: int, params: MinHashParams) -> np.ndarray:
    """Pairs (i, j), i < j, that share a bucket in some band: consecutive members of each bucket."""
    pairs = []
    for band in range(params.bands):
        cols, nkey = read_band(band)  # (n, rows) uint16, (n,) uint64
        if n < 2:
            break
        h = nkey.copy()
        with np.errstate(over="ignore"):
            for k in range(cols.shape[1]):
                h = (h ^ cols[:, k].astype(np.uint64)) * np.uint64(0x100000001B3)
            h ^= np.uint64(band) * np.uint64(0x9E3779B97F4A7C15)
        order = np.argsort(h, kind="stable")
        sh = h[order]
        same = np.flatnonzero(sh[1:] == sh[:-1])
        if same.size:
            a, b = order[same], order[same + 1]
            pairs.append(np.stack([np.minimum(a, b), np.maximum(a, b)], axis=1))
    if not pairs:
        return np.zeros((0, 2), dtype=np.int64)
    return np.unique(np.concatenate(pairs), axis=0)


def find_near(read_band, read_signatures, n: int, ids: list[str] | pa.Array, params: MinHashParams) -> dict[int, tuple[int, float]]:
    """Row -> (representative row, similarity) for the near duplicates among `n` rows.

    `read_band(b)` gives band b of every row's signature and its bucket key; `read_signatures(rows)`
    the full signatures of the (sorted) rows that became candidates, to verify them. Both are
    callbacks so the caller decides what sits in memory (one band at a time in a build)."""
    pairs = candidate_pairs(read_band, n, params)
    if len(pairs) == 0:
        return {}
    involved = np.unique(pairs)
    sigs = read_signatures(involved)
    at = np.searchsorted(involved, pairs)
    # In chunks: both sides of a million pairs at once would be gigabytes of (pairs, num_perm) copies.
    similarity = np.concatenate([(sigs[at[k : k + PAIR_CHUNK, 0]] == sigs[at[k : k + PAIR_CHUNK, 1]]).mean(axis=1)
                                 for k in range(0, len(at), PAIR_CHUNK)])
    return clusters(pairs, similarity, ids, params.threshold)


class _ArrowIds:
    """Python strings of an Arrow string array, made only for the rows asked about."""

    def __init__(self, array: pa.Array):
        self.array = array

    def __getitem__(self, i: int) -> str:
        return self.array[i].as_py()


def clusters(pairs: np.ndarray, similarity: np.ndarray, ids: list[str] | pa.Array, threshold: float) -> dict[int, tuple[int, float]]:
    """Row -> (representative row, similarity) for every row that is a near duplicate of another.
    `ids` may be an Arrow array: only the ids of rows in a group are turned into Python strings."""
    if len(pairs) == 0:
        return {}
    if isinstance(ids, pa.Array):
        ids = _ArrowIds(ids)
    keep = similarity >= threshold
    rows = np.unique(pairs[keep])
    local = {int(r): i for i, r in enumerate(rows)}
    uf = UnionFind(len(rows))
    best_sim: dict[int, float] = {}
    for (i, j), s in zip(pairs[keep], similarity[keep], strict=True):
        uf.union(local[int(i)], local[int(j)])
        best_sim[int(i)] = max(best_sim.get(int(i), 0.0), float(s))
        best_sim[int(j)] = max(best_sim.get(int(j), 0.0), float(s))
    members: dict[int, list[int]] = {}
    for r in rows:
        members.setdefault(uf.find(local[int(r)]), []).append(int(r))
    out = {}
    for group in members.values():
        rep = min(group, key=lambda r: ids[r])
        for r in group:
            if r != rep:
                out[r] = (rep, best_sim[r])
    return out
