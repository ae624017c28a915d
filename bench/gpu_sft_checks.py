"""sft's CUDA-only paths, checked on a real GPU in about a minute: `python bench/gpu_sft_checks.py [--out DIR]`.

1. The attention auto picks here, and torch's varlen kernel: its probed signature, and whether it runs.
2. Packed loss == unpacked loss on every path that runs on this GPU (torch_varlen, flex_attention, flash_attention_2
   where installed, sdpa with the dense mask), bf16 autocast on fp32 weights as in full fine-tuning, and the
   gradients of torch_varlen / flex against sdpa's.
3. Chunked cross-entropy: the same loss, and the peak memory of the loss with and without chunks at Llama-3's
   vocabulary.
4. Host syncs of a training step (forward, backward, clipping, fused AdamW) counted by torch's sync debug mode.
Each check prints PASS/FAIL; the summary goes to DIR/gpu_sft_checks.json. Exit status 1 if any check fails.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sft.attention import VARLEN, attention_inputs, pick_attention, varlen_kernel, varlen_works  # noqa: E402
from sft.data import TokenizedSet, collate, pack, row_width  # noqa: E402
from sft.model import CausalLMLoss  # noqa: E402

RESULTS: dict[str, Any] = {}


def check(name: str, ok: bool, detail: str) -> None:
    RESULTS[name] = {"ok": bool(ok), "detail": detail}
    print(f"{'PASS' if ok else 'FAIL'} {name}: {detail}", flush=True)


def toy_examples(n: int, vocab: int, seed: int = 0) -> TokenizedSet:
    """n random examples of 16..700 tokens, the second half of each one trained."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(16, 700, n)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    trained = np.concatenate([np.arange(k) >= k // 2 for k in lengths])
    return TokenizedSet(ids=rng.integers(0, vocab, int(lengths.sum())).astype(np.int32), trained=trained,
                        starts=starts, lengths=lengths, rows=np.arange(n), lang_ids=np.zeros(n, np.int32),
                        langs=["und"])


def small_llama(vocab: int, implementation: str) -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=vocab, hidden_size=1024, intermediate_size=2816, num_hidden_layers=4,
                         num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=4096)
    torch.manual_seed(0)
    return LlamaForCausalLM._from_config(config, attn_implementation=implementation).cuda()


def batch_loss(module: CausalLMLoss, tset: TokenizedSet, rows: list[np.ndarray], implementation: str,
               backward: bool = False) -> tuple[float, int, torch.Tensor | None]:
    flat = implementation in VARLEN
    sizes = [int(tset.lengths[r].sum()) for r in rows]
    needed, cap = (sum(sizes), 2048 * len(rows)) if flat else (max(sizes), 2048)
    batch = collate(tset, rows, 0, flatten=flat, width=row_width(needed, cap, 128 if implementation ==
                                                                                   "flex_attention" else 8))
    batch = {k: v.cuda() if torch.is_tensor(v) else v for k, v in batch.items()}
    module.zero_grad()
    with torch.autocast("cuda", dtype=torch.bfloat16), torch.set_grad_enabled(backward):
        loss = module(input_ids=batch["input_ids"], target_positions=batch["target_positions"],
                      target_ids=batch["target_ids"], **attention_inputs(batch, implementation, torch.bfloat16))
    grad = None
    if backward:
        (loss / batch["targets"]).backward()
        grad = torch.cat([p.grad.flatten() for p in module.parameters() if p.grad is not None]).float()
    return float(loss), batch["targets"], grad


