"""FLOPs from the model config and real sequence lengths, MFU, the logged window of steps, and where it goes.

Training FLOPs of a step (forward + backward, no recomputation counted):
- matrix multiplies: 2 FLOPs per weight per token forward, 4 backward. Full fine-tuning: 6 * N per token.
  LoRA: frozen weights need no weight gradient, so 4 * N, plus 6 per adapter weight.
  The lm_head (hidden x vocab) counts only for labelled tokens, the only ones projected (see model.CausalLMLoss).
- attention scores and values: for an example of s tokens, QK^T and AV cost 2 * 2 * s^2/2 * heads * head_dim per
  layer forward (causal: half the square), times 3 for training. Packed examples count their own s, not the row's.
The other convention, "6N" (`six_n`): 6 x (decoder + lm_head weights) per token, attention and LoRA ignored, the
head counted for every token. It is what most papers and trainers report; both are logged (`mfu`, `mfu_6n`).
"""

from __future__ import annotations

import json
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch


@dataclass(frozen=True)
class FlopCounter:
    body_params: int  # weights of the decoder's matrix multiplies (all layers)
    head_params: int  # hidden x vocab
    attn_width: int  # heads * head_dim
    layers: int
    adapter_params: int = 0  # trainable LoRA weights (0 for full fine-tuning)
    lora: bool = False

    @classmethod
    def from_config(cls, config: Any, lora: bool = False, adapter_params: int = 0) -> FlopCounter:
        hidden, layers = config.hidden_size, config.num_hidden_layers
        heads = config.num_attention_heads
        kv_heads = getattr(config, "num_key_value_heads", None) or heads
        head_dim = getattr(config, "head_dim", None) or hidden // heads
        ffn = config.intermediate_size
        # q and o: hidden x heads*head_dim; k and v: hidden x kv_heads*head_dim; gated MLP (gate, up, down) as in
        # the Llama family (Mistral, Qwen, Gemma too). Dense models only: no mixture-of-experts routing.
        per_layer = 2 * hidden * heads * head_dim + 2 * hidden * kv_heads * head_dim + 3 * hidden * ffn
        return cls(body_params=layers * per_layer, head_params=hidden * config.vocab_size,
                   attn_width=heads * head_dim, layers=layers, adapter_params=adapter_params, lora=lora)

    def six_n(self, tokens: int) -> float:
        """The 6N convention's training FLOPs for `tokens` tokens."""
        return 6.0 * (self.body_params + self.head_params) * tokens

    def step_flops(self, example_lengths: list[int], target_tokens: int) -> float:
        tokens = sum(example_lengths)
        weight = (4 if self.lora else 6) * self.body_params * tokens + 6 * self.adapter_params * tokens
        head = (4 if self.lora else 6) * self.head_params * target_tokens
        attention = 3 * 2 * self.attn_width * self.layers * sum(s * s for s in example_lengths)
        return float(weight + head + attention)


# Dense bf16 tensor-core peaks (TFLOP/s) by GPU name; extend with the `peak_tflops` setting.
PEAK_TFLOPS = {"H200": 989.0, "H100 SXM": 989.0, "H100 80GB HBM3": 989.0, "H100 NVL": 835.0, "H100 PCIe": 756.0,
               "H100": 989.0, "GH200": 989.0, "B200": 2250.0, "A100": 312.0, "A800": 312.0, "L40S": 362.0,
               "L40": 181.0, "A6000": 155.0, "RTX 4090": 165.0, "A10": 125.0, "L4": 121.0}


def peak_flops(device: torch.device, configured_tflops: float = 0.0) -> float | None:
    """Peak FLOP/s of one device, or None where unknown (CPU): MFU is then not reported."""
    if configured_tflops > 0:
        return configured_tflops * 1e12
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, tflops in PEAK_TFLOPS.items():  # most specific names first
        if key in name:
            return tflops * 1e12
    return None


