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
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import xxhash
from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.writers.disk_base import DiskWriter

from datakit.corpus_steps import near_dedup as nd
from datakit.corpus_steps.exact_dedup import duplicates_among
from datakit.store import atomic_path
from datakit.text import dedup_text

SIGNATURES, REMOVALS = "signatures", "removals"


def _rank_file(folder: str, kind: str, rank: int) -> Path:
    return Path(folder) / kind / f"{rank:05d}.parquet"


def _scope(doc, scope_key: str | None) -> str:
    return str(doc.metadata.get(scope_key, "")) if scope_key else ""


SIGNATURE_BATCH = 1_024  # documents whose shingle sets are held before they are signed together


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
        ids, keys, buckets, sigs, pending = [], [], [], [], []
        for doc in data or []:
            scope = _scope(doc, self.scope_key)
            ids.append(str(doc.id))
            keys.append(hashlib.blake2b(f"{scope}\x00{dedup_text(doc.text)}".encode(), digest_size=16).digest())
            buckets.append(xxhash.xxh64_intdigest(scope))
            pending.append(nd.shingles([doc.text], self.params))
            if len(pending) == SIGNATURE_BATCH:
                sigs.append(nd.signatures(pending, self.params))
                pending = []
            self.stat_update("documents")
        sigs.append(nd.signatures(pending, self.params))
        matrix = np.concatenate(sigs)
        table = pa.table({"id": pa.array(ids, pa.string()), "key": pa.array(keys, pa.binary(16)),
                          "_nkey": pa.array(np.array(buckets, dtype=np.uint64)),
                          **{c: pa.array(matrix[:, k]) for k, c in enumerate(nd.columns(self.params))}})
        table = table.replace_schema_metadata({"params": repr(self.params)})
        path = _rank_file(self.folder, SIGNATURES, rank)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            pq.write_table(table, tmp)
        return
        yield


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
        files = sorted((Path(self.folder) / SIGNATURES).glob("*.parquet"))
        tables = []
        for f in files:
            t = pq.read_table(f)
            made_with = (t.schema.metadata or {}).get(b"params", b"").decode()
            if made_with != repr(self.params):
                raise ValueError(f"{f}: signatures made with {made_with}, not {self.params}: give DedupSignatures and "
                                 "DedupClusters the same threshold, num_perm and n-gram sizes")
            tables.append(t.append_column("part", pa.array(np.full(t.num_rows, int(f.stem), dtype=np.int64)))
                           .append_column("row", pa.array(np.arange(t.num_rows, dtype=np.int64))))
        sigs = pa.concat_tables(tables) if tables else None
        n = sigs.num_rows if sigs is not None else 0
        removed: dict[int, tuple[str, str, float]] = {}  # global row -> (reason, duplicate_of, similarity)
        if n:
            # Ranks are concatenated in order, so a tie on id goes to the earlier rank and row.
            for g, original in zip(*duplicates_among(sigs.column("id"), sigs.column("key")), strict=True):
                removed[int(g)] = ("exact_duplicate", original, 1.0)
            self._near(sigs, removed)
        self.stat_update("exact_duplicate", value=sum(v[0] == "exact_duplicate" for v in removed.values()))
        self.stat_update("near_duplicate", value=sum(v[0] == "near_duplicate" for v in removed.values()))
        parts = sigs.column("part").to_numpy() if n else np.zeros(0, dtype=np.int64)
        rows = sigs.column("row").to_numpy() if n else np.zeros(0, dtype=np.int64)
        for f in files:
            mine = sorted((int(rows[g]), *removed[g]) for g in removed if parts[g] == int(f.stem))
            out = _rank_file(self.folder, REMOVALS, int(f.stem))
            out.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(out) as tmp:
                pq.write_table(pa.table({"row": pa.array([m[0] for m in mine], pa.int64()),
                                         "reason": pa.array([m[1] for m in mine], pa.string()),
                                         "duplicate_of": pa.array([m[2] for m in mine], pa.string()),
                                         "similarity": pa.array([m[3] for m in mine], pa.float64())}), tmp)
        return
        yield

    def _near(self, sigs: pa.Table, removed: dict[int, tuple[str, str, float]]) -> None:
        params = self.params
        alive = np.ones(sigs.num_rows, dtype=bool)
        alive[list(removed)] = False
        index = np.flatnonzero(alive)
        cols = nd.columns(params)
        matrix = np.stack([sigs.column(c).to_numpy() for c in cols], axis=1)[index]
        nkey = sigs.column("_nkey").to_numpy()[index]
        ids = sigs.column("id").to_pylist()
        local_ids = [ids[g] for g in index]
        found = nd.find_near(lambda b: nd.band_hash(nkey, matrix[:, b * params.rows : (b + 1) * params.rows].T, b),
                             lambda rows: matrix[rows], len(index), local_ids, params)
        for r, (rep, similarity) in found.items():
            removed[int(index[r])] = ("near_duplicate", local_ids[rep], round(similarity, 3))


class DedupFilter(PipelineStep):
    """Pass 3: drops the documents pass 2 found (by their position in this rank's input, which the
    same reader and rank count reproduce); removed documents go to `exclusion_writer`, with why."""

    name = "datakit dedup filter"
    type = "🫂 - DEDUP"

    def __init__(self, folder: str, exclusion_writer: DiskWriter | None = None):
        super().__init__()
        self.folder, self.exclusion_writer = folder, exclusion_writer

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        table = pq.read_table(_rank_file(self.folder, REMOVALS, rank))
        gone = {r: (reason, dup, sim) for r, reason, dup, sim in zip(*(table.column(c).to_pylist() for c in table.column_names), strict=True)}
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
