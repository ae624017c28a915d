"""Keep packed examples from attending to each other, whatever the attention implementation.

- FlashAttention (2 or 3): the batch is one flattened row; `cu_seq_lens` tell the varlen kernel where each example
  starts, so no mask exists and no padding is computed.
- FlexAttention: a BlockMask built from segment ids; blocks that cross examples are skipped, not computed.
- SDPA / eager: an explicit block-diagonal causal mask (B, 1, L, L), boolean for SDPA, additive for eager.

The mask is always built here and passed as 4D, never left to transformers' own detection of packed
position ids: that detection is skipped whenever the model creates a KV cache (use_cache defaults to on),
which silently lets examples see each other.
"""

from __future__ import annotations

from typing import Any

import torch

VARLEN = ("flash_attention_2", "flash_attention_3")


def block_causal_mask(segment_ids: torch.Tensor) -> torch.Tensor:
    """(B, 1, L, L) boolean: token q sees token k when k <= q and both belong to the same example."""
    length = segment_ids.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool, device=segment_ids.device).tril()
    same = segment_ids[:, :, None] == segment_ids[:, None, :]
    return (same & causal)[:, None]


def _flex_block_mask(segment_ids: torch.Tensor) -> Any:
    from torch.nn.attention.flex_attention import create_block_mask

    def document_causal(b, h, q, k):  # noqa: ANN001 - signature fixed by FlexAttention
        return (segment_ids[b, q] == segment_ids[b, k]) & (k <= q)

    batch, length = segment_ids.shape
    return create_block_mask(document_causal, batch, None, length, length, device=segment_ids.device)


def attention_inputs(batch: dict[str, Any], implementation: str, dtype: torch.dtype) -> dict[str, Any]:
    """Model keyword arguments (besides input_ids) that keep the batch's examples apart."""
    position_ids = batch["position_ids"]
    if implementation in VARLEN:
        lengths = torch.tensor(batch["example_lengths"], dtype=torch.int32, device=position_ids.device)
        cu = torch.nn.functional.pad(lengths.cumsum(0, dtype=torch.int32), (1, 0))
        longest = max(batch["example_lengths"])
        return {"position_ids": position_ids, "cu_seq_lens_q": cu, "cu_seq_lens_k": cu,
                "max_length_q": longest, "max_length_k": longest}
    segment_ids = batch["segment_ids"]
    if implementation == "flex_attention":
        return {"position_ids": position_ids, "attention_mask": _flex_block_mask(segment_ids)}
    mask = block_causal_mask(segment_ids)
    if implementation == "eager":
        mask = torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, torch.finfo(dtype).min)
    return {"position_ids": position_ids, "attention_mask": mask}