class MetricsLog:
    """One JSON object per line in output_dir/metrics.jsonl, a line on stdout, TensorBoard scalars on request."""

    def __init__(self, output_dir: Path, enabled: bool, tensorboard: bool = False):
        self.enabled = enabled
        self.path = Path(output_dir) / "metrics.jsonl"
        self.writer = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as e:
                raise SystemExit("tensorboard: true needs the tensorboard package (pip install tensorboard), "
                                 "or set tensorboard: false and read metrics.jsonl") from e
            self.writer = SummaryWriter(str(Path(output_dir) / "tensorboard"))

    def truncate_after(self, step: int) -> None:
        """On resume: forget lines logged after the checkpoint, which the resumed run logs again."""
        if not self.enabled or not self.path.is_file():
            return
        lines = self.path.read_text(encoding="utf-8").splitlines()
        kept = [ln for ln in lines if ln.strip() and json.loads(ln).get("step", 0) <= step]
        self.path.write_text("".join(ln + "\n" for ln in kept), encoding="utf-8")

    def log(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        shown = " ".join(f"{k}={_fmt(v)}" for k, v in record.items() if v is not None)
        print(shown, file=sys.stdout, flush=True)
        if self.writer is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)) and k != "step":
                    self.writer.add_scalar(k, v, record.get("step", 0))
                elif isinstance(v, dict):
                    for sub, x in v.items():
                        self.writer.add_scalar(f"{k}/{sub}", x, record.get("step", 0))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


class MetricsWindow:
    """What the loop sums between two logged steps, and the record it turns into.

    Every rank sums its own micro-batches; `record` all-reduces once, so the logged loss is the mean over every
    target token of the window (not a mean of per-step means) and throughput counts the tokens of all ranks.
    """

    def __init__(self, flops: FlopCounter, peak: float | None, device: torch.device, world: int,
                 all_reduce: Callable[[torch.Tensor], torch.Tensor]):
        self.flops, self.peak, self.device, self.world, self.all_reduce = flops, peak, device, world, all_reduce
        self.reset()

    def reset(self) -> None:
        """A new window: sums at zero, clock started."""
        self.loss = torch.zeros((), dtype=torch.float64, device=self.device)  # summed token losses, on the device
        self.targets, self.tokens, self.slots, self.step_flops = 0, 0, 0, 0.0
        self.restart_clock()

    def restart_clock(self) -> None:
        """Leave the time of evaluation and checkpoints out of the throughput."""
        self.start = time.perf_counter()

    def add(self, micro: list[dict[str, Any]]) -> None:
        """Counts of one finished optimizer step's micro-batches (their losses are added to `loss` as they come)."""
        self.targets += sum(b["targets"] for b in micro)
        self.tokens += sum(b["tokens"] for b in micro)
        self.slots += sum(b["slots"] for b in micro)
        self.step_flops += sum(self.flops.step_flops(b["example_lengths"], b["targets"]) for b in micro)

    def record(self, step: int, lr: float, grad_norm: torch.Tensor, epoch: float) -> dict[str, Any]:
        """Collective. The logged record of the window (over all ranks); starts the next window."""
        sums = torch.stack([self.loss, *(torch.tensor(float(x), dtype=torch.float64, device=self.device)
                                         for x in (self.targets, self.tokens, self.slots, self.step_flops))])
        loss, targets, tokens, slots, step_flops = self.all_reduce(sums).tolist()
        elapsed = time.perf_counter() - self.start
        per_device = elapsed * self.world
        record = {"step": step, "loss": loss / max(targets, 1), "lr": lr,
                  "tokens_per_s": tokens / elapsed, "target_tokens": int(targets),
                  "padding_efficiency": tokens / max(slots, 1), "grad_norm": float(grad_norm),
                  "tflops_per_device": step_flops / per_device / 1e12,
                  "mfu": step_flops / per_device / self.peak if self.peak else None,
                  "mfu_6n": self.flops.six_n(tokens) / per_device / self.peak if self.peak else None,
                  "epoch": epoch, **peak_memory(self.device)}
        self.reset()
        return record


def peak_memory(device: torch.device) -> dict[str, float]:
    """The run's peak so far: GPU memory allocated by torch, or on the CPU the process's peak resident size."""
    if device.type == "cuda":
        return {"peak_mem_gb": round(torch.cuda.max_memory_allocated(device) / 2**30, 2)}
    return {"peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)}
