"""The loss of a step is the mean over every target token of the global batch, however the batch is split."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import sft_tiny
import torch
import yaml
from safetensors.torch import load_file
from sft_tiny import ROOT, train_config

from sft.data import collate, load_tokenized, resolve_dataset
from sft.model import CausalLMLoss
from sft.templates import resolve_format
from sft.train import train

# fixtures shared by the sft test modules (sft_tiny)
one_thread = sft_tiny.one_thread
synthetic_shard = sft_tiny.synthetic_shard
tiny = sft_tiny.tiny


def losses(records):
    return [r["loss"] for r in records if "loss" in r]


def adapter(run_dir):
    return load_file(run_dir / "final" / "adapter_model.safetensors")


def grad_norms(records):
    return [r["grad_norm"] for r in records if "loss" in r]


def eval_losses(records):
    return [r["eval_loss"] for r in records if "eval_loss" in r]


def assert_same_weights(a, b, lr, steps, atol=2e-3):
    """The same adapter, up to what Adam does to float noise. Two runs that sum a step's gradient in another order
    (batch 8 vs 8 x 1, two ranks) differ by rounding, ~1e-7 relative. Adam's update is about lr * g / |g|: where
    the true gradient is ~0, the rounding noise alone decides its sign, and that element moves by up to 2 lr per
    step in one run and not in the other (measured: 1 element of 16,384 off by 0.011 after 3 steps at lr 2e-2).
    So: no element beyond Adam's bound, at most 0.1% beyond atol, all the rest within atol. A wrong export or a
    wrong gradient breaks far more. That the differing elements do not matter is checked in function space: the
    loss is flat along them (that is why their gradient was ~0), so the final eval losses agree (see callers)."""
    assert a.keys() == b.keys()
    total = off = 0
    for k in a:
        diff = (a[k] - b[k]).abs()
        assert diff.max() <= 2 * lr * steps, k
        total, off = total + diff.numel(), off + int((diff > atol + 1e-5 * b[k].abs()).sum())
    assert off <= total / 1000, f"{off} of {total} adapter weights differ by more than {atol}"


def test_summed_loss_over_global_token_count_beats_per_batch_means(tiny, synthetic_shard, tmp_path, one_thread):
    """Gradients of batch 8 = gradients of 8 micro-batches of 1, each divided by the step's token count."""
    from transformers import AutoModelForCausalLM

    tset, _ = load_tokenized(resolve_dataset(str(synthetic_shard), ["swh_Latn"]), "train", tiny.tokenizer,
                             resolve_format("model", tiny.tokenizer), tmp_path)
    rows = [np.array([i]) for i in range(8)]
    module = CausalLMLoss(AutoModelForCausalLM.from_pretrained(tiny.model, attn_implementation="eager"))
    pad = tiny.tokenizer.pad_token_id

    def grads(micro_rows, per_batch_mean=False):
        module.zero_grad()
        micro = [collate(tset, r, pad) for r in micro_rows]
        total = sum(b["targets"] for b in micro)
        for b in micro:
            from sft.attention import attention_inputs

            loss = module(input_ids=b["input_ids"], labels=b["labels"],
                          **attention_inputs(b, "eager", torch.float32))
            (loss / b["targets"] / len(micro) if per_batch_mean else loss / total).backward()
        return torch.cat([p.grad.flatten() for p in module.parameters()])

    whole = grads([rows])
    split = grads([[r] for r in rows])
    naive = grads([[r] for r in rows], per_batch_mean=True)
    torch.testing.assert_close(split, whole, atol=1e-6, rtol=1e-4)
    assert (naive - whole).abs().max() > 100 * (split - whole).abs().max()  # the usual mistake shows


