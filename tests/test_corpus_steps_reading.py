"""The corpus steps' low-memory reading gives the answers of the plain whole-table way.

Exact dedup groups keys with a numpy sort and looks at ids only inside groups; near dedup hashes
each surviving row's bucket per band file by file, a few bands per pass. Both are checked against
the straightforward computation (everything in memory at once) over real work files of a real
build of generated text with planted duplicates (bench/gen_scale.py).
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from datakit.build import BuildOptions, run_build
from datakit.corpus_steps import near_dedup as nd
from datakit.corpus_steps import near_read
from datakit.corpus_steps.exact_dedup import duplicates_among
from datakit.corpus_steps.file_cache import WorkFileCache
from datakit.corpus_steps.run import exact_removal, near_removal, read_corpus_keys
from datakit.recipe import load_recipe
from datakit.workfile import read_keys

ROOT = Path(__file__).resolve().parents[1]


def reference_duplicates(ids: list[str], keys: list[bytes]) -> list[tuple[int, str]]:
    """(position, representative id) of every duplicate: the smallest (id, position) of each key keeps."""
    groups: dict[bytes, list[int]] = {}
    for i, k in enumerate(keys):
        groups.setdefault(k, []).append(i)
    out = []
    for members in groups.values():
        rep = min(members, key=lambda i: (ids[i], i))
        out += [(i, ids[rep]) for i in members if i != rep]
    return sorted(out)


def test_exact_duplicates_match_the_reference_over_chunks_and_offsets():
    rng = random.Random(11)
    pool = [rng.randbytes(16) for _ in range(300)]
    n = 5_000
    keys = [rng.choice(pool) if rng.random() < 0.4 else rng.randbytes(16) for _ in range(n)]
    ids = [f"{rng.randrange(10**6):06d}" for _ in range(n)]  # repeated ids: ties go to the earlier position
    whole = pa.array(keys, pa.binary(16))
    # Chunks of several sizes, one a slice of a larger array (a non-zero offset into its buffer).
    chunked = pa.chunked_array([whole.slice(0, 1_000), pa.concat_arrays([whole, whole]).slice(n + 1_000, 2_500), whole.slice(3_500)])
    positions, originals = duplicates_among(pa.chunked_array([pa.array(ids)]), chunked)
    expected = reference_duplicates(ids, keys)
    assert len(expected) > 1_000
    assert list(zip(positions.tolist(), originals, strict=True)) == expected
    # Variable-width binary of 16-byte values (as datatrove's signature files may hold) reads the same.
    positions2, originals2 = duplicates_among(pa.array(ids), pa.array(keys, pa.binary()))
    assert positions2.tolist() == positions.tolist() and originals2 == originals


@pytest.fixture(scope="module")
def work_files(corpus, tmp_path_factory) -> tuple[list[str], nd.MinHashParams]:
    """A real build of 3,000 generated records (5% planted duplicates, half of them near copies)."""
    sys.path.insert(0, str(ROOT / "bench"))
    from gen_scale import RECIPE, generate

    root = tmp_path_factory.mktemp("scale")
    generate(corpus, root / "in", 3_000)
    (root / "in" / "recipe.yaml").write_text(RECIPE, encoding="utf-8")
    run_build(BuildOptions(recipe=str(root / "in" / "recipe.yaml"), data_dir=str(root / "in"), output=str(root / "out"), workers=1))
    files = sorted(str(p) for p in (root / "out" / ".datakit" / "prepare").glob("*/records/*.parquet"))
    return files, nd.params_for(load_recipe(root / "in" / "recipe.yaml").dedup.near)


def reference_near(files: list[str], alive: np.ndarray, params: nd.MinHashParams) -> list[tuple[int, str, float]]:
    """Near duplicates with every signature in one matrix: (row, representative id, similarity)."""
    table = pa.concat_tables([pq.read_table(f, columns=["id", "_nkey", nd.SIGNATURE]) for f in files])
    index = np.flatnonzero(alive)
    matrix = nd.signature_matrix(table.column(nd.SIGNATURE), params)[index]
    nkey = table.column("_nkey").to_numpy()[index]
    ids = [table.column("id").to_pylist()[g] for g in index]
    found = nd.find_near(lambda b: nd.band_hash(nkey, matrix[:, b * params.rows : (b + 1) * params.rows].T, b),
                         lambda rows: matrix[rows], len(index), ids, params)
    return sorted((int(index[r]), ids[rep], round(s, 3)) for r, (rep, s) in found.items())


@pytest.mark.parametrize("hash_bytes", [1, 1 << 30], ids=["one band a pass", "all bands in one pass"])
def test_near_duplicates_read_file_by_file_match_the_whole_matrix(work_files, monkeypatch, hash_bytes):
    files, params = work_files
    keys = read_keys(files)
    alive = np.ones(keys.num_rows, dtype=bool)
    exact = exact_removal(keys, alive)
    alive[exact.rows] = False
    alive[::13] = False  # rows some other step took out: never read, never matched
    monkeypatch.setattr(near_read, "HASH_BYTES", hash_bytes)
    removal = near_removal(keys, alive, files, params)
    got = list(zip(removal.rows.tolist(), removal.meta["near_duplicate_of"], removal.meta["similarity"], strict=True))
    expected = reference_near(files, alive, params)
    assert len(expected) >= 20  # the planted near copies (and NTREX's own near-identical lines)
    assert got == expected
    assert not alive[removal.rows].size or alive[removal.rows].all()


@pytest.mark.parametrize("budget", [0, 64 << 10, 1 << 30], ids=["nothing kept", "some files kept", "every file kept"])
def test_what_the_cache_kept_gives_the_answers_of_reading_the_files(work_files, budget):
    """Reading by quota's checks read through a WorkFileCache: keys and near duplicates from kept
    files (read again, taken over) are those of reading every file, whatever part of them fits."""
    files, params = work_files
    cache = WorkFileCache(budget)
    keys = read_corpus_keys(files)
    assert read_corpus_keys(files, cache).equals(keys)
    alive = np.ones(keys.num_rows, dtype=bool)
    alive[exact_removal(keys, alive).rows] = False
    expected = reference_near(files, alive, params)
    for _ in range(2):  # the second time from what the first kept
        removal = near_removal(read_corpus_keys(files, cache), alive, files, params, cache)
        got = list(zip(removal.rows.tolist(), removal.meta["near_duplicate_of"], removal.meta["similarity"], strict=True))
        assert got == expected
    assert cache.bytes <= budget
    kept = {0: 0, 1 << 30: 2 * len(files)}.get(budget)  # keys and near columns of each file
    assert len(cache.tables) == kept if kept is not None else 0 < len(cache.tables) < 2 * len(files)
    assert read_corpus_keys(files, cache, take=True).equals(keys)
    assert not any(kind == "keys" for _, kind in cache.tables)  # taken over, no longer kept


def test_a_signature_column_holds_the_matrix_it_was_made_from():
    """One fixed-size binary value per row: the matrix comes back whole, from slices and from
    several chunks alike."""
    params = nd.minhash_params(0.8, 128)
    sigs = np.random.default_rng(5).integers(0, 1 << 16, size=(37, 128), dtype=np.uint16)
    column = nd.signature_array(sigs)
    assert column.type == pa.binary(256) and len(column) == 37
    assert np.array_equal(nd.signature_matrix(column, params), sigs)
    assert np.array_equal(nd.signature_matrix(column.slice(5, 20), params), sigs[5:25])
    chunked = pa.chunked_array([column.slice(0, 10), column.slice(10)])
    assert np.array_equal(nd.signature_matrix(chunked, params), sigs)
    table = pa.table({"s": column})
    assert np.array_equal(nd.signature_matrix(table.take(pa.array([3, 1, 30])).column("s"), params), sigs[[3, 1, 30]])
