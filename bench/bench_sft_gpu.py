"""sft on real-size shapes on one NVIDIA GPU, against TRL's SFTTrainer on the same model, data and attention.

    python bench/bench_sft_gpu.py                       # Llama-3-8B shapes, bf16, packed rows of 4096 tokens
    python bench/bench_sft_gpu.py --attn sdpa,flex_attention --seq-len 2048
    python bench/bench_sft_gpu.py --tiny                # CPU smoke test of the whole script (seconds)

What runs, all in this one process, each on the same random-weight model and the same examples:
1. LoRA (r=16, all linear layers of all 32 layers) with `sft.train.train` and with `trl.SFTTrainer`.
2. Full fine-tuning (fp32 master weights + AdamW state, bf16 autocast) on as many decoder layers as fit the GPU
   (`--full-layers auto` starts from an estimate and drops two layers per out-of-memory), sft then TRL.
The model has Llama-3-8B's config (hidden 4096, 32 heads / 8 KV heads, FFN 14336, vocabulary 128256), no
download: weights are random and the tokenizer is a word-level vocabulary of 128256 tokens "t0".."t128255",
so the examples (random token ids, 64-2048 tokens, about half of each example is the answer) go through the real
path: a datakit-shaped shard -> sft's chat format (bayling3 = Llama-3 headers) -> tokens -> packing.
Printed per run: tokens/s (real tokens, not padding), MFU (sft's FLOP count: model FLOPs of the real sequence
lengths, the vocabulary projection only where there is a label), peak memory, and the sft/TRL ratio.
TRL's MFU uses the same FLOPs per token as sft's run on the same data.

TRL must be installed (`pip install trl`); without it (or with --no-trl) only sft runs. flash-attn is used where
installed (attention "auto"); otherwise SDPA with sft's block-diagonal masks, or FlexAttention on request.
Results also go to bench/results/sft_gpu.json.
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

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sft.config import load_config  # noqa: E402
from sft.data import load_tokenized, resolve_dataset  # noqa: E402
from sft.metrics import peak_flops  # noqa: E402
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


def run_sft(args, work: Path, model_dir: Path, method: str, attention: str, warmup: int) -> dict:
    settings = {"model": str(model_dir), "data": str(work / "shard"), "template": "bayling3", "system_prompt": "",
                "method": method,
                "lora_r": 16, "lora_alpha": 32, "lora_dropout": 0.0, "lora_targets": LORA_TARGETS,
                "seq_len": args.seq_len, "packing": True, "batch_size": args.batch_size, "grad_accum": 1,
                "lr": 1e-4 if method == "lora" else 1e-5, "max_steps": warmup + args.steps, "log_every": 1,
                "save_every": -1, "output_dir": str(work / f"run-{method}-{attention}"),
                "cache_dir": str(work / "cache"), "attn_implementation": attention,
                "grad_checkpointing": args.grad_checkpointing, "precision": "bf16" if not args.tiny else "fp32",
                "compile": args.compile,
                "seed": 0}
    quiet = contextlib.redirect_stdout(io.StringIO()) if not args.verbose else contextlib.nullcontext()
    with quiet:
        records = train(load_config(None, settings))
    steps = [r for r in records if "loss" in r][warmup:]
    return {"tokens_per_s": statistics.mean(r["tokens_per_s"] for r in steps),
            "mfu": statistics.mean(r["mfu"] for r in steps) if steps[0]["mfu"] is not None else None,
            "tflops": statistics.mean(r["tflops_per_device"] for r in steps),
            "flops_per_token": statistics.mean(r["tflops_per_device"] / r["tokens_per_s"] for r in steps) * 1e12,
            "peak_mem_gb": max(r.get("peak_mem_gb", 0.0) for r in steps),
            "padding_efficiency": statistics.mean(r["padding_efficiency"] for r in steps),
            "loss": [round(r["loss"], 4) for r in steps]}


def run_trl(args, work: Path, model_dir: Path, method: str, attention: str, warmup: int, flops_per_token: float,
            device: torch.device) -> dict:
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    fmt = resolve_format("bayling3", tokenizer, system_prompt="")
    tset, _ = load_tokenized(resolve_dataset(str(work / "shard"), ["default"]), "train", tokenizer, fmt,
                             work / "cache", log=lambda _: None)
    tset, _ = tset.truncated(args.seq_len)
    examples = [tset.example(i) for i in range(len(tset))]  # the very ids and labels sft trained on
    data = Dataset.from_dict({"input_ids": [ids.tolist() for ids, _ in examples],
                              "labels": [np.where(tr, ids, -100).tolist() for ids, tr in examples]})

    class Clock(TrainerCallback):
        marks: list[tuple[float, float]] = []

        def on_step_end(self, a, state, control, **kw):  # noqa: ANN001 - TrainerCallback's signature
            if device.type == "cuda":
                torch.cuda.synchronize()
            Clock.marks.append((time.perf_counter(), float(state.num_input_tokens_seen)))

    bf16 = not args.tiny
    config = SFTConfig(output_dir=str(work / f"trl-{method}-{attention}"), max_steps=warmup + args.steps,
                       per_device_train_batch_size=args.batch_size, gradient_accumulation_steps=1,
                       learning_rate=1e-4 if method == "lora" else 1e-5, lr_scheduler_type="cosine",
                       packing=True, max_length=args.seq_len, bf16=bf16, use_cpu=args.tiny,
                       gradient_checkpointing=args.grad_checkpointing,
                       gradient_checkpointing_kwargs={"use_reentrant": False}, logging_steps=1, report_to=[],
                       save_strategy="no", include_num_input_tokens_seen="non_padding", dataloader_num_workers=0,
                       torch_compile=args.compile,
                       model_init_kwargs={"attn_implementation": attention,
                                          "dtype": torch.bfloat16 if bf16 and method == "lora" else torch.float32})
    peft = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=LORA_TARGETS, task_type="CAUSAL_LM") \
        if method == "lora" else None
    Clock.marks = []
    quiet = contextlib.redirect_stdout(io.StringIO()) if not args.verbose else contextlib.nullcontext()
    with quiet:
        trainer = SFTTrainer(model=str(model_dir), args=config, train_dataset=data, processing_class=tokenizer,
                             peft_config=peft, callbacks=[Clock()])
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        trainer.train()
    (t0, n0), (t1, n1) = Clock.marks[warmup - 1], Clock.marks[-1]
    tokens_per_s = (n1 - n0) / (t1 - t0)
    peak = peak_flops(device)
    result = {"tokens_per_s": tokens_per_s, "mfu": tokens_per_s * flops_per_token / peak if peak else None,
              "peak_mem_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2) if device.type == "cuda" else 0.0,
              "loss": [round(x["loss"], 4) for x in trainer.state.log_history if "loss" in x][warmup:]}
    del trainer
    free()
    return result


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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tiny", action="store_true", help="tiny model on the CPU: a smoke test of this script")
    p.add_argument("--attn", default="auto", help="comma-separated: auto, flash_attention_2, sdpa, flex_attention")
    p.add_argument("--seq-len", type=int, default=4096)
    p.add_argument("--batch-size", type=int, default=2, help="packed rows per step")
    p.add_argument("--steps", type=int, default=10, help="timed steps (after --warmup)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--examples", type=int, default=1500)
    p.add_argument("--full-layers", default="auto", help="decoder layers for full fine-tuning, or auto")
    p.add_argument("--grad-checkpointing", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--compile", action="store_true", help="torch.compile (sft: each decoder layer; TRL: its own)")
    p.add_argument("--skip", default="", help="comma-separated: lora, full, trl")
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    if args.tiny:
        args.seq_len, args.steps, args.warmup, args.examples = min(args.seq_len, 256), min(args.steps, 3), 1, 200
        shapes = TINY
    else:
        if device.type != "cuda":
            raise SystemExit("no CUDA GPU: run with --tiny for a CPU smoke test")
        shapes = LLAMA3_8B
    if "trl" not in skip and importlib.util.find_spec("trl") is None:
        print("trl is not installed (pip install trl): running sft only")
        skip.add("trl")
    attentions = [a.strip() for a in args.attn.split(",")]
    if "auto" in attentions:
        flash = device.type == "cuda" and importlib.util.find_spec("flash_attn") is not None
        attentions = [a if a != "auto" else ("flash_attention_2" if flash else "sdpa") for a in attentions]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device {name}; torch {torch.__version__}; shapes {'tiny' if args.tiny else 'Llama-3-8B'}; "
          f"seq_len {args.seq_len} x batch {args.batch_size}; attention {attentions}; "
          f"grad checkpointing {args.grad_checkpointing}; compile {args.compile}")

    results = []
    with tempfile.TemporaryDirectory(prefix="bench-sft-") as tmp:
        work = Path(tmp)
        tokenizer = build_tokenizer(work / "tokenizer", shapes["vocab_size"])
        write_shard(work / "shard", args.examples, min(2048, args.seq_len), shapes["vocab_size"], seed=1)
        plans = []
        if "lora" not in skip:
            plans.append(("lora", shapes["num_hidden_layers"]))
        if "full" not in skip:
            want = args.full_layers
            plans.append(("full", full_layers_estimate(shapes, device) if want == "auto" else int(want)))
        for method, layers in plans:
            while True:
                model_dir = work / f"model-{layers}"
                if not model_dir.exists():
                    save_model(model_dir, shapes, layers, tokenizer, device)
                try:
                    for attention in attentions:
                        ours = run_sft(args, work, model_dir, method, attention, args.warmup)
                        row = {"method": method, "layers": layers, "attention": attention, "sft": ours}
                        free()
                        if "trl" not in skip:
                            row["trl"] = run_trl(args, work, model_dir, method, attention, args.warmup,
                                                 ours["flops_per_token"], device)
                        results.append(row)
                        report(row)
                    break
                except (SystemExit, torch.OutOfMemoryError) as e:
                    free()
                    if method != "full" or args.full_layers != "auto" or layers <= 2:
                        raise
                    print(f"full fine-tuning on {layers} layers: out of memory ({str(e)[:80]}); trying {layers - 2}")
                    layers -= 2
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "sft_gpu.json").write_text(json.dumps({"device": name, "args": vars(args), "results": results}, indent=1))
    print(f"results in {out / 'sft_gpu.json'}")


def report(row: dict) -> None:
    def line(who: str, r: dict) -> str:
        mfu = f"{100 * r['mfu']:.1f}%" if r.get("mfu") is not None else "n/a"
        return f"  {who:4s} {r['tokens_per_s']:>10,.0f} tokens/s  MFU {mfu:>6s}  peak {r['peak_mem_gb']:6.1f} GB"

    print(f"{row['method']} on {row['layers']} layers, {row['attention']}:")
    print(line("sft", row["sft"]) + f"  padding efficiency {row['sft']['padding_efficiency']:.3f}")
    if "trl" in row:
        print(line("TRL", row["trl"]) + f"  sft/TRL {row['sft']['tokens_per_s'] / row['trl']['tokens_per_s']:.2f}x")


if __name__ == "__main__":
    main()
