"""The model: load it, add LoRA or not, wrap the summed-token loss, and shard or replicate it over GPUs."""

from __future__ import annotations

import contextlib
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from sft.config import Config
from sft.data import IGNORE

# Logits computed at once in the loss: 2^27 of them is 1,046 tokens at Llama-3's 128,256-token vocabulary,
# 0.5 GB in fp32, instead of 4 GB (and as much again for their gradient) for 8k labelled tokens.
LOSS_CHUNK_LOGITS = 2**27


class ModelError(ValueError):
    """The model cannot be trained as configured (e.g. its tokenizer belongs to another model)."""


def load_tokenizer(cfg: Config) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(cfg.tokenizer or cfg.model)
    if tokenizer.pad_token_id is None:  # padding is never a label, any id will do
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(cfg: Config, tokenizer: Any, attention: str, param_dtype: torch.dtype) -> nn.Module:
    """AutoModelForCausalLM (+ peft LoRA), gradient checkpointing on request. Stays on the CPU until wrapped."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(cfg.model, dtype=param_dtype, attn_implementation=attention)
    rows = model.get_input_embeddings().weight.shape[0]
    if len(tokenizer) > rows:
        raise ModelError(f"model/tokenizer mismatch: the tokenizer has {len(tokenizer)} tokens but {cfg.model} has "
                         f"{rows} embedding rows; use the tokenizer that came with the model")
    model.config.use_cache = False
    if cfg.grad_checkpointing:
        # Non-reentrant checkpointing also works for LoRA, whose frozen inputs carry no gradient.
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if cfg.method == "lora":
        from peft import LoraConfig, get_peft_model

        targets = cfg.lora_targets[0] if cfg.lora_targets == ["all-linear"] else cfg.lora_targets
        lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                          target_modules=targets, task_type="CAUSAL_LM")
        model = get_peft_model(model, lora)
    return model


def _logit_transform(config: Any):
    """Output scalings some architectures apply after lm_head (identity for Llama, Qwen, Mistral)."""
    softcap = getattr(config, "final_logit_softcapping", None)
    scale = getattr(config, "logit_scale", None)  # Cohere multiplies
    divide = getattr(config, "logits_scaling", None)  # Granite divides

    def apply(logits: torch.Tensor) -> torch.Tensor:
        if scale:
            logits = logits * scale
        if divide:
            logits = logits / divide
        if softcap:
            logits = torch.tanh(logits / softcap) * softcap
        return logits

    return apply


def label_targets(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(flat positions, target ids) of the labelled positions of HF-style labels. Asks the device for the count:
    the training loop gets both from `collate` instead, computed on the host."""
    shifted = F.pad(labels[:, 1:], (0, 1), value=IGNORE)  # position t predicts token t+1
    positions = (shifted.flatten() != IGNORE).nonzero().squeeze(1)
    return positions, shifted.flatten()[positions]


class CausalLMLoss(nn.Module):
    """One forward for DDP/FSDP: decoder -> hidden states of labelled positions only -> lm_head -> summed CE.

    Returns the *sum* of token losses (or, with per_token, each target's loss); the loop divides by the number of
    target tokens of the whole global batch. Projecting only the labelled positions onto the vocabulary skips the
    prompt tokens' logits, often half the lm_head work. The projection runs in chunks of `chunk_logits` logits; in
    training each chunk is recomputed in backward (activation checkpointing), so only one chunk's fp32 logits and
    their gradient exist at a time. That works for any head: plain, LoRA-adapted, sharded by FSDP.
    """

    def __init__(self, model: nn.Module, chunk_logits: int = LOSS_CHUNK_LOGITS):
        super().__init__()
        self.model = model
        self._transform = _logit_transform(model.config)
        self.chunk_tokens = max(1, chunk_logits // model.config.vocab_size)

    def _token_losses(self, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits = self._transform(self.model.get_output_embeddings()(hidden))
        return F.cross_entropy(logits.float(), targets, reduction="none")

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor | None = None,
                target_positions: torch.Tensor | None = None, target_ids: torch.Tensor | None = None,
                per_token: bool = False, **attention: Any) -> torch.Tensor:
        hidden = self.model.get_decoder()(input_ids=input_ids, use_cache=False, **attention).last_hidden_state
        if target_positions is None:
            target_positions, target_ids = label_targets(labels)
        hidden = hidden.flatten(0, 1).index_select(0, target_positions)
        n, step = len(target_positions), self.chunk_tokens
        recompute = torch.is_grad_enabled() and n > step
        losses = []
        for lo in range(0, max(n, 1), step):
            h, t = hidden[lo:lo + step], target_ids[lo:lo + step]
            losses.append(checkpoint(self._token_losses, h, t, use_reentrant=False) if recompute
                          else self._token_losses(h, t))
        if per_token:
            return torch.cat(losses)
        return torch.stack([x.sum() for x in losses]).sum()


def wrap(module: CausalLMLoss, cfg: Config, device: torch.device, world: int, bf16: bool) -> nn.Module:
    """Move to the device; under torchrun replicate (DDP) or shard every decoder layer (FSDP2)."""
    if world > 1 and cfg.distributed == "fsdp":
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if bf16 else None
        kwargs = {"mp_policy": policy} if policy else {}
        for layer in module.model.get_decoder().layers:
            fully_shard(layer.to(device), **kwargs)
        fully_shard(module.to(device), **kwargs)
        return module
    module.to(device)
    if cfg.compile:
        for layer in module.model.get_decoder().layers:
            layer.compile(dynamic=True)
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)
    return module


def unwrap(module: nn.Module) -> CausalLMLoss:
    return module.module if hasattr(module, "no_sync") and hasattr(module, "module") else module


def gradient_sync(module: nn.Module, sync: bool) -> contextlib.AbstractContextManager:
    """Skip the gradient all-reduce on all but the last micro-batch of a step."""
    if hasattr(module, "set_requires_gradient_sync"):  # FSDP2
        module.set_requires_gradient_sync(sync)
        return contextlib.nullcontext()
    if hasattr(module, "no_sync") and not sync:  # DDP
        return module.no_sync()
    return contextlib.nullcontext()


def trainable_parameters(module: nn.Module) -> list[nn.Parameter]:
    return [p for p in module.parameters() if p.requires_grad]


def make_optimizer(module: nn.Module, cfg: Config, device: torch.device) -> torch.optim.Optimizer:
    """AdamW; weight decay on matrices only (never norms, biases)."""
    params = trainable_parameters(module)
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.lr, betas=(cfg.adam_beta1, cfg.adam_beta2),
                             fused=device.type == "cuda")


def lr_lambda(cfg: Config, total_steps: int):
    """Linear warmup, then cosine from 1 down to min_lr_ratio at the last step."""
    import math

    def factor(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        span = max(total_steps - cfg.warmup_steps - 1, 1)
        progress = min((step - cfg.warmup_steps) / span, 1.0)
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor
