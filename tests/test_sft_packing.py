"""Packing changes nothing but speed: packed loss equals unpacked loss; a leaking mask would not."""

from __future__ import annotations

import numpy as np
import pytest
import sft_tiny
import torch

from sft.attention import attention_inputs, block_causal_mask
from sft.data import collate, load_tokenized, pack, resolve_dataset
from sft.model import CausalLMLoss
from sft.templates import resolve_format

# fixtures shared by the sft test modules (sft_tiny)
one_thread = sft_tiny.one_thread
synthetic_shard = sft_tiny.synthetic_shard
tiny = sft_tiny.tiny


@pytest.fixture(scope="module")
def examples(synthetic_shard, tiny, tmp_path_factory):
    files = resolve_dataset(str(synthetic_shard), ["swh_Latn"])
    tset, _ = load_tokenized(files, "train", tiny.tokenizer, resolve_format("model", tiny.tokenizer),
                             tmp_path_factory.mktemp("cache"))
    return tset.take(np.arange(24))


def loss_module(tiny, implementation: str) -> CausalLMLoss:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny.model, attn_implementation=implementation)
    return CausalLMLoss(model).eval()


def summed_loss(module, tset, rows, implementation, pad_id, mask=None) -> tuple[float, int]:
    batch = collate(tset, rows, pad_id)
    inputs = attention_inputs(batch, implementation, torch.float32)
    if mask is not None:
        inputs["attention_mask"] = mask(batch)
    with torch.no_grad():
        loss = module(input_ids=batch["input_ids"], labels=batch["labels"], **inputs)
    return float(loss), batch["targets"]


@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
def test_packed_loss_equals_unpacked_loss(tiny, examples, implementation, one_thread):
    module = loss_module(tiny, implementation)
    pad = tiny.tokenizer.pad_token_id
    packed_rows = pack(examples.lengths, 256, seed=0)
    assert max(len(r) for r in packed_rows) >= 3  # several examples share a row
    unpacked_rows = [np.array([i]) for i in range(len(examples))]
    packed, n_packed = summed_loss(module, examples, packed_rows, implementation, pad)
    unpacked, n_unpacked = summed_loss(module, examples, unpacked_rows, implementation, pad)
    assert n_packed == n_unpacked  # the same target tokens: no label predicts across examples
    assert packed / n_packed == pytest.approx(unpacked / n_unpacked, abs=1e-5)
    print(f"{implementation}: packed {packed / n_packed:.7f} unpacked {unpacked / n_unpacked:.7f} "
          f"over {n_packed} targets in {len(packed_rows)} rows vs {len(unpacked_rows)}")

    # The same packed rows with a plain causal mask let examples attend to their predecessors: the loss moves.
    def causal(batch):
        length = batch["input_ids"].shape[1]
        plain = torch.ones(length, length, dtype=torch.bool).tril()[None, None]
        if implementation == "eager":
            return torch.zeros(plain.shape).masked_fill(~plain, torch.finfo(torch.float32).min)
        return plain

    leaking, _ = summed_loss(module, examples, packed_rows, implementation, pad, mask=causal)
    print(f"{implementation}: leaking mask {leaking / n_packed:.7f}")
    assert abs(leaking - packed) / n_packed > 1e-3


def test_flash_attention_gets_one_unpadded_row_with_example_boundaries(examples):
    rows = pack(examples.lengths, 256, seed=0)[:2]
    batch = collate(examples, rows, pad_id=0, flatten=True)
    inputs = attention_inputs(batch, "flash_attention_2", torch.bfloat16)
    lengths = [int(examples.lengths[i]) for row in rows for i in row]
    assert batch["input_ids"].shape == (1, sum(lengths)) and "attention_mask" not in inputs
    assert inputs["cu_seq_lens_q"].tolist() == np.concatenate([[0], np.cumsum(lengths)]).tolist()
    assert inputs["max_length_q"] == max(lengths)
    starts = inputs["cu_seq_lens_q"][:-1].long()
    assert (inputs["position_ids"][0, starts] == 0).all() and (batch["labels"][0, starts] == -100).all()


def test_block_mask_is_causal_within_examples_only():
    segments = torch.tensor([[0, 0, 1, 1, 1, -1]])
    mask = block_causal_mask(segments)[0, 0]
    assert mask.tolist() == [
        [True, False, False, False, False, False],
        [True, True, False, False, False, False],
        [False, False, True, False, False, False],
        [False, False, True, True, False, False],
        [False, False, True, True, True, False],
        [False, False, False, False, False, True],  # padding sees only padding: no all-masked row, no NaN
    ]
