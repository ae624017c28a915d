"""datakit's exact and near dedup as datatrove PipelineSteps, for any datatrove pipeline.

The same three-pass shape as datatrove's own MinHash blocks, with datakit's keys and clustering:

    signatures:  [reader, DedupSignatures(folder)]            N ranks: per document, its exact key
                                                               and MinHash signature
    clusters:    [DedupClusters(folder)]                       1 rank: exact groups, then LSH
                                                               candidates verified on the signature
    filter:      [reader, DedupFilter(folder, exclusion_writer=...), writer]
                                                               N ranks, same reader and ranks as pass 1

What datakit adds over datatrove's blocks: one pass finds exact and near duplicates together;
shingles suit unspaced scripts (characters for zh/ja/th, words elsewhere: `near_dedup.shingles`);
bands and rows are chosen for a stated Jaccard threshold; the representative of a group is the
document with the smallest id (not the first one read), so the result does not depend on how the
input was split into ranks; and every removed document can be written with why (`dedup_reason`,
`duplicate_of`, `similarity` in its metadata). Documents are compared only within the same scope
(a metadata key such as `language`, when given).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import xxhash
from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.writers.disk_base import DiskWriter

from datakit.corpus_steps import near_dedup as nd
from datakit.corpus_steps.exact_dedup import duplicates_among
from datakit.store import atomic_path, write_json
from datakit.text import dedup_text

SIGNATURES, REMOVALS = "signatures", "removals"
SIGNATURE_BATCH = 1_024  # documents read before their scripts are counted and their signatures made together


def _rank_file(folder: str, kind: str, rank: int) -> Path:
    return Path(folder) / kind / f"{rank:05d}.{'npz' if kind == SIGNATURES else 'json'}"


@dataclass
class Signed:
    """What pass 1 keeps of a rank's documents, as arrays (no object per document): ids as one
    UTF-8 buffer and offsets, 16-byte exact keys, scope buckets and (n, num_perm) signatures.

    Stored as an uncompressed .npz, not Parquet: the file is read whole by one rank right after,
    and writing it needs neither Arrow nor pandas (which Arrow imports on first use, about half a
    second in each worker process of the pass)."""

    id_bytes: np.ndarray  # uint8
    id_offsets: np.ndarray  # int64, n + 1
    keys: np.ndarray  # (n, 16) uint8
    nkeys: np.ndarray  # uint64
    sigs: np.ndarray  # (n, num_perm) uint16

    @classmethod
    def concat(cls, parts: list[Signed]) -> Signed:
        sizes = np.cumsum([0] + [len(p.id_bytes) for p in parts[:-1]])
        offsets = [p.id_offsets[:-1] + s for p, s in zip(parts, sizes, strict=True)]
        return cls(np.concatenate([p.id_bytes for p in parts]), np.concatenate([*offsets, [sizes[-1] + len(parts[-1].id_bytes)]]),
                   np.concatenate([p.keys for p in parts]), np.concatenate([p.nkeys for p in parts]),
                   np.concatenate([p.sigs for p in parts]))

    def write(self, path: Path, params: nd.MinHashParams) -> None:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, params=np.array(repr(params)), **vars(self))

    @classmethod
    def read(cls, path: Path, params: nd.MinHashParams) -> Signed:
        with np.load(path, allow_pickle=False) as z:
            made_with = str(z["params"])
            if made_with != repr(params):
                raise ValueError(f"{path}: signatures made with {made_with}, not {params}: give DedupSignatures and "
                                 "DedupClusters the same threshold, num_perm and n-gram sizes")
            return cls(**{k: z[k] for k in ("id_bytes", "id_offsets", "keys", "nkeys", "sigs")})

    def ids(self) -> pa.Array:
        """The ids as an Arrow string column over the same buffers."""
        return pa.LargeStringArray.from_buffers(len(self.nkeys), pa.py_buffer(self.id_offsets), pa.py_buffer(self.id_bytes))

    def key_column(self) -> pa.Array:
        return pa.FixedSizeBinaryArray.from_buffers(pa.binary(16), len(self.keys), [None, pa.py_buffer(np.ascontiguousarray(self.keys))])


class DedupSignatures(PipelineStep):
    """Pass 1: each document's exact key (normalised text, `dedup_text`) and MinHash signature."""

    name = "datakit dedup signatures"
    type = "🫂 - DEDUP"

    def __init__(self, folder: str, threshold: float = 0.8, num_perm: int = 128, scope_key: str | None = None,
                 word_ngram: int = 3, char_ngram: int = 4):
        super().__init__()
        self.folder, self.scope_key = folder, scope_key
        self.params = nd.minhash_params(threshold, num_perm, word_ngram, char_ngram)

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        parts, batch = [], []
        for doc in data or []:
            batch.append(doc)
            if len(batch) == SIGNATURE_BATCH:
                parts.append(self._sign(batch))
                batch = []
        parts.append(self._sign(batch))
        Signed.concat(parts).write(_rank_file(self.folder, SIGNATURES, rank), self.params)
        return
        yield

    def _sign(self, docs: list[Document]) -> Signed:
        """A batch's keys and signatures: each text normalised once (the exact key and the shingles
        share it), the scripts of the whole batch counted at once."""
        texts = [doc.text for doc in docs]
        scopes = [str(doc.metadata.get(self.scope_key, "")) if self.scope_key else "" for doc in docs]
        norms = [dedup_text(t) for t in texts]
        ids = [str(doc.id).encode() for doc in docs]
        keys = b"".join(hashlib.blake2b(f"{s}\x00{n}".encode(), digest_size=16).digest() for s, n in zip(scopes, norms, strict=True))
        bucket = {s: xxhash.xxh64_intdigest(s) for s in set(scopes)}
        self.stat_update("documents", value=len(docs))
        return Signed(np.frombuffer(b"".join(ids), dtype=np.uint8), np.cumsum([0] + [len(i) for i in ids], dtype=np.int64),
                      np.frombuffer(keys, dtype=np.uint8).reshape(-1, 16), np.array([bucket[s] for s in scopes], dtype=np.uint64),
                      nd.signatures(nd.text_shingles(texts, norms, self.params), self.params))


