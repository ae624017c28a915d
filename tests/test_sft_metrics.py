"""FLOPs counted from the config match the model's real matrix sizes; MFU needs a known peak."""

from __future__ import annotations

import torch

from sft.metrics import FlopCounter, MetricsWindow, peak_flops

LLAMA3_8B = {"hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
             "num_key_value_heads": 8, "vocab_size": 128256, "tie_word_embeddings": False}


def test_weight_count_of_llama3_8b_from_its_config():
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(**LLAMA3_8B)
    with torch.device("meta"):  # sizes without memory
        model = LlamaForCausalLM(config)
    linear = sum(m.weight.numel() for m in model.model.layers.modules() if isinstance(m, torch.nn.Linear))
    counter = FlopCounter.from_config(config)
    assert counter.body_params == linear  # 6.98e9
    assert counter.head_params == model.lm_head.weight.numel()


def test_step_flops_use_real_example_lengths():
    c = FlopCounter(body_params=1000, head_params=100, attn_width=8, layers=2)
    # two packed examples of 3 and 5 tokens, 4 of them labelled: attention counts 3^2 + 5^2, not 8^2
    assert c.step_flops([3, 5], 4) == 6 * 1000 * 8 + 6 * 100 * 4 + 3 * 2 * 8 * 2 * (9 + 25)
    lora = FlopCounter(body_params=1000, head_params=100, attn_width=8, layers=2, adapter_params=10, lora=True)
    assert lora.step_flops([8], 4) == 4 * 1000 * 8 + 6 * 10 * 8 + 4 * 100 * 4 + 3 * 2 * 8 * 2 * 64


def test_peak_is_configured_or_known():
    assert peak_flops(torch.device("cpu")) is None  # no MFU on the CPU unless told the peak
    assert peak_flops(torch.device("cpu"), configured_tflops=100) == 1e14


def test_metrics_window_is_token_weighted_and_starts_afresh_after_each_record():
    c = FlopCounter(body_params=1000, head_params=100, attn_width=8, layers=2)
    window = MetricsWindow(c, peak=None, device=torch.device("cpu"), world=1, all_reduce=lambda t: t)
    micro = [{"targets": 2, "tokens": 6, "slots": 8, "example_lengths": [6]},
             {"targets": 6, "tokens": 8, "slots": 8, "example_lengths": [3, 5]}]
    window.loss += 2.0 + 18.0  # summed token losses of the two micro-batches
    window.add(micro)
    first = window.record(step=1, lr=0.1, grad_norm=torch.tensor(0.5), epoch=0.5)
    assert first["loss"] == 20.0 / 8  # over all target tokens, not the mean of the micro-batches' means
    assert (first["target_tokens"], first["padding_efficiency"], first["mfu"]) == (8, 14 / 16, None)
    window.add(micro[:1])
    window.loss += 4.0
    second = window.record(step=2, lr=0.1, grad_norm=torch.tensor(0.5), epoch=1.0)
    assert (second["loss"], second["target_tokens"]) == (2.0, 2)  # nothing of the first window left
