"""sft on real-size shapes on one NVIDIA GPU, against TRL's SFTTrainer on the same model, data and settings.

    python bench/bench_sft_gpu.py                       # Llama-3-8B shapes, bf16, packed rows of 4096 tokens
    python bench/bench_sft_gpu.py --sft-attn auto --trl-attn best --skip full --steps 10
    python bench/bench_sft_gpu.py --no-trl              # sft only (also what happens when trl is not installed)
    python bench/bench_sft_gpu.py --tiny                # CPU smoke test of the whole script (seconds)

What runs, each in this one process on the same random-weight model and the same examples, in this order (runs that
would not fit --time-budget are reported as skipped, and the table is rewritten after every run):
1. LoRA (r=16, alpha 32, all linear layers of all 32 layers; frozen base in bf16) with `sft.train.train` and with
   `trl.SFTTrainer`, each on its best available attention path: sft `auto` (flash-attn if installed, else torch's
   varlen kernels, else FlexAttention) and TRL `best` (flash_attention_2 with flash-attn, else SDPA, what TRL runs
   by default: its padding-free packing then makes transformers build one (1, 1, B*L, B*L) mask).
2. Full fine-tuning (fp32 master weights + AdamW state, bf16 autocast) on as many decoder layers as fit the GPU
   (`--full-layers auto` starts from an estimate and drops two layers per out-of-memory of sft), sft then TRL.
3. Both tools on FlexAttention (`flex_attention`): the same attention kernel for both.
The model has Llama-3-8B's config (hidden 4096, 32 heads / 8 KV heads, FFN 14336, vocabulary 128256), no
download: weights are random and the tokenizer is a word-level vocabulary of 128256 tokens "t0".."t128255",
so the examples (random token ids, 64-2048 tokens, about half of each example is the answer) go through the real
path: a datakit-shaped shard -> sft's chat format (bayling3 = Llama-3 headers) -> tokens -> packing. TRL gets the
very token ids and labels sft trained on, packs them its own way (BFD, padding-free).
Printed per run: tokens/s (real tokens, not padding), MFU in two conventions, peak memory, the sft/TRL ratio:
- MFU (datakit): FLOPs of the real sequence lengths (attention per example), the lm_head only where there is a
  label, LoRA as 4N + 6 x adapter; the same FLOPs per token for TRL (same data).
- MFU (6N): 6 x (decoder + lm_head weights) per token, whatever the method: the convention most reports use.
Results go to OUT/sft_gpu.json and OUT/sft_gpu.md (--out, default bench/results).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib.util
import io
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sft.attention import pick_attention  # noqa: E402
from sft.config import load_config  # noqa: E402
from sft.data import load_tokenized, resolve_dataset  # noqa: E402
from sft.metrics import FlopCounter, peak_flops  # noqa: E402
from sft.templates import resolve_format  # noqa: E402
from sft.train import train  # noqa: E402

LLAMA3_8B = {"hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
             "num_key_value_heads": 8, "vocab_size": 128256, "rope_theta": 500000.0, "max_position_embeddings": 8192,
             "rms_norm_eps": 1e-5, "tie_word_embeddings": False}
TINY = {**LLAMA3_8B, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "vocab_size": 1000}
SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<pad>"]
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def build_tokenizer(folder: Path, vocab: int):
    """Word-level: "t<i>" is token i, so random ids written as text come back as exactly those ids."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    roles = ["system", "user", "assistant"]  # the header words of the Llama-3 format
    plain = vocab - len(SPECIALS) - len(roles)
    words = {f"t{i}": i for i in range(plain)}
    words.update({w: plain + k for k, w in enumerate(roles + SPECIALS)})
    tok = Tokenizer(models.WordLevel(words, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>",
                                   pad_token="<pad>")
    fast.add_special_tokens({"additional_special_tokens": SPECIALS})
    fast.save_pretrained(folder)
    return fast


def write_shard(folder: Path, n: int, max_len: int, vocab: int, seed: int) -> None:
    """A datakit-shaped output folder of n random conversations, lengths log-uniform in [64, max_len]."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        total = int(math.exp(rng.uniform(math.log(64), math.log(max_len))))
        answer = max(4, int(total * rng.uniform(0.3, 0.7)))
        words = [f"t{t}" for t in rng.integers(0, vocab - len(SPECIALS) - 3, total)]
        rows.append({"id": f"{i:032x}", "lang": "swh_Latn", "task": "general", "messages": [
            {"role": "user", "content": " ".join(words[answer:])},
            {"role": "assistant", "content": " ".join(words[:answer])}]})
    (folder / "data" / "swh_Latn").mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), folder / "data" / "swh_Latn" / "train-00000-of-00001.parquet")


def save_model(folder: Path, shapes: dict, layers: int, tokenizer, device: torch.device) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(**{**shapes, "num_hidden_layers": layers}, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    del model
    free()


def free() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def examples_of(work: Path, seq_len: int) -> tuple[Any, list[tuple[np.ndarray, np.ndarray]]]:
    """The tokenizer and the examples sft trains on, cut to seq_len (from sft's own cache of the shard)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(work / "tokenizer")
    fmt = resolve_format("bayling3", tokenizer, system_prompt="")
    tset, _ = load_tokenized(resolve_dataset(str(work / "shard"), ["default"]), "train", tokenizer, fmt,
                             work / "cache", log=lambda _: None)
    tset, _ = tset.truncated(seq_len)
    return tokenizer, [tset.example(i) for i in range(len(tset))]


def flops_per_token(shapes: dict, layers: int, method: str, examples: list, adapter_params: int) -> dict[str, float]:
    """Training FLOPs per real token of this data, both conventions (see the module docstring)."""
    from transformers import LlamaConfig

    counter = FlopCounter.from_config(LlamaConfig(**{**shapes, "num_hidden_layers": layers}), lora=method == "lora",
                                      adapter_params=adapter_params)
    lengths = [len(ids) for ids, _ in examples]
    targets = sum(int(tr[1:].sum()) for _, tr in examples)
    tokens = sum(lengths)
    return {"datakit": counter.step_flops(lengths, targets) / tokens, "6n": counter.six_n(tokens) / tokens}


def lora_adapter_params(shapes: dict, layers: int, r: int = 16) -> int:
    h, f, heads, kv = (shapes[k] for k in ("hidden_size", "intermediate_size", "num_attention_heads",
                                           "num_key_value_heads"))
    kv_width = h // heads * kv
    per_layer = r * ((h + h) * 2 + (h + kv_width) * 2 + (h + f) * 3)  # q, o; k, v; gate, up, down
    return layers * per_layer


def run_sft(args, work: Path, model_dir: Path, method: str, attention: str) -> dict:
    settings = {"model": str(model_dir), "data": str(work / "shard"), "template": "bayling3", "system_prompt": "",
                "method": method, "lora_r": 16, "lora_alpha": 32, "lora_dropout": 0.0, "lora_targets": LORA_TARGETS,
                "seq_len": args.seq_len, "packing": True, "batch_size": args.batch_size, "grad_accum": 1,
                "lr": 1e-4 if method == "lora" else 1e-5, "max_steps": args.warmup + args.steps,
                "log_every": args.warmup, "save_every": -1, "output_dir": str(work / f"run-{method}-{attention}"),
                "cache_dir": str(work / "cache"), "attn_implementation": attention,
                "grad_checkpointing": args.grad_checkpointing, "precision": "bf16" if not args.tiny else "fp32",
                "compile": args.compile, "seed": 0, "peak_tflops": args.peak_tflops}
    quiet = contextlib.redirect_stdout(io.StringIO()) if not args.verbose else contextlib.nullcontext()
    with quiet:
        records = train(load_config(None, settings))
    windows = [r for r in records if "loss" in r][1:]  # the first window holds the warmup (and any compile)
    run = json.loads((work / f"run-{method}-{attention}" / "run_config.json").read_text())
    return {"attention_used": run["attention"],
            "tokens_per_s": statistics.mean(r["tokens_per_s"] for r in windows),
            "peak_mem_gb": max(r.get("peak_mem_gb", r.get("peak_rss_gb", 0.0)) for r in windows),
            "padding_efficiency": statistics.mean(r["padding_efficiency"] for r in windows),
            "loss": [round(r["loss"], 4) for r in windows]}


def run_trl(args, work: Path, model_dir: Path, method: str, attention: str, examples: list, tokenizer,
            device: torch.device) -> dict:
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import TrainerCallback
    from trl import SFTConfig, SFTTrainer

    data = Dataset.from_dict({"input_ids": [ids.tolist() for ids, _ in examples],
                              "completion_mask": [tr.astype(int).tolist() for _, tr in examples]})

    class Clock(TrainerCallback):
        marks: list[tuple[float, float]] = []

        def on_step_end(self, a, state, control, **kw):  # noqa: ANN001 - TrainerCallback's signature
            if device.type == "cuda":
                torch.cuda.synchronize()
            Clock.marks.append((time.perf_counter(), float(state.num_input_tokens_seen)))

    bf16 = not args.tiny
    config = SFTConfig(output_dir=str(work / f"trl-{method}-{attention}"), max_steps=args.warmup + args.steps,
                       per_device_train_batch_size=args.batch_size, gradient_accumulation_steps=1,
                       learning_rate=1e-4 if method == "lora" else 1e-5, lr_scheduler_type="cosine",
                       packing=True, max_length=args.seq_len, bf16=bf16, use_cpu=args.tiny,
                       completion_only_loss=True, gradient_checkpointing=args.grad_checkpointing,
                       gradient_checkpointing_kwargs={"use_reentrant": False}, logging_steps=args.warmup,
                       report_to=[], save_strategy="no", include_num_input_tokens_seen="non_padding",
                       dataloader_num_workers=0, torch_compile=args.compile, seed=0, disable_tqdm=True,
                       model_init_kwargs={"attn_implementation": attention,
                                          "dtype": torch.bfloat16 if bf16 and method == "lora" else torch.float32})
    peft = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=LORA_TARGETS, task_type="CAUSAL_LM") \
        if method == "lora" else None
    Clock.marks = []
    quiet = contextlib.redirect_stdout(io.StringIO()) if not args.verbose else contextlib.nullcontext()
    try:
        with quiet:
            trainer = SFTTrainer(model=str(model_dir), args=config, train_dataset=data, processing_class=tokenizer,
                                 peft_config=peft, callbacks=[Clock()])
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            trainer.train()
        (t0, n0), (t1, n1) = Clock.marks[args.warmup - 1], Clock.marks[-1]
        return {"attention_used": attention, "tokens_per_s": (n1 - n0) / (t1 - t0),
                "peak_mem_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2) if device.type == "cuda" else 0.0,
                "loss": [round(x["loss"], 4) for x in trainer.state.log_history if "loss" in x][1:]}
    finally:
        with contextlib.suppress(NameError):
            del trainer
        free()


def full_layers_estimate(shapes: dict, device: torch.device) -> int:
    """Layers whose fp32 weights, grads and two AdamW moments (16 bytes per parameter) fit next to the embeddings."""
    if device.type != "cuda":
        return shapes["num_hidden_layers"]
    h, f, heads, kv = (shapes[k] for k in ("hidden_size", "intermediate_size", "num_attention_heads",
                                           "num_key_value_heads"))
    per_layer = 2 * h * h + 2 * h * (h // heads) * kv + 3 * h * f
    embeddings = 2 * h * shapes["vocab_size"]
    budget = torch.cuda.get_device_properties(device).total_memory * 0.88 - 16 * embeddings - 12 * 2**30
    return max(1, min(shapes["num_hidden_layers"], int(budget // (16 * per_layer))))


def plan_runs(args, device: torch.device) -> list[tuple[str, str, str]]:
    """(method, tool, attention) in priority order: each tool's best path first (LoRA, then full), flex last."""
    flash = device.type == "cuda" and importlib.util.find_spec("flash_attn") is not None
    trl_best = "flash_attention_2" if flash else "sdpa"
    sft_attn = [a.strip() for a in args.sft_attn.split(",") if a.strip()]
    trl_attn = [trl_best if a.strip() == "best" else a.strip() for a in args.trl_attn.split(",") if a.strip()]
    runs = []
    for k in range(max(len(sft_attn), len(trl_attn))):
        for method in ("lora", "full"):
            if k < len(sft_attn):
                runs.append((method, "sft", sft_attn[k]))
            if k < len(trl_attn) and not args.no_trl:
                runs.append((method, "trl", trl_attn[k]))
    return [r for r in runs if r[0] not in args.skip and r[1] not in args.skip]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tiny", action="store_true", help="tiny model on the CPU: a smoke test of this script")
    p.add_argument("--sft-attn", default="auto,flex_attention", help="comma-separated sft attn_implementation values")
    p.add_argument("--trl-attn", default="best,flex_attention",
                   help="comma-separated; best = flash_attention_2 where flash-attn is installed, else sdpa")
    p.add_argument("--seq-len", type=int, default=4096)
    p.add_argument("--batch-size", type=int, default=2, help="packed rows per step")
    p.add_argument("--steps", type=int, default=6, help="timed steps after --warmup (rounded to a multiple of it)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first (compilation, allocator warmup)")
    p.add_argument("--examples", type=int, default=1500)
    p.add_argument("--full-layers", default="auto", help="decoder layers for full fine-tuning, or auto")
    p.add_argument("--grad-checkpointing", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--compile", action="store_true", help="torch.compile (sft: each decoder layer; TRL: its own)")
    p.add_argument("--skip", default="", help="comma-separated: lora, full, sft, trl")
    p.add_argument("--no-trl", action="store_true", help="sft only (same as --skip trl)")
    p.add_argument("--time-budget", type=float, default=0, help="seconds; runs that would not fit are skipped")
    p.add_argument("--peak-tflops", type=float, default=0.0, help="per-GPU bf16 peak for MFU (0: from the name)")
    p.add_argument("--out", default=str(ROOT / "bench" / "results"), help="folder for sft_gpu.json / sft_gpu.md")
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args()
    started = time.perf_counter()
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    args.skip = set(filter(None, args.skip.split(",")))
    device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    if args.tiny:
        args.seq_len, args.warmup, args.steps, args.examples = min(args.seq_len, 256), 1, 2, 200
        shapes = TINY
    else:
        if device.type != "cuda":
            raise SystemExit("no CUDA GPU: run with --tiny for a CPU smoke test")
        shapes = LLAMA3_8B
    args.steps = max(args.warmup, args.steps // args.warmup * args.warmup)  # whole logging windows
    if not args.no_trl and importlib.util.find_spec("trl") is None:
        print("trl is not installed (pip install trl): running sft only")
        args.no_trl = True
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    peak = peak_flops(device, args.peak_tflops)
    sft_auto = pick_attention("auto", device)
    print(f"device {name}; torch {torch.__version__}; shapes {'tiny' if args.tiny else 'Llama-3-8B'}; seq_len "
          f"{args.seq_len} x batch {args.batch_size}; sft auto = {sft_auto}; grad checkpointing "
          f"{args.grad_checkpointing}; compile {args.compile}; {args.warmup} + {args.steps} steps", flush=True)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: list[dict] = []

    def publish() -> None:
        meta = {"device": name, "torch": torch.__version__, "sft_auto": sft_auto,
                "args": {k: sorted(v) if isinstance(v, set) else v for k, v in vars(args).items()}}
        (out / "sft_gpu.json").write_text(json.dumps({**meta, "results": results}, indent=1))
        (out / "sft_gpu.md").write_text(table(meta, results))

    with tempfile.TemporaryDirectory(prefix="bench-sft-") as tmp:
        work = Path(tmp)
        tokenizer = build_tokenizer(work / "tokenizer", shapes["vocab_size"])
        write_shard(work / "shard", args.examples, min(2048, args.seq_len), shapes["vocab_size"], seed=1)
        tokenizer, examples = examples_of(work, args.seq_len)
        layers = {"lora": shapes["num_hidden_layers"],
                  "full": full_layers_estimate(shapes, device) if args.full_layers == "auto" else int(args.full_layers)}
        durations: dict[str, float] = {}
        for method, tool, attention in plan_runs(args, device):
            elapsed = time.perf_counter() - started
            expected = durations.get(method, 0.0)
            row = {"method": method, "tool": tool, "attention": attention}
            if args.time_budget and elapsed + expected > args.time_budget:
                print(f"skipped {method} {tool} {attention}: {elapsed:.0f} s gone, about {expected:.0f} s needed, "
                      f"budget {args.time_budget:.0f} s", flush=True)
                results.append({**row, "layers": layers[method], "skipped": "time budget"})
                publish()
                continue
            t0 = time.perf_counter()
            while True:
                model_dir = work / f"model-{layers[method]}"
                if not model_dir.exists():
                    save_model(model_dir, shapes, layers[method], tokenizer, device)
                row["layers"] = layers[method]
                try:
                    if tool == "sft":
                        row.update(run_sft(args, work, model_dir, method, attention))
                    else:
                        row.update(run_trl(args, work, model_dir, method, attention, examples, tokenizer, device))
                    break
                except (SystemExit, torch.OutOfMemoryError) as e:
                    free()
                    if tool == "sft" and method == "full" and args.full_layers == "auto" and layers["full"] > 2:
                        print(f"full fine-tuning on {layers['full']} layers: out of memory; trying {layers['full'] - 2}")
                        layers["full"] -= 2
                        continue
                    row["error"] = f"{type(e).__name__}: {str(e)[:200]}"
                    break
                except Exception as e:  # a broken run (e.g. TRL on an attention path it rejects) must not end it all
                    free()
                    row["error"] = f"{type(e).__name__}: {str(e)[:300]}"
                    break
            durations[method] = max(durations.get(method, 0.0), time.perf_counter() - t0)
            fpt = flops_per_token(shapes, row["layers"], method, examples,
                                  lora_adapter_params(shapes, row["layers"]) if method == "lora" else 0)
            if "tokens_per_s" in row:
                row["mfu"] = row["tokens_per_s"] * fpt["datakit"] / peak if peak else None
                row["mfu_6n"] = row["tokens_per_s"] * fpt["6n"] / peak if peak else None
            row["seconds"] = round(time.perf_counter() - t0, 1)
            results.append(row)
            print(line(row, results), flush=True)
            publish()
    publish()
    print(f"results in {out / 'sft_gpu.json'} and {out / 'sft_gpu.md'} ({time.perf_counter() - started:.0f} s)")


def pct(x: float | None) -> str:
    return f"{100 * x:.1f}%" if x is not None else "n/a"


def line(row: dict, results: list[dict]) -> str:
    head = f"{row['method']:4s} {row['tool']:3s} {row['attention']:17s} {row['layers']:2d} layers:"
    if "tokens_per_s" not in row:
        return f"{head} {row.get('error') or row.get('skipped')}"
    text = (f"{head} {row['tokens_per_s']:>9,.0f} tokens/s  MFU {pct(row['mfu'])} (6N {pct(row['mfu_6n'])})  "
            f"peak {row['peak_mem_gb']:6.1f} GB  {row['seconds']:.0f} s")
    if row["tool"] == "trl":
        ours = [r for r in results if r["tool"] == "sft" and r["method"] == row["method"] and "tokens_per_s" in r
                and r["layers"] == row["layers"]]
        text += "".join(f"  sft[{r['attention']}]/TRL {r['tokens_per_s'] / row['tokens_per_s']:.2f}x" for r in ours)
    return text


def table(meta: dict, results: list[dict]) -> str:
    lines = [f"# sft vs TRL on {meta['device']} (torch {meta['torch']}; sft auto = {meta['sft_auto']})", "",
             f"seq_len {meta['args']['seq_len']} x batch {meta['args']['batch_size']}, grad checkpointing "
             f"{meta['args']['grad_checkpointing']}, {meta['args']['steps']} timed steps", "",
             "| method | layers | tool | attention | tokens/s | MFU (datakit) | MFU (6N) | peak GB | vs TRL best |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        if "tokens_per_s" not in r:
            lines.append(f"| {r['method']} | {r['layers']} | {r['tool']} | {r['attention']} | "
                         f"{r.get('error') or r.get('skipped')} | | | | |")
            continue
        trl = [x["tokens_per_s"] for x in results if x["tool"] == "trl" and x["method"] == r["method"]
               and x["layers"] == r["layers"] and "tokens_per_s" in x]
        ratio = f"{r['tokens_per_s'] / max(trl):.2f}x" if trl and r["tool"] == "sft" else ""
        lines.append(f"| {r['method']} | {r['layers']} | {r['tool']} | {r.get('attention_used', r['attention'])} | "
                     f"{r['tokens_per_s']:,.0f} | {pct(r['mfu'])} | {pct(r['mfu_6n'])} | {r['peak_mem_gb']:.1f} | "
                     f"{ratio} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