class DedupClusters(PipelineStep):
    """Pass 2 (one rank): exact groups first, then near duplicates among the rest; per input rank,
    the documents to remove and what each duplicates."""

    name = "datakit dedup clusters"
    type = "🫂 - DEDUP"

    def __init__(self, folder: str, threshold: float = 0.8, num_perm: int = 128, word_ngram: int = 3, char_ngram: int = 4):
        super().__init__()
        self.folder = folder
        self.params = nd.minhash_params(threshold, num_perm, word_ngram, char_ngram)

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        files = sorted((Path(self.folder) / SIGNATURES).glob("*.npz"))
        parts = [Signed.read(f, self.params) for f in files]
        sizes = np.array([len(p.nkeys) for p in parts], dtype=np.int64)
        removed: dict[int, tuple[str, str, float]] = {}  # global row -> (reason, duplicate_of, similarity)
        if sizes.sum():
            sigs = Signed.concat(parts)
            ids = sigs.ids()
            # Ranks are concatenated in order, so a tie on id goes to the earlier rank and row.
            for g, original in zip(*duplicates_among(ids, sigs.key_column()), strict=True):
                removed[int(g)] = ("exact_duplicate", original, 1.0)
            self._near(sigs, ids, removed)
        self.stat_update("exact_duplicate", value=sum(v[0] == "exact_duplicate" for v in removed.values()))
        self.stat_update("near_duplicate", value=sum(v[0] == "near_duplicate" for v in removed.values()))
        starts = np.r_[0, np.cumsum(sizes)]
        rows = np.array(sorted(removed), dtype=np.int64)
        for f, lo, hi in zip(files, starts[:-1], starts[1:], strict=True):
            mine = rows[(rows >= lo) & (rows < hi)].tolist()
            write_json(_rank_file(self.folder, REMOVALS, int(f.stem)),
                       {"row": [g - int(lo) for g in mine], "reason": [removed[g][0] for g in mine],
                        "duplicate_of": [removed[g][1] for g in mine], "similarity": [removed[g][2] for g in mine]})
        return
        yield

    def _near(self, sigs: Signed, ids: pa.Array, removed: dict[int, tuple[str, str, float]]) -> None:
        params = self.params
        alive = np.ones(len(sigs.nkeys), dtype=bool)
        alive[list(removed)] = False
        index = np.flatnonzero(alive)
        matrix, nkey = sigs.sigs[index], sigs.nkeys[index]
        local_ids = ids.take(pa.array(index, pa.int64()))
        found = nd.find_near(lambda b: nd.band_hash(nkey, matrix[:, b * params.rows : (b + 1) * params.rows].T, b),
                             lambda rows: matrix[rows], len(index), local_ids, params)
        for r, (rep, similarity) in found.items():
            removed[int(index[r])] = ("near_duplicate", local_ids[rep].as_py(), round(similarity, 3))


class DedupFilter(PipelineStep):
    """Pass 3: drops the documents pass 2 found (by their position in this rank's input, which the
    same reader and rank count reproduce); removed documents go to `exclusion_writer`, with why."""

    name = "datakit dedup filter"
    type = "🫂 - DEDUP"

    def __init__(self, folder: str, exclusion_writer: DiskWriter | None = None):
        super().__init__()
        self.folder, self.exclusion_writer = folder, exclusion_writer

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        found = json.loads(_rank_file(self.folder, REMOVALS, rank).read_text(encoding="utf-8"))
        gone = {r: (reason, dup, sim) for r, reason, dup, sim in zip(found["row"], found["reason"], found["duplicate_of"], found["similarity"],
                                                                   strict=True)}
        writer = self.exclusion_writer
        with writer if writer is not None else contextlib.nullcontext() as excluded:
            for i, doc in enumerate(data or []):
                if i not in gone:
                    self.stat_update("kept")
                    yield doc
                    continue
                reason, dup, sim = gone[i]
                self.stat_update(reason)
                if excluded is not None:
                    doc.metadata.update({"dedup_reason": reason, "duplicate_of": dup, "similarity": sim})
                    excluded.write(doc, rank)