def test_chunked_loss_equals_one_projection(tiny, synthetic_shard, tmp_path, one_thread):
    """The loss projected in chunks of 7 labelled tokens (recomputed in backward) = all labelled tokens at once:
    same sum, same per-token losses, same gradients, also through a LoRA-adapted lm_head."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from sft.attention import attention_inputs

    tset, _ = load_tokenized(resolve_dataset(str(synthetic_shard), ["swh_Latn"]), "train", tiny.tokenizer,
                             resolve_format("model", tiny.tokenizer), tmp_path)
    batch = collate(tset, [np.arange(6)], tiny.tokenizer.pad_token_id)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny.model, attn_implementation="sdpa"),
                           LoraConfig(r=4, target_modules=["q_proj", "down_proj", "lm_head"], init_lora_weights=False))
    vocab = model.config.vocab_size

    def run(chunk_logits):
        module = CausalLMLoss(model, chunk_logits=chunk_logits)
        model.zero_grad()
        inputs = {k: batch[k] for k in ("input_ids", "target_positions", "target_ids")}
        loss = module(**inputs, **attention_inputs(batch, "sdpa", torch.float32))
        loss.backward()
        with torch.no_grad():
            per_token = module(**inputs, per_token=True, **attention_inputs(batch, "sdpa", torch.float32))
        grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.requires_grad])
        return module.chunk_tokens, loss.detach(), per_token, grads

    n_one, whole, whole_tokens, whole_grads = run(2**27)
    n_chunk, chunked, chunked_tokens, chunked_grads = run(7 * vocab)
    assert n_one >= batch["targets"] and n_chunk == 7 and batch["targets"] > 5 * 7  # really several chunks
    torch.testing.assert_close(chunked, whole, rtol=1e-6, atol=1e-4)
    torch.testing.assert_close(chunked_tokens, whole_tokens)
    assert whole_tokens.shape == (batch["targets"],) and whole_tokens.sum().item() == pytest.approx(whole.item(), 1e-6)
    torch.testing.assert_close(chunked_grads, whole_grads, rtol=1e-4, atol=1e-6)


def test_batch_8_equals_batch_1_times_accum_8(tiny, synthetic_shard, tmp_path, one_thread):
    common = {"packing": False, "max_steps": 3, "lr": 2e-2}
    one = train(train_config(tiny, synthetic_shard, tmp_path / "a", batch_size=8, grad_accum=1, **common))
    acc = train(train_config(tiny, synthetic_shard, tmp_path / "b", batch_size=1, grad_accum=8, **common))
    assert losses(one) == pytest.approx(losses(acc), rel=1e-5)
    assert grad_norms(one) == pytest.approx(grad_norms(acc), rel=1e-4)  # the same gradient, step after step
    assert losses(one)[0] != pytest.approx(losses(one)[-1], rel=1e-3)  # training moved the weights
    assert eval_losses(one) == pytest.approx(eval_losses(acc), rel=1e-5)  # the final weights, in function space
    assert_same_weights(adapter(tmp_path / "a" / "run"), adapter(tmp_path / "b" / "run"), lr=2e-2, steps=3)


def test_gradient_checkpointing_with_lora_changes_nothing(tiny, synthetic_shard, tmp_path, one_thread):
    plain = train(train_config(tiny, synthetic_shard, tmp_path / "a", max_steps=2, lr=2e-2))
    ckpt = train(train_config(tiny, synthetic_shard, tmp_path / "b", max_steps=2, lr=2e-2, grad_checkpointing=True))
    assert losses(plain) == pytest.approx(losses(ckpt), rel=1e-6)
    assert grad_norms(plain) == pytest.approx(grad_norms(ckpt), rel=1e-5)
    assert_same_weights(adapter(tmp_path / "a" / "run"), adapter(tmp_path / "b" / "run"), lr=2e-2, steps=2)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("distributed", ["ddp", "fsdp"])
def test_two_ranks_equal_one_process(tiny, synthetic_shard, tmp_path, distributed):
    """torchrun with 2 CPU ranks (gloo), batch 4 each == one process with batch 8: same losses, same adapter.
    FSDP shards every decoder layer over the two ranks; DDP replicates."""
    common = {"packing": True, "max_steps": 3, "lr": 2e-2, "distributed": distributed}
    single = train(train_config(tiny, synthetic_shard, tmp_path / "one", batch_size=8, **common))
    chrf = {"chrf_samples": 3, "chrf_max_new_tokens": 4} if distributed == "ddp" else {}  # prompts split over ranks
    cfg = train_config(tiny, synthetic_shard, tmp_path / "two", batch_size=4, **common, **chrf).to_dict()
    cfg_path = tmp_path / "two.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
                           "-m", "sft.train", "--config", str(cfg_path)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    two = [json.loads(line) for line in (tmp_path / "two" / "run" / "metrics.jsonl").read_text().splitlines()]
    assert losses(single) == pytest.approx(losses(two), rel=1e-5)
    assert grad_norms(single) == pytest.approx(grad_norms(two), rel=1e-4)
    assert [r["target_tokens"] for r in single if "loss" in r] == [r["target_tokens"] for r in two if "loss" in r]
    assert eval_losses(single) == pytest.approx(eval_losses(two), rel=1e-5)
    assert_same_weights(adapter(tmp_path / "one" / "run"), adapter(tmp_path / "two" / "run"), lr=2e-2, steps=3)
    if chrf:
        assert set(next(r for r in reversed(two) if "chrf" in r)["chrf"]) == {"swh_Latn", "yor_Latn"}
