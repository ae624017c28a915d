"""Fine-tune a causal LM on datakit's shards: `python -m sft.train --config cfg.yaml [--key value ...]`.

Under torchrun (`torchrun --nproc_per_node 8 -m sft.train --config ...`) every rank runs this file; DDP or FSDP
(`distributed: fsdp`) keeps them in step. Read top to bottom: where we run, data, model, optimizer, then one loop
with logging, evaluation and checkpoints inline.

The loss of an optimizer step is the mean over every target token of the *global* batch (all micro-batches of
all ranks): each micro-batch contributes its summed token losses divided by that global count, which is
all-reduced before the first forward. Batch 8 x accum 1, batch 1 x accum 8 and 2 GPUs x batch 4 give the same
gradient.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sft.attention import VARLEN, attention_inputs
from sft.checkpoint import export, latest_checkpoint, load_checkpoint, merge_adapter, save_checkpoint
from sft.config import Config, ConfigError, parse_args
from sft.data import (
    Batches,
    DataError,
    TokenizedSet,
    collate,
    default_cache_dir,
    load_tokenized,
    pack,
    resolve_dataset,
)
from sft.eval import chrf_by_language, eval_loss, generate, translation_pairs
from sft.metrics import FlopCounter, MetricsLog, peak_flops
from sft.model import (
    CausalLMLoss,
    ModelError,
    gradient_sync,
    load_model,
    load_tokenizer,
    lr_lambda,
    make_optimizer,
    pick_attention,
    trainable_parameters,
    unwrap,
    wrap,
)
from sft.templates import TemplateError, resolve_format


@dataclass
class Runtime:
    """Where this process runs: its rank among `world` processes and its device."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @classmethod
    def start(cls) -> Runtime:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        device = torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
        if world > 1 and not torch.distributed.is_initialized():
            if device.type == "cuda":
                torch.cuda.set_device(device)
            torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo", device_id=device
                                                 if device.type == "cuda" else None)
        rank = torch.distributed.get_rank() if world > 1 else 0
        return cls(rank=rank, world=world, local_rank=local_rank, device=device)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()

    def all_reduce(self, t: torch.Tensor) -> torch.Tensor:
        if self.world > 1:
            torch.distributed.all_reduce(t)
        return t

    def log(self, msg: str) -> None:
        if self.main:
            print(msg, flush=True)


def oom_hint(cfg: Config) -> str:
    return (f"out of GPU memory with batch_size={cfg.batch_size} rows of seq_len={cfg.seq_len} tokens "
            f"(method={cfg.method}, grad_checkpointing={cfg.grad_checkpointing}, distributed={cfg.distributed}). "
            f"Try, in this order: --grad_checkpointing true; --batch_size {max(cfg.batch_size // 2, 1)} "
            f"--grad_accum {cfg.grad_accum * 2} (same global batch); --seq_len {max(cfg.seq_len // 2, 128)}; "
            "--method lora; or several GPUs with --distributed fsdp.")


