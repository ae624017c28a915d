"""Shards -> tokens (cached) -> packed rows -> batches."""

from __future__ import annotations

import time

import numpy as np
import pytest
import sft_tiny
import torch
from sft_tiny import train_config

from sft.data import (
    IGNORE,
    Batches,
    DataError,
    TokenizedSet,
    cache_key,
    collate,
    language_mix,
    load_tokenized,
    pack,
    resolve_dataset,
    row_width,
)
from sft.templates import resolve_format
from sft.train import train

# fixtures shared by the sft test modules (sft_tiny)
datakit_shard = sft_tiny.datakit_shard
synthetic_shard = sft_tiny.synthetic_shard
tiny = sft_tiny.tiny


def test_configs_select_languages_and_splits(synthetic_shard):
    every = resolve_dataset(str(synthetic_shard), ["default"])
    assert [p.parent.name for p in every.splits["train"]] == ["swh_Latn", "yor_Latn"]
    assert set(every.splits) == {"train", "validation"}
    one = resolve_dataset(str(synthetic_shard), ["yor_Latn"])
    assert [p.parent.name for p in one.splits["train"]] == ["yor_Latn"]
    both = resolve_dataset(str(synthetic_shard), ["default", "swh_Latn"])  # overlapping configs: each file once
    assert len(both.splits["train"]) == 2
    with pytest.raises(DataError, match="no config 'fra_Latn'.*swh_Latn"):
        resolve_dataset(str(synthetic_shard), ["fra_Latn"])


def test_real_datakit_output_is_read(datakit_shard, tiny, tmp_path):
    files = resolve_dataset(str(datakit_shard), ["swh_Latn"])
    assert files.splits["train"] and all(p.suffix == ".parquet" for p in files.splits["train"])
    fmt = resolve_format("model", tiny.tokenizer)
    tset, _ = load_tokenized(files, "train", tiny.tokenizer, fmt, tmp_path)
    assert len(tset) > 10 and tset.langs == ["swh_Latn"]
    assert (tset.trained_counts() > 0).all()


def tokenized_folders(cache):
    return [p for p in cache.iterdir() if (p / "meta.json").is_file()]


def test_tokenized_split_is_cached_by_tokenizer_template_and_files(synthetic_shard, tiny, tmp_path):
    files = resolve_dataset(str(synthetic_shard), ["default"])
    fmt = resolve_format("model", tiny.tokenizer)
    t0 = time.perf_counter()
    first, hit = load_tokenized(files, "train", tiny.tokenizer, fmt, tmp_path)
    cold = time.perf_counter() - t0
    assert not hit
    folders = tokenized_folders(tmp_path)
    stamp = (folders[0] / "ids.npy").stat().st_mtime_ns
    t0 = time.perf_counter()
    second, hit = load_tokenized(files, "train", tiny.tokenizer, fmt, tmp_path)
    assert hit and time.perf_counter() - t0 < cold
    assert (folders[0] / "ids.npy").stat().st_mtime_ns == stamp  # read, not rewritten
    assert np.array_equal(first.ids, second.ids) and np.array_equal(first.trained, second.trained)
    # another template is another key
    _, hit = load_tokenized(files, "train", tiny.tokenizer, resolve_format("bayling", tiny.tokenizer), tmp_path)
    assert not hit and len(tokenized_folders(tmp_path)) == 2


def test_empty_dataset_after_filtering_is_a_clear_error(synthetic_shard, tiny, tmp_path):
    # seq_len 8 cuts every example before its answer starts: nothing is left to train on
    with pytest.raises(DataError, match="no training examples left.*seq_len 8"):
        train(train_config(tiny, synthetic_shard, tmp_path, seq_len=8))


def _toy_set(lengths: list[int], seed: int = 0) -> TokenizedSet:
    rng = np.random.default_rng(seed)
    total = sum(lengths)
    trained = rng.random(total) < 0.5
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    trained[starts] = False  # an example starts with its prompt
    return TokenizedSet(ids=rng.integers(3, 100, total).astype(np.int32), trained=trained, starts=starts,
                        lengths=np.asarray(lengths), rows=np.arange(len(lengths)),
                        lang_ids=np.zeros(len(lengths), np.int32), langs=["und"])


