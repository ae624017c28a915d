"""Packing changes nothing but speed: packed loss equals unpacked loss, on every attention path; a leaking mask
would not. On the CPU, FlexAttention runs torch's eager reference of the same BlockMask semantics and torch_varlen
runs its per-sequence SDPA stand-in behind the very adapter the GPU kernel sits behind; the kernels themselves are
checked where a GPU is (`bench/gpu_sft_checks.py`, and the probe-gated test below)."""

from __future__ import annotations

import numpy as np
import pytest
import sft_tiny
import torch

from sft.attention import (
    FLEX_BLOCK,
    VARLEN,
    attention_inputs,
    block_causal_mask,
    flex_block_tables,
    pick_attention,
    varlen_works,
)
from sft.data import collate, load_tokenized, pack, resolve_dataset, row_width
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


@pytest.fixture
def eager_flex(monkeypatch):
    """FlexAttention without torch.compile: the eager reference applies the same BlockMask in a second, where
    compiling the kernel on a CPU takes twenty."""
    import transformers.integrations.flex_attention as hf_flex
    from torch.nn.attention.flex_attention import flex_attention

    monkeypatch.setattr(hf_flex.WrappedFlexAttention, "__call__", lambda self: flex_attention)


def loss_module(tiny, implementation: str) -> CausalLMLoss:
    from transformers import AutoModelForCausalLM

    implementation = pick_attention(implementation, torch.device("cpu"))  # registers torch_varlen
    model = AutoModelForCausalLM.from_pretrained(tiny.model, attn_implementation=implementation)
    return CausalLMLoss(model).eval()


def summed_loss(module, tset, rows, implementation, pad_id, mask=None) -> tuple[float, int]:
    """Collated as training collates for that implementation: one flat row for varlen, 128-multiples for flex."""
    flat = implementation in VARLEN
    sizes = [int(tset.lengths[r].sum()) for r in rows]
    needed, cap = (sum(sizes), 256 * len(rows)) if flat else (max(sizes), 256)
    width = row_width(needed, cap, FLEX_BLOCK if implementation == "flex_attention" else 8)
    batch = collate(tset, rows, pad_id, flatten=flat, width=width)
    inputs = attention_inputs(batch, implementation, torch.float32)
    if mask is not None:
        inputs["attention_mask"] = mask(batch)
    with torch.no_grad():
        loss = module(input_ids=batch["input_ids"], labels=batch["labels"], **inputs)
    return float(loss), batch["targets"]


@pytest.mark.parametrize("implementation", ["sdpa", "eager", "flex_attention", "torch_varlen"])
def test_packed_loss_equals_unpacked_loss(tiny, examples, implementation, one_thread, eager_flex):
    module = loss_module(tiny, implementation)
    pad = tiny.tokenizer.pad_token_id
    packed_rows = pack(examples.lengths, 256, seed=0)
    assert max(len(r) for r in packed_rows) >= 3  # several examples share a row
    unpacked_rows = [np.array([i]) for i in range(len(examples))]
    packed, n_packed = summed_loss(module, examples, packed_rows, implementation, pad)
    unpacked, n_unpacked = summed_loss(loss_module(tiny, "sdpa"), examples, unpacked_rows, "sdpa", pad)
    assert n_packed == n_unpacked  # the same target tokens: no label predicts across examples
    assert packed / n_packed == pytest.approx(unpacked / n_unpacked, abs=1e-5)
    print(f"{implementation}: packed {packed / n_packed:.7f} unpacked {unpacked / n_unpacked:.7f} "
          f"over {n_packed} targets in {len(packed_rows)} rows vs {len(unpacked_rows)}")
    if implementation not in ("sdpa", "eager"):
        return

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


def test_flex_block_tables_give_the_block_causal_mask():
    """The BlockMask built from block tables + the in-block mask function sees exactly what the dense mask sees:
    examples spanning several blocks, several examples in one block, padding at the end."""
    from sft.attention import flex_block_mask

    lengths = [300, 5, 7, 120, 1, 60, 200]  # 693 tokens in a row of 768: 75 padding
    segments = torch.full((2, 768), -1)
    t = 0
    for k, n in enumerate(lengths):
        segments[0, t:t + n] = k
        t += n
    segments[1, :768] = 0  # one example filling the row: every block below the diagonal is full
    tables = flex_block_tables(segments.numpy())
    block = flex_block_mask(tables, segments)
    dense = block.to_dense()[:, 0].bool()  # (B, n, n) blocks: partial or full
    q = torch.arange(768)
    for b in range(2):
        want = block_causal_mask(segments[b:b + 1])[0, 0]
        got = torch.zeros(768, 768, dtype=torch.bool)
        full = torch.zeros_like(dense[b])
        for i in range(6):
            full[i, tables["flex_full_idx"][b, 0, i, :tables["flex_full_num"][b, 0, i]].long()] = True
        for i in range(6):
            for j in range(6):
                rows, cols = slice(i * 128, (i + 1) * 128), slice(j * 128, (j + 1) * 128)
                if full[i, j]:
                    got[rows, cols] = True
                elif dense[b, i, j]:
                    got[rows, cols] = (segments[b, rows, None] == segments[b, None, cols]) & (
                        q[cols][None] <= q[rows][:, None])
        assert torch.equal(got, want)
    assert int(tables["flex_full_num"][1, 0].sum()) == 15  # 6 x 5 / 2 blocks strictly below the diagonal
    assert int(tables["flex_kv_num"][0, 0].sum()) < 21  # blocks of other examples are skipped, not masked


@pytest.mark.skipif(not (torch.cuda.is_available() and varlen_works(0)), reason="torch's varlen kernel needs a GPU")
def test_torch_varlen_kernel_matches_sdpa_per_sequence_on_gpu():
    from sft.attention import _reference_varlen, varlen_kernel

    gen = torch.Generator(device="cuda").manual_seed(0)
    q, k, v = (torch.randn(700, h, 128, device="cuda", dtype=torch.bfloat16, generator=gen) for h in (32, 8, 8))
    cu = torch.tensor([0, 300, 305, 500, 700], dtype=torch.int32, device="cuda")
    got = varlen_kernel()(q, k, v, cu, 300, None)
    torch.testing.assert_close(got.float(), _reference_varlen(q.float(), k.float(), v.float(), cu, 300, None),
                               atol=2e-2, rtol=2e-2)