def prepare_data(cfg: Config, tokenizer: Any, fmt: Any, rt: Runtime) -> tuple[TokenizedSet, TokenizedSet | None, Any]:
    """Tokenized train and eval examples, cut to seq_len. Eval = the validation split, else a held-out slice."""
    files = resolve_dataset(cfg.data, cfg.configs, cfg.mirror)
    if "train" not in files.splits:
        raise DataError(f"data {cfg.data!r}, configs {cfg.configs}: no train files")
    cache = Path(cfg.cache_dir) if cfg.cache_dir else default_cache_dir()

    def tokenized(split: str) -> TokenizedSet:
        tset, hit = load_tokenized(files, split, tokenizer, fmt, cache, is_builder=rt.local_rank == 0,
                                   wait=rt.barrier, log=rt.log)
        rt.log(f"{split}: {len(tset):,} examples, {len(tset.ids):,} tokens ({'cache' if hit else 'tokenized'})")
        tset, stats = tset.truncated(cfg.seq_len)
        if stats["truncated"] or stats["dropped_no_target_left"]:
            rt.log(f"{split}: {stats['truncated']} examples cut to seq_len {cfg.seq_len}, "
                   f"{stats['dropped_no_target_left']} dropped (no answer token left)")
        return tset

    train_set = tokenized("train")
    if len(train_set) == 0:
        raise DataError(f"no training examples left: data {cfg.data!r}, configs {cfg.configs}, seq_len {cfg.seq_len} "
                        f"(the dataset offers configs {', '.join(files.available)})")
    eval_set = None
    if "validation" in files.splits:
        eval_set = tokenized("validation")
    elif cfg.eval_holdout:
        held = np.random.default_rng(cfg.seed).permutation(len(train_set))
        n = min(cfg.eval_holdout, len(train_set) // 2)
        eval_set, train_set = train_set.take(np.sort(held[:n])), train_set.take(np.sort(held[n:]))
        rt.log(f"no validation split: {n} training examples held out for evaluation")
    else:
        rt.log("no validation split and eval_holdout is 0: no evaluation")
    return train_set, eval_set, files


def rows_of(tset: TokenizedSet, cfg: Config, seed: int) -> list[np.ndarray]:
    return pack(tset.lengths, cfg.seq_len, seed) if cfg.packing else [np.array([i]) for i in range(len(tset))]


def train(cfg: Config) -> list[dict[str, Any]]:
    """Run training as configured; returns what was logged (also in output_dir/metrics.jsonl)."""
    # ------------------------------------------------------------------ where we run
    rt = Runtime.start()
    out = Path(cfg.output_dir)
    if latest_checkpoint(out) and not cfg.resume:
        raise SystemExit(f"{out} already holds checkpoints: pass --resume to continue, or another output_dir")
    if rt.main:
        out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and rt.device.type == "cuda"
                                       and torch.cuda.is_bf16_supported())
    # Full fine-tuning keeps fp32 master weights (autocast computes in bf16); LoRA's frozen base is stored in bf16.
    param_dtype = torch.bfloat16 if bf16 and cfg.method == "lora" else torch.float32

    # ------------------------------------------------------------------ data
    tokenizer = load_tokenizer(cfg)
    fmt = resolve_format(cfg.template, tokenizer, cfg.system_prompt)
    rt.log(f"chat format {fmt.name!r}, end of turn {fmt.end_of_turn!r}")
    train_set, eval_set, files = prepare_data(cfg, tokenizer, fmt, rt)
    batches = Batches(rows_of(train_set, cfg, cfg.seed), cfg.batch_size, cfg.grad_accum, rt.world, rt.rank, cfg.seed)
    total_steps = cfg.max_steps or math.ceil(cfg.epochs * batches.steps_per_epoch)
    rt.log(f"{len(batches.rows):,} rows of <= {cfg.seq_len} tokens; {batches.steps_per_epoch} steps per epoch "
           f"of {batches.per_step} rows; training {total_steps} steps")

    # ------------------------------------------------------------------ model, optimizer
    attention = pick_attention(cfg.attn_implementation, rt.device)
    model = load_model(cfg, tokenizer, attention, param_dtype)
    eot = tokenizer.convert_tokens_to_ids(fmt.end_of_turn)
    if isinstance(eot, int) and eot >= 0:  # generation stops at the format's end of turn
        eos = model.generation_config.eos_token_id
        model.generation_config.eos_token_id = sorted({eot, *(eos if isinstance(eos, list) else [eos] if eos else [])})
    adapter_params = sum(p.numel() for p in trainable_parameters(model)) if cfg.method == "lora" else 0
    flops = FlopCounter.from_config(model.config, lora=cfg.method == "lora", adapter_params=adapter_params)
    rt.log(f"{cfg.method}: {sum(p.numel() for p in trainable_parameters(model)):,} trainable parameters, "
           f"attention {attention}, {'bf16' if bf16 else 'fp32'}")
    module = wrap(CausalLMLoss(model), cfg, rt.device, rt.world, bf16)
    optimizer = make_optimizer(module, cfg, rt.device)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg, total_steps))
    peak = peak_flops(rt.device, cfg.peak_tflops)
    autocast = torch.autocast(rt.device.type, dtype=torch.bfloat16, enabled=bf16)
    compute_dtype = torch.bfloat16 if bf16 else torch.float32

    def forward(batch: dict[str, Any]) -> torch.Tensor:
        """Summed token loss of one collated micro-batch."""
        on_device = {k: v.to(rt.device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
        with autocast:
            return module(input_ids=on_device["input_ids"], labels=on_device["labels"],
                          **attention_inputs(on_device, attention, compute_dtype))

    def micro_batch(rows: list[np.ndarray], tset: TokenizedSet) -> dict[str, Any]:
        return collate(tset, rows, tokenizer.pad_token_id, flatten=attention in VARLEN)

    eval_batches = []
    if eval_set is not None and len(eval_set):
        rows = rows_of(eval_set, cfg, cfg.seed)
        chunks = [rows[i:i + cfg.batch_size] for i in range(0, len(rows), cfg.batch_size)]
        per_rank = -(-len(chunks) // rt.world)
        if cfg.eval_batches:
            per_rank = min(per_rank, cfg.eval_batches)
        mine = chunks[rt.rank::rt.world][:per_rank]
        eval_batches = [micro_batch(c, eval_set) for c in mine]
        while len(eval_batches) < per_rank:  # equal forward count on every rank; the filler is not counted
            eval_batches.append({**micro_batch(chunks[0], eval_set), "weight": 0})
    chrf_pairs = []
    if cfg.chrf_samples and cfg.distributed == "fsdp" and rt.world > 1:
        rt.log("chrf_samples: generation is not run under FSDP (every rank would have to generate); eval loss only")
    elif cfg.chrf_samples:
        if "validation" in files.splits:
            chrf_pairs = translation_pairs(files.splits["validation"], cfg.chrf_samples, cfg.seed)
        elif eval_set is not None:
            chrf_pairs = translation_pairs(files.splits["train"], cfg.chrf_samples, cfg.seed, rows=eval_set.rows)

    def evaluate(step: int) -> dict[str, Any]:
        record: dict[str, Any] = {"step": step}
        if eval_batches:
            record["eval_loss"], record["eval_tokens"] = eval_loss(module, eval_batches, forward, rt.all_reduce,
                                                                   rt.device)
        if chrf_pairs:  # each rank answers its share of the prompts; rank 0 gathers and scores
            mine = generate(unwrap(module).model, tokenizer, fmt, [p["messages"] for p in chrf_pairs[rt.rank::rt.world]],
                            rt.device, cfg.chrf_max_new_tokens)
            shares = [mine]
            if rt.world > 1:
                shares = [None] * rt.world
                torch.distributed.all_gather_object(shares, mine)
            answers = [None] * len(chrf_pairs)
            for r, share in enumerate(shares):
                answers[r::rt.world] = share
            record["chrf"] = chrf_by_language(chrf_pairs, answers)
        return record

    # ------------------------------------------------------------------ resume
    log = MetricsLog(out, enabled=rt.main, tensorboard=cfg.tensorboard)
    step = 0
    checkpoint = latest_checkpoint(out) if cfg.resume else None
    rt.barrier()
    if checkpoint is not None:
        state = load_checkpoint(checkpoint, module, optimizer, scheduler, rt.rank, rt.world)
        step = state["step"]
        log.truncate_after(step)
        rt.log(f"resumed from {checkpoint} at step {step}")
    elif cfg.resume:
        rt.log(f"--resume: no checkpoint in {out}, starting at step 0")

    # ------------------------------------------------------------------ the loop
    records: list[dict[str, Any]] = []
    params = trainable_parameters(module)
    window = {"loss": torch.zeros((), dtype=torch.float64, device=rt.device), "targets": 0, "tokens": 0, "slots": 0,
              "flops": 0.0}
    window_start = time.perf_counter()
    module.train()
    while step < total_steps:
        micro = [micro_batch(rows, train_set) for rows in batches.micro_batches(step)]
        # The global number of target tokens of this step, known before any forward.
        targets = rt.all_reduce(torch.tensor(float(sum(b["targets"] for b in micro)), device=rt.device))
        try:
            for i, batch in enumerate(micro):
                with gradient_sync(module, i == len(micro) - 1):
                    loss_sum = forward(batch)
                    # DDP/FSDP average gradients over ranks; times world makes that a sum over the global batch.
                    (loss_sum * rt.world / targets).backward()
                window["loss"] += loss_sum.detach().double()
            grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm or float("inf"))
            lr = scheduler.get_last_lr()[0]
            optimizer.step()  # AdamW allocates its moments here, on the first step
        except torch.OutOfMemoryError as e:
            raise SystemExit(oom_hint(cfg)) from e
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1

        window["targets"] += sum(b["targets"] for b in micro)
        window["tokens"] += sum(b["tokens"] for b in micro)
        window["slots"] += sum(b["slots"] for b in micro)
        window["flops"] += sum(flops.step_flops(b["example_lengths"], b["targets"]) for b in micro)
        if step % cfg.log_every == 0 or step == total_steps:
            sums = torch.stack([window["loss"], *(torch.tensor(float(window[k]), dtype=torch.float64,
                                                               device=rt.device)
                                                  for k in ("targets", "tokens", "slots", "flops"))])
            loss, n_targets, tokens, slots, step_flops = rt.all_reduce(sums).tolist()
            elapsed = time.perf_counter() - window_start
            record = {"step": step, "loss": loss / max(n_targets, 1), "lr": lr,
                      "tokens_per_s": tokens / elapsed, "target_tokens": int(n_targets),
                      "padding_efficiency": tokens / max(slots, 1), "grad_norm": float(grad_norm),
                      "tflops_per_device": step_flops / elapsed / rt.world / 1e12,
                      "mfu": step_flops / elapsed / rt.world / peak if peak else None,
                      "epoch": round(step / batches.steps_per_epoch, 4)}
            if rt.device.type == "cuda":
                record["peak_mem_gb"] = round(torch.cuda.max_memory_allocated(rt.device) / 2**30, 2)
            log.log(record)
            records.append(record)
            window = {"loss": torch.zeros_like(window["loss"]), "targets": 0, "tokens": 0, "slots": 0, "flops": 0.0}
            window_start = time.perf_counter()
        if (eval_batches or chrf_pairs) and cfg.eval_every and step % cfg.eval_every == 0 and step < total_steps:
            evaluated = evaluate(step)
            log.log(evaluated)
            records.append(evaluated)
            window_start = time.perf_counter()
        if cfg.save_every >= 0 and (cfg.save_every and step % cfg.save_every == 0 or step == total_steps):
            epoch, row = batches.position(step)
            save_checkpoint(out, step, module, optimizer, scheduler,
                            {"epoch": epoch, "row": row, "world_size": rt.world, "config": cfg.to_dict()},
                            rt.rank, cfg.keep_checkpoints)
            window_start = time.perf_counter()

    # ------------------------------------------------------------------ the end: evaluate, export
    if eval_batches or chrf_pairs:
        evaluated = evaluate(step)
        log.log(evaluated)
        records.append(evaluated)
    final = out / "final"
    if cfg.save_every >= 0:
        export(module, unwrap(module).model, tokenizer, fmt.source, final, cfg.method == "lora",
               torch.bfloat16 if bf16 else torch.float32, rt.rank)
        if cfg.merge and cfg.method == "lora" and rt.main:
            merge_adapter(cfg.model, final, out / "merged", torch.bfloat16 if bf16 else torch.float32)
        rt.log(f"done: {step} steps; model in {final}" + (f", merged in {out / 'merged'}" if cfg.merge else ""))
    log.close()
    rt.barrier()
    return records


def main(argv: list[str] | None = None) -> None:
    try:
        train(parse_args(sys.argv[1:] if argv is None else argv))
    except (ConfigError, DataError, TemplateError, ModelError) as e:
        raise SystemExit(f"sft: {e}") from None
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