def test_packing_keeps_every_example_once_in_rows_that_fit():
    lengths = np.random.default_rng(1).integers(5, 300, 2000)
    rows = pack(lengths, 512, seed=3)
    placed = np.sort(np.concatenate(rows))
    assert np.array_equal(placed, np.arange(len(lengths)))
    assert max(lengths[r].sum() for r in rows) <= 512
    assert lengths.sum() / (len(rows) * 512) > 0.95  # best-fit decreasing leaves little room unused
    again = pack(lengths, 512, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(rows, again, strict=True))


def test_collate_restarts_positions_and_masks_each_first_label():
    tset = _toy_set([5, 3, 4, 6])
    batch = collate(tset, [np.array([0, 1]), np.array([2, 3])], pad_id=0, width=16)
    assert batch["input_ids"].shape == (2, 16)  # 10 tokens, padded to the asked width
    assert batch["position_ids"][0, :8].tolist() == [0, 1, 2, 3, 4, 0, 1, 2]
    assert batch["segment_ids"][0].tolist() == [0] * 5 + [1] * 3 + [-1] * 8
    for b, row in enumerate([[0, 1], [2, 3]]):
        t = 0
        for ex in row:
            ids, trained = tset.example(ex)
            labels = batch["labels"][b, t:t + len(ids)].tolist()
            assert labels[0] == IGNORE
            assert labels[1:] == [i if tr else IGNORE for i, tr in zip(ids[1:], trained[1:], strict=True)]
            t += len(ids)
        assert (batch["labels"][b, t:] == IGNORE).all()
    # the host lists every labelled position and its target: what the loss gathers, with no device round trip
    shifted = torch.nn.functional.pad(batch["labels"][:, 1:], (0, 1), value=IGNORE).flatten()
    assert batch["target_positions"].tolist() == (shifted != IGNORE).nonzero().flatten().tolist()
    assert batch["target_ids"].tolist() == shifted[shifted != IGNORE].tolist() and batch["targets"] == len(
        batch["target_ids"])
    assert sum(tset.take(np.arange(4)).target_counts()) == batch["targets"]  # a step's count, known beforehand
    flat = collate(tset, [np.array([0, 1]), np.array([2, 3])], pad_id=0, flatten=True)
    assert flat["input_ids"].shape == (1, 18) and flat["slots"] == flat["tokens"] == 18
    assert flat["position_ids"][0].tolist() == [*range(5), *range(3), *range(4), *range(6)]
    assert flat["cu_seq_lens"].tolist() == [0, 5, 8, 12, 18] and flat["max_length"] == 6
    padded = collate(tset, [np.array([0, 1]), np.array([2, 3])], pad_id=0, flatten=True, width=32)
    assert padded["cu_seq_lens"].tolist() == [0, 5, 8, 12, 18, 32]  # padding: a sequence of its own
    assert padded["max_length"] == 14 and padded["targets"] == flat["targets"] and padded["tokens"] == 18


def test_row_widths_take_few_distinct_values():
    """Packed rows (nearly full) always get seq_len; short ones a power of two: few shapes, few recompiles."""
    assert {row_width(n, 4096) for n in range(2049, 4097)} == {4096}
    assert {row_width(n, 4096) for n in range(1, 4097)} == {8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096}
    assert row_width(1000, 4000, multiple=128) == 1024 and row_width(3000, 4000, multiple=128) == 4096


def test_a_step_trains_on_the_same_rows_however_it_is_split():
    rows = [np.array([i]) for i in range(50)]

    def step_rows(batch_size, accum, world, step):
        got = []
        for rank in range(world):
            for micro in Batches(rows, batch_size, accum, world, rank, seed=5).micro_batches(step):
                got += [int(r[0]) for r in micro]
        return sorted(got)

    for step in (0, 3, 7):  # 6 steps per epoch of 8 rows: step 7 is in the second epoch
        assert step_rows(8, 1, 1, step) == step_rows(1, 8, 1, step) == step_rows(4, 1, 2, step) == \
            step_rows(2, 2, 2, step)
    assert step_rows(8, 1, 1, 0) != step_rows(8, 1, 1, 6)  # each epoch reshuffles
    with pytest.raises(DataError, match="cannot fill one optimizer step"):
        Batches(rows, 32, 2, 1, 0, seed=5)


