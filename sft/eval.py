"""Evaluation: loss on held-out data (token-weighted over all ranks), and chrF of greedy translations per language."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import torch

from sft.templates import ChatFormat


@torch.no_grad()
def eval_loss(module: torch.nn.Module, batches: list[dict[str, Any]], forward: Callable[..., torch.Tensor],
              all_reduce: Callable[[torch.Tensor], torch.Tensor], device: torch.device, langs: list[str]
              ) -> dict[str, Any]:
    """Mean loss over every target token of the eval set, and per language (of the example a token belongs to).
    Each rank passes its batches (same count on every rank: FSDP needs every rank in every forward); a batch with
    `"weight": 0` runs but is not counted. One all-reduce at the end."""
    module.eval()
    n = len(langs)
    loss_sums = torch.zeros(n, dtype=torch.float64, device=device)
    counts = np.zeros(n, dtype=np.float64)  # targets per language, known on the host
    for batch in batches:
        token_losses = forward(batch, per_token=True)
        if batch.get("weight", 1):
            loss_sums.index_add_(0, batch["target_langs"].to(device), token_losses.double())
            counts += np.bincount(batch["target_langs"].numpy(), minlength=n)
    module.train()
    total = all_reduce(torch.cat([loss_sums, torch.from_numpy(counts).to(device)])).tolist()
    sums, tokens = total[:n], total[n:]
    by_lang = {lang: s / c for lang, s, c in zip(langs, sums, tokens, strict=True) if c}
    return {"eval_loss": sum(sums) / sum(tokens) if sum(tokens) else float("nan"), "eval_tokens": int(sum(tokens)),
            "eval_loss_by_lang": by_lang}


def translation_pairs(files: list[Path], per_lang: int, seed: int, rows: np.ndarray | None = None
                      ) -> list[dict[str, Any]]:
    """Up to per_lang translation records per target language: the prompt turns, the reference answer, the language.

    `rows` restricts to those row numbers (over `files` in order), e.g. examples held out of training.
    """
    columns = ["messages", "task", "tgt_lang", "lang"]
    tables = [pq.read_table(f, columns=[c for c in columns if c in pq.read_schema(f).names]) for f in files]
    records = [r for t in tables for r in t.to_pylist()]
    if rows is not None:
        records = [records[i] for i in rows]
    by_lang: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        if r.get("task") != "translation" or not r.get("messages") or r["messages"][-1]["role"] != "assistant":
            continue
        lang = r.get("tgt_lang") or r.get("lang") or "und"
        by_lang.setdefault(lang, []).append({"messages": r["messages"][:-1], "reference": r["messages"][-1]["content"],
                                             "lang": lang})
    rng = np.random.default_rng(seed)
    picked = []
    for lang in sorted(by_lang):
        items = by_lang[lang]
        for i in sorted(rng.permutation(len(items))[:per_lang]):
            picked.append(items[i])
    return picked


@torch.no_grad()
def generate(model: Any, tokenizer: Any, fmt: ChatFormat, conversations: list[list[dict]], device: torch.device,
             max_new_tokens: int, batch_size: int = 8) -> list[str]:
    """Greedy answers to the last user turn of each conversation, stopping at the format's end of turn."""
    stop = [tokenizer.convert_tokens_to_ids(fmt.end_of_turn), tokenizer.eos_token_id]
    stop = [s for s in stop if isinstance(s, int) and s >= 0]
    was_training, side = model.training, tokenizer.padding_side
    model.eval()
    tokenizer.padding_side = "left"
    answers: list[str] = []
    try:
        for lo in range(0, len(conversations), batch_size):
            prompts = [fmt.prompt(tokenizer, messages) for messages in conversations[lo:lo + batch_size]]
            enc = tokenizer(prompts, add_special_tokens=False, return_tensors="pt", padding=True).to(device)
            out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, use_cache=True,
                                 eos_token_id=stop, pad_token_id=tokenizer.pad_token_id)
            answers += [t.strip() for t in tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:],
                                                                   skip_special_tokens=True)]
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    return answers


def chrf_by_language(pairs: list[dict[str, Any]], hypotheses: list[str]) -> dict[str, float]:
    """sacrebleu's chrF of the hypotheses against the references, per target language."""
    from sacrebleu.metrics import CHRF

    scores: dict[str, float] = {}
    for lang in sorted({p["lang"] for p in pairs}):
        idx = [i for i, p in enumerate(pairs) if p["lang"] == lang]
        scores[lang] = round(CHRF().corpus_score([hypotheses[i] for i in idx],
                                                 [[pairs[i]["reference"] for i in idx]]).score, 2)
    return scores
