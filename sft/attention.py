"""Keep packed examples from attending to each other, whatever the attention implementation.

- Varlen kernels (FlashAttention 2/3 from flash-attn, or `torch_varlen`: torch's own FlashAttention kernels,
  `torch.nn.attention.varlen.varlen_attn`, PyTorch >= 2.10): the batch is one flattened row; `cu_seq_lens` tell the
  kernel where each example starts, so no mask exists and no padding is computed.
- FlexAttention: a BlockMask whose block tables are computed from segment ids on the host (in the prefetch thread),
  not by evaluating a mask function over every (query, key) pair: blocks that cross examples are skipped.
- SDPA / eager: an explicit block-diagonal causal mask (B, 1, L, L), boolean for SDPA, additive for eager. It costs
  L^2 memory and the full L^2 of attention work, so `auto` never picks it on a GPU.

The mask is always built here and passed as 4D (or, for varlen, no mask and cu_seq_lens), never left to
transformers' own detection of packed position ids: that detection is skipped whenever the model creates a KV cache
(use_cache defaults to on), which silently lets examples see each other.

Work is split in two so the training step never waits for the host: `host_inputs` (CPU tensors, pinned, built ahead
of time) and `device_inputs` (the model's keyword arguments, from tensors already on the device).
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

TORCH_VARLEN = "torch_varlen"
VARLEN = ("flash_attention_2", "flash_attention_3", TORCH_VARLEN)  # implementations fed one flattened row
FLEX_BLOCK = 128  # FlexAttention's block size: rows for flex are padded to a multiple of it
DENSE = ("sdpa", "eager")


# ---------------------------------------------------------------- torch's varlen kernel, probed


@functools.cache
def varlen_kernel() -> Callable[..., torch.Tensor] | None:
    """`kernel(q, k, v, cu_seq_lens, max_length, scale)` -> (T, Hq, D), causal within each sequence; None when this
    torch has no `varlen_attn`. Its signature changed between releases (is_causal=True in 2.10, window_size=(-1, 0)
    later; enable_gqa only in some), so the call is built from the signature, not from the version number."""
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return None
    params = inspect.signature(varlen_attn).parameters
    if "window_size" in params:
        causal: dict[str, Any] = {"window_size": (-1, 0)}
    elif "is_causal" in params:
        causal = {"is_causal": True}
    else:
        return None
    native_gqa = "enable_gqa" in params
    takes_scale = "scale" in params

    def kernel(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu: torch.Tensor, max_length: int,
               scale: float | None) -> torch.Tensor:
        extra = dict(causal)
        if k.shape[1] != q.shape[1]:
            if native_gqa:
                extra["enable_gqa"] = True
            else:  # an older kernel: one K/V head per query head
                k, v = (x.repeat_interleave(q.shape[1] // x.shape[1], dim=1) for x in (k, v))
        if scale is not None:
            if takes_scale:
                extra["scale"] = scale
            elif abs(scale - q.shape[-1] ** -0.5) > 1e-6:
                raise RuntimeError("this torch's varlen_attn takes no scale; the model needs one")
        return varlen_attn(q, k, v, cu, cu, max_length, max_length, **extra)

    return kernel


def _reference_varlen(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu: torch.Tensor, max_length: int,
                      scale: float | None) -> torch.Tensor:
    """The same contract as `varlen_kernel()`, one SDPA call per sequence: the probe's yardstick."""
    k, v = (x.repeat_interleave(q.shape[1] // x.shape[1], dim=1) for x in (k, v))
    bounds = cu.tolist()
    out = [torch.nn.functional.scaled_dot_product_attention(
        q[a:b].transpose(0, 1), k[a:b].transpose(0, 1), v[a:b].transpose(0, 1), is_causal=True, scale=scale)
        for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    return torch.cat(out, dim=1).transpose(0, 1)


@functools.cache
def varlen_works(device_index: int) -> bool:
    """Run the kernel once, forward and backward, on a tiny GQA batch and compare with SDPA per sequence: the only
    reliable test of a kernel that depends on the torch build and the GPU generation."""
    kernel = varlen_kernel()
    if kernel is None:
        return False
    device = torch.device("cuda", device_index)
    try:
        gen = torch.Generator(device=device).manual_seed(0)
        q, k, v = (torch.randn(40, h, 64, device=device, dtype=torch.bfloat16, generator=gen).requires_grad_()
                   for h in (4, 2, 2))
        cu = torch.tensor([0, 7, 30, 40], dtype=torch.int32, device=device)
        out = kernel(q, k, v, cu, 23, None)
        out.float().square().sum().backward()
        want = _reference_varlen(q.float(), k.float(), v.float(), cu, 23, None)
        return bool(torch.allclose(out.float(), want, atol=3e-2, rtol=3e-2)) and q.grad is not None
    except (RuntimeError, TypeError, ValueError, NotImplementedError):
        return False


def _torch_varlen_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                            attention_mask: Any, scaling: float | None = None, dropout: float = 0.0,
                            **kwargs: Any) -> tuple[torch.Tensor, None]:
    """transformers' attention-function contract: q/k/v (1, H, T, D) of one flattened row -> (1, T, H, D)."""
    if query.shape[0] != 1:
        raise ValueError("torch_varlen takes one flattened row; collate with flatten=True")
    dtype = query.dtype
    kernel = (varlen_kernel() if query.is_cuda else None) or _reference_varlen  # the kernel is CUDA-only
    if query.is_cuda and dtype == torch.float32:  # fp32 master weights: RoPE left q/k in fp32; the kernel is 16-bit
        dtype = torch.get_autocast_dtype("cuda") if torch.is_autocast_enabled("cuda") else torch.bfloat16
    q, k, v = (x[0].transpose(0, 1).to(dtype).contiguous() for x in (query, key, value))
    out = kernel(q, k, v, kwargs["cu_seq_lens_q"], kwargs["max_length_q"], scaling)
    return out.to(query.dtype).unsqueeze(0), None


@functools.cache
def register_torch_varlen() -> None:
    """Make `attn_implementation="torch_varlen"` a transformers attention implementation. It has no mask function,
    so transformers builds no mask for it (it only does for the implementations it knows)."""
    from transformers import AttentionInterface

    AttentionInterface.register(TORCH_VARLEN, _torch_varlen_attention)


def pick_attention(requested: str, device: torch.device) -> str:
    """auto on a GPU: FlashAttention 2 where flash-attn is installed, else torch's varlen kernels where they run here,
    else FlexAttention; never a dense mask. On the CPU: SDPA with the block mask (no kernel above runs there)."""
    if requested == "auto":
        if device.type != "cuda":
            requested = "sdpa"
        elif importlib.util.find_spec("flash_attn") is not None:
            requested = "flash_attention_2"
        elif varlen_works(device.index or 0):
            requested = TORCH_VARLEN
        else:
            requested = "flex_attention"
    if requested == TORCH_VARLEN:
        register_torch_varlen()
    return requested


# ---------------------------------------------------------------- masks


def block_causal_mask(segment_ids: torch.Tensor) -> torch.Tensor:
    """(B, 1, L, L) boolean: token q sees token k when k <= q and both belong to the same example."""
    length = segment_ids.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool, device=segment_ids.device).tril()
    same = segment_ids[:, :, None] == segment_ids[:, None, :]
    return (same & causal)[:, None]


def flex_block_tables(segment_ids: np.ndarray, block: int = FLEX_BLOCK) -> dict[str, torch.Tensor]:
    """Which (query block, key block) pairs a packed row needs, from its segment ids, without touching a single
    (query, key) pair. Segments never decrease along a row (padding, -1, sits at the end and is ranked last), so a
    key block before the query block shares an example with it only when its last segment is the query block's
    first; it is *full* (no mask needed inside) when both blocks lie in that one example, *partial* otherwise.
    Returns int32 tables in `BlockMask.from_kv_blocks`' layout (B, 1, n) and (B, 1, n, n)."""
    batch, length = segment_ids.shape
    if length % block:
        raise ValueError(f"flex rows must be a multiple of {block} tokens wide; got {length}")
    seg = np.where(segment_ids < 0, np.iinfo(np.int64).max, segment_ids).reshape(batch, length // block, block)
    lo, hi = seg.min(-1), seg.max(-1)  # (B, n)
    q_lo, q_hi, k_lo, k_hi = lo[:, :, None], hi[:, :, None], lo[:, None, :], hi[:, None, :]
    n = length // block
    below = np.tri(n, dtype=bool)  # key block j <= query block i
    touch = below & (k_hi >= q_lo) & (k_lo <= q_hi)
    full = touch & ~np.eye(n, dtype=bool) & (k_lo == k_hi) & (q_lo == q_hi) & (k_lo == q_lo)
    partial = touch & ~full

    def tables(which: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        count = which.sum(-1).astype(np.int32)[:, None]
        order = np.argsort(~which, axis=-1, kind="stable").astype(np.int32)[:, None]  # chosen blocks first, in order
        return torch.from_numpy(count), torch.from_numpy(np.ascontiguousarray(order))

    (kv_num, kv_idx), (full_num, full_idx) = tables(partial), tables(full)
    return {"flex_kv_num": kv_num, "flex_kv_idx": kv_idx, "flex_full_num": full_num, "flex_full_idx": full_idx}


def flex_block_mask(tables: dict[str, torch.Tensor], segment_ids: torch.Tensor) -> Any:
    """The BlockMask of precomputed tables (on the device); the mask function only runs inside partial blocks."""
    from torch.nn.attention.flex_attention import BlockMask

    def document_causal(b, h, q, k):  # noqa: ANN001, ANN202 - signature fixed by FlexAttention
        return (segment_ids[b, q] == segment_ids[b, k]) & (k <= q)

    length = segment_ids.shape[1]
    return BlockMask.from_kv_blocks(tables["flex_kv_num"], tables["flex_kv_idx"], tables["flex_full_num"],
                                    tables["flex_full_idx"], BLOCK_SIZE=FLEX_BLOCK, mask_mod=document_causal,
                                    seq_lengths=(length, length))


# ---------------------------------------------------------------- model inputs


def host_inputs(batch: dict[str, Any], implementation: str) -> dict[str, torch.Tensor]:
    """CPU tensors the implementation needs beyond the collated batch (built ahead of the step, then pinned)."""
    if implementation == "flex_attention":
        return flex_block_tables(batch["segment_ids"].cpu().numpy())
    return {}


def device_inputs(batch: dict[str, Any], implementation: str, dtype: torch.dtype) -> dict[str, Any]:
    """Model keyword arguments (besides input_ids) that keep the batch's examples apart; tensors already on the
    device, so nothing here waits for the host or copies from it."""
    position_ids = batch["position_ids"]
    if implementation in VARLEN:
        cu, longest = batch["cu_seq_lens"], batch["max_length"]
        return {"position_ids": position_ids, "cu_seq_lens_q": cu, "cu_seq_lens_k": cu,
                "max_length_q": longest, "max_length_k": longest}
    segment_ids = batch["segment_ids"]
    if implementation == "flex_attention":
        return {"position_ids": position_ids, "attention_mask": flex_block_mask(batch, segment_ids)}
    mask = block_causal_mask(segment_ids)
    if implementation == "eager":
        mask = torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, torch.finfo(dtype).min)
    return {"position_ids": position_ids, "attention_mask": mask}


def attention_inputs(batch: dict[str, Any], implementation: str, dtype: torch.dtype) -> dict[str, Any]:
    """Both steps at once, on the batch's own device (tests, one-off forwards)."""
    device = batch["input_ids"].device
    host = {k: v.to(device) for k, v in host_inputs(batch, implementation).items()}
    return device_inputs({**batch, **host}, implementation, dtype)