def test_hub_id_reads_from_a_mirror_folder_and_fails_clearly_offline(synthetic_shard, tmp_path):
    mirror = tmp_path / "mirror"
    (mirror / "org").mkdir(parents=True)
    (mirror / "org" / "bayling-data").symlink_to(synthetic_shard, target_is_directory=True)
    files = resolve_dataset("org/bayling-data", ["yor_Latn"], mirror=str(mirror))
    assert [p.parent.name for p in files.splits["train"]] == ["yor_Latn"]
    with pytest.raises(DataError, match="neither a local folder nor a reachable Hub dataset"):
        resolve_dataset("org/not-mirrored", ["default"], mirror=str(mirror))  # HF_HUB_OFFLINE=1 in tests


def test_processes_take_turns_on_a_file_lock_and_one_tokenizes(synthetic_shard, tiny, tmp_path):
    """Ranks tokenizing the same split meet at a file lock, not in a collective: one tokenizes, the others read its
    cache. flock conflicts between separately opened files, so threads stand in for processes here."""
    from concurrent.futures import ThreadPoolExecutor

    from sft.data import file_lock

    files = resolve_dataset(str(synthetic_shard), ["default"])
    fmt = resolve_format("model", tiny.tokenizer)
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda _: load_tokenized(files, "train", tiny.tokenizer, fmt, tmp_path,
                                                         log=lambda _: None), range(3)))
    assert sorted(hit for _, hit in results) == [False, True, True]
    assert all(np.array_equal(results[0][0].ids, tset.ids) for tset, _ in results)
    # a holder that never lets go: the waiter gives up after its explicit timeout and says why
    other = resolve_format("bayling", tiny.tokenizer)
    key = cache_key(files, "train", tiny.tokenizer, other)
    with file_lock(tmp_path / ".locks" / key, 1, "test"):
        t0 = time.perf_counter()
        with pytest.raises(DataError, match="waited 0.3 s .* another process is still tokenizing train"):
            load_tokenized(files, "train", tiny.tokenizer, other, tmp_path, timeout_s=0.3)
        assert time.perf_counter() - t0 < 5


def test_language_mix_follows_n_to_the_one_over_t_or_weights():
    lang_ids = np.repeat([0, 1, 2], [800, 150, 50]).astype(np.int32)
    tset = TokenizedSet(ids=np.zeros(1000, np.int32), trained=np.ones(1000, bool), starts=np.arange(1000),
                        lengths=np.ones(1000, np.int64), rows=np.arange(1000), lang_ids=lang_ids,
                        langs=["eng_Latn", "swh_Latn", "yor_Latn"])
    same, mix = language_mix(tset, 1.0, {}, seed=0)
    assert len(same) == 1000 and [m["sampled"] for m in mix.values()] == [800, 150, 50]
    flat, mix = language_mix(tset, 3.0, {}, seed=0)
    want = np.array([800, 150, 50]) ** (1 / 3)
    assert [m["sampled"] for m in mix.values()] == pytest.approx(list(1000 * want / want.sum()), abs=1)
    assert len(flat) == 1000 and sum(m["sampled"] for m in mix.values()) == 1000
    got = np.bincount(flat.lang_ids, minlength=3)
    assert got.tolist() == [m["sampled"] for m in mix.values()]
    yor = flat.rows[flat.lang_ids == 2]
    assert len(set(yor.tolist())) == 50 and len(yor) > 50  # every yor_Latn example, some twice
    assert np.array_equal(language_mix(tset, 3.0, {}, seed=0)[0].rows, flat.rows)  # a pure function of the seed
    weighted, mix = language_mix(tset, 1.0, {"swh_Latn": 3, "yor_Latn": 1}, seed=0)
    assert [m["sampled"] for m in mix.values()] == [0, 750, 250] and len(weighted) == 1000
    with pytest.raises(DataError, match="language_weights names fra_Latn"):
        language_mix(tset, 1.0, {"fra_Latn": 1}, seed=0)