def attention_paths() -> None:
    from importlib.util import find_spec

    kernel = varlen_kernel()
    signature = ""
    if kernel is not None:
        from torch.nn.attention.varlen import varlen_attn

        signature = str(inspect.signature(varlen_attn))
    works = varlen_works(torch.cuda.current_device())
    auto = pick_attention("auto", torch.device("cuda", torch.cuda.current_device()))
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}; varlen_attn{signature or ' missing'}; "
          f"runs: {works}; flash_attn: {find_spec('flash_attn') is not None}; auto -> {auto}", flush=True)
    check("auto_is_not_dense", auto not in ("sdpa", "eager"), f"auto picks {auto}")
    paths = ["sdpa", "flex_attention"] + (["torch_varlen"] if works else []) + (
        ["flash_attention_2"] if find_spec("flash_attn") else [])
    vocab = 32000
    tset = toy_examples(40, vocab)
    packed = pack(tset.lengths, 2048, seed=0)[:4]
    examples = [np.array([i]) for row in packed for i in row]
    reference = CausalLMLoss(small_llama(vocab, "sdpa"))
    state = reference.model.state_dict()
    total, count = 0.0, 0
    for i in range(0, len(examples), 8):  # unpacked, one example per row, 8 rows per forward
        loss, n, _ = batch_loss(reference, tset, examples[i:i + 8], "sdpa")
        total, count = total + loss, count + n
    unpacked = total / count
    _, _, sdpa_grad = batch_loss(reference, tset, packed, "sdpa", backward=True)
    for implementation in paths:
        t0 = time.perf_counter()
        module = CausalLMLoss(small_llama(vocab, pick_attention(implementation, torch.device("cuda"))))
        module.model.load_state_dict(state)
        loss, n, grad = batch_loss(module, tset, packed, implementation, backward=True)
        cos = float(torch.nn.functional.cosine_similarity(grad, sdpa_grad, dim=0))
        rel = float((grad - sdpa_grad).norm() / sdpa_grad.norm())
        check(f"packed_equals_unpacked[{implementation}]", abs(loss / n - unpacked) < 2e-2 and cos > 0.999,
              f"packed {loss / n:.5f} vs unpacked {unpacked:.5f} over {n} targets; grad vs sdpa: cosine {cos:.6f}, "
              f"relative difference {rel:.4f} ({time.perf_counter() - t0:.1f} s incl. compile)")
        del module
        torch.cuda.empty_cache()


def chunked_loss() -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=128256, hidden_size=1024, intermediate_size=2816, num_hidden_layers=1,
                         num_attention_heads=8, num_key_value_heads=2)
    torch.manual_seed(0)
    model = LlamaForCausalLM._from_config(config, attn_implementation="sdpa").cuda().to(torch.bfloat16)
    ids = torch.randint(0, 128256, (1, 8192), device="cuda")
    labels = ids.clone()
    results = {}
    for name, chunk in (("one projection", 2**40), ("chunked", 2**27)):
        module = CausalLMLoss(model, chunk_logits=chunk)
        model.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        loss = module(input_ids=ids, labels=labels)
        loss.backward()
        torch.cuda.synchronize()
        results[name] = (float(loss), (torch.cuda.max_memory_allocated() - base) / 2**30)
    (whole, whole_gb), (chunked, chunked_gb) = results["one projection"], results["chunked"]
    check("chunked_loss", abs(chunked - whole) / abs(whole) < 1e-3 and chunked_gb < whole_gb / 2,
          f"8,192 labelled tokens, vocabulary 128,256: loss {chunked:.2f} vs {whole:.2f}; peak above the weights "
          f"{chunked_gb:.2f} GiB chunked vs {whole_gb:.2f} GiB in one projection")


def host_syncs() -> None:
    """Steps 2..4 of a loop as sft.train runs it, counted by torch.cuda's sync debug mode (warn)."""
    from sft.config import load_config
    from sft.train import make_forward, make_micro_batch

    cfg = load_config(None, {"model": "x", "data": "x", "seq_len": 2048, "batch_size": 2})
    implementation = pick_attention("auto", torch.device("cuda"))
    module = CausalLMLoss(small_llama(32000, implementation))
    tset = toy_examples(60, 32000)
    rows = pack(tset.lengths, 2048, seed=0)
    micro_batch = make_micro_batch(cfg, implementation, 0, torch.device("cuda"))
    forward = make_forward(module, implementation, True, torch.device("cuda"))
    params = [p for p in module.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-5, fused=True)
    batches = [micro_batch(tset, rows[2 * s:2 * s + 2]) for s in range(4)]
    counted = []
    for s, batch in enumerate(batches):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn" if s else "default")
            loss = forward(batch)
            (loss * (1.0 / batch["targets"])).backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            torch.cuda.set_sync_debug_mode("default")
        if s:
            counted += [str(w.message).splitlines()[0] for w in caught if "synchroniz" in str(w.message)]
    torch.cuda.synchronize()
    check("no_host_syncs_per_step", not counted, f"{len(counted)} synchronizing calls in 3 steps ({implementation})"
          + (f": {sorted(set(counted))[:3]}" if counted else ""))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(ROOT / "bench" / "results"), help="folder for gpu_sft_checks.json")
    args = p.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU: these checks are the GPU half of tests/test_sft_packing.py")
    for step in (attention_paths, chunked_loss, host_syncs):
        try:
            step()
        except Exception as e:  # one broken path must not hide the others' results
            check(step.__name__, False, f"{type(e).__name__}: {str(e)[:400]}")
        torch.cuda.empty_cache()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_sft_checks.json").write_text(json.dumps({"device": torch.cuda.get_device_name(),
                                                         "torch": torch.__version__, "checks": RESULTS}, indent=1))
    sys.exit(0 if all(r["ok"] for r in RESULTS.values()) else 1)


if __name__ == "__main__":
    main()
