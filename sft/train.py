"""Fine-tune a causal LM on datakit's shards: `python -m sft.train --config cfg.yaml [--key value ...]`.

Under torchrun (`torchrun --nproc_per_node 8 -m sft.train --config ...`) every rank runs this file; DDP or FSDP
(`distributed: fsdp`) keeps them in step. Read top to bottom: where we run, data, model, optimizer, then one loop
with logging, evaluation and checkpoints inline.

The loss of an optimizer step is the mean over every target token of the *global* batch (all micro-batches of
all ranks): each micro-batch contributes its summed token losses divided by that global count, which every rank
computes on the host from the step's rows (no all-reduce, no tensor per step). Batch 8 x accum 1, batch 1 x accum 8
and 2 GPUs x batch 4 give the same gradient.

The host never waits for the GPU except on logged steps (log_every): the next step's micro-batches are collated,
given their attention tables and pinned on a worker thread while the GPU runs this one. Under torchrun, data is
tokenized before the process group starts (ranks take turns on a file lock), so tokenizing cannot time out a
collective.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sft.attention import DENSE, FLEX_BLOCK, VARLEN, device_inputs, host_inputs, pick_attention
from sft.checkpoint import export, latest_checkpoint, load_checkpoint, merge_adapter, save_checkpoint
from sft.config import Config, ConfigError, parse_args
from sft.data import (
    Batches,
    DataError,
    DatasetFiles,
    TokenizedSet,
    cache_key,
    collate,
    default_cache_dir,
    language_mix,
    load_tokenized,
    pack,
    resolve_dataset,
    row_width,
)
from sft.eval import chrf_by_language, eval_loss, generate, translation_pairs
from sft.metrics import FlopCounter, MetricsLog, MetricsWindow, peak_flops, peak_memory
from sft.model import (
    CausalLMLoss,
    ModelError,
    gradient_sync,
    load_model,
    load_tokenizer,
    lr_lambda,
    make_optimizer,
    trainable_parameters,
    unwrap,
    wrap,
)
from sft.templates import ChatFormat, TemplateError, resolve_format

Forward = Callable[..., torch.Tensor]  # a collated micro-batch -> its summed token loss (per_token=True: each one's)
MicroBatch = Callable[[TokenizedSet, list[np.ndarray]], dict[str, Any]]  # examples, rows -> a collated micro-batch


@dataclass
class Runtime:
    """Where this process runs: its rank among `world` processes and its device."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @classmethod
    def from_env(cls) -> Runtime:
        """Rank and device from torchrun's environment; no process group yet (see `connect`)."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        device = torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
        if device.type == "cuda":
            torch.cuda.set_device(device)
        return cls(rank=int(os.environ.get("RANK", "0")), world=world, local_rank=local_rank, device=device)

    def connect(self, timeout_s: float) -> None:
        """Start the process group (under torchrun), with an explicit timeout for every collective."""
        if self.world > 1 and not torch.distributed.is_initialized():
            cuda = self.device.type == "cuda"
            torch.distributed.init_process_group("nccl" if cuda else "gloo", device_id=self.device if cuda else None,
                                                 timeout=datetime.timedelta(seconds=timeout_s))

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
    """What to change when a step runs out of GPU memory, cheapest change first."""
    return (f"out of GPU memory with batch_size={cfg.batch_size} rows of seq_len={cfg.seq_len} tokens "
            f"(method={cfg.method}, grad_checkpointing={cfg.grad_checkpointing}, distributed={cfg.distributed}). "
            f"Try, in this order: --grad_checkpointing true; --batch_size {max(cfg.batch_size // 2, 1)} "
            f"--grad_accum {cfg.grad_accum * 2} (same global batch); --seq_len {max(cfg.seq_len // 2, 128)}; "
            "--method lora; or several GPUs with --distributed fsdp.")


def use_bf16(cfg: Config, device: torch.device) -> bool:
    """bf16 autocast where asked, or (auto) where the GPU supports it: half the activation memory, tensor cores."""
    return cfg.precision == "bf16" or (cfg.precision == "auto" and device.type == "cuda"
                                       and torch.cuda.is_bf16_supported())


def setup_output_dir(cfg: Config, rt: Runtime) -> Path:
    """Refuse a folder that holds checkpoints unless resuming: a new run would mix its checkpoints and metrics with
    the old ones. Every rank checks, so every rank stops."""
    out = Path(cfg.output_dir)
    if latest_checkpoint(out) and not cfg.resume:
        raise SystemExit(f"{out} already holds checkpoints: pass --resume to continue, or another output_dir")
    if rt.main:
        out.mkdir(parents=True, exist_ok=True)
    return out


def setup_tokenizer(cfg: Config, rt: Runtime) -> tuple[Any, ChatFormat]:
    """The tokenizer and the chat format: both decide the tokens of the data and the stop token of generation."""
    tokenizer = load_tokenizer(cfg)
    fmt = resolve_format(cfg.template, tokenizer, cfg.system_prompt)
    rt.log(f"chat format {fmt.name!r}, end of turn {fmt.end_of_turn!r}")
    return tokenizer, fmt


@dataclass
class Data:
    """What the run trains and evaluates on, fixed before the first step."""

    train: TokenizedSet
    eval: TokenizedSet | None  # None: no validation split and no held-out slice
    files: DatasetFiles
    batches: Batches  # the rows of every step, a pure function of (seed, step): resuming needs no iterator state
    total_steps: int
    example_targets: np.ndarray  # loss targets per training example: a step's global count, on the host
    identity: str  # tokenizer + template + train files: the data fingerprint a resumed run must share
    mix: dict[str, dict[str, float]]  # per language: available examples, share, sampled per epoch


def prepare_data(cfg: Config, tokenizer: Any, fmt: ChatFormat, rt: Runtime
                 ) -> tuple[TokenizedSet, TokenizedSet | None, DatasetFiles]:
    """Tokenized train and eval examples, cut to seq_len. Eval = the validation split, else a held-out slice."""
    files = resolve_dataset(cfg.data, cfg.configs, cfg.mirror)
    if "train" not in files.splits:
        raise DataError(f"data {cfg.data!r}, configs {cfg.configs}: no train files")
    cache = Path(cfg.cache_dir) if cfg.cache_dir else default_cache_dir()

    def tokenized(split: str) -> TokenizedSet:
        tset, hit = load_tokenized(files, split, tokenizer, fmt, cache, timeout_s=cfg.tokenize_timeout_s, log=rt.log)
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
    """Rows of example indices: packed up to seq_len, or one example per row."""
    return pack(tset.lengths, cfg.seq_len, seed) if cfg.packing else [np.array([i]) for i in range(len(tset))]


def setup_data(cfg: Config, tokenizer: Any, fmt: ChatFormat, rt: Runtime) -> Data:
    """Examples (in the configured language mix), rows, the step schedule over ranks, and the number of steps
    (max_steps, else epochs). No collective: it runs before the process group exists."""
    train_set, eval_set, files = prepare_data(cfg, tokenizer, fmt, rt)
    train_set, mix = language_mix(train_set, cfg.sampling_temperature, cfg.language_weights, cfg.seed)
    if cfg.sampling_temperature != 1.0 or cfg.language_weights:
        rt.log("language mix: " + ", ".join(f"{lang} {m['available']:,} -> {m['sampled']:,} ({m['share']:.1%})"
                                            for lang, m in mix.items()))
    batches = Batches(rows_of(train_set, cfg, cfg.seed), cfg.batch_size, cfg.grad_accum, rt.world, rt.rank, cfg.seed)
    total_steps = cfg.max_steps or math.ceil(cfg.epochs * batches.steps_per_epoch)
    rt.log(f"{len(batches.rows):,} rows of <= {cfg.seq_len} tokens; {batches.steps_per_epoch} steps per epoch "
           f"of {batches.per_step} rows; training {total_steps} steps")
    return Data(train_set, eval_set, files, batches, total_steps, train_set.target_counts(),
                cache_key(files, "train", tokenizer, fmt), mix)


def resume_guard(cfg: Config, data: Data) -> dict[str, Any]:
    """What decides which rows step s trains on; a checkpoint records it and resume refuses any change."""
    return {"data": data.identity, "seq_len": cfg.seq_len, "packing": cfg.packing, "seed": cfg.seed,
            "sampling_temperature": cfg.sampling_temperature, "language_weights": cfg.language_weights,
            "rows_per_step": data.batches.per_step}


def setup_model(cfg: Config, tokenizer: Any, fmt: ChatFormat, bf16: bool, rt: Runtime
                ) -> tuple[nn.Module, str, FlopCounter]:
    """The loss module, wrapped for DDP/FSDP; the attention implementation, which decides how batches are
    collated; and the FLOP counter, which needs the unwrapped model's config and trainable size."""
    # Full fine-tuning keeps fp32 master weights (autocast computes in bf16); LoRA's frozen base is stored in bf16.
    param_dtype = torch.bfloat16 if bf16 and cfg.method == "lora" else torch.float32
    attention = pick_attention(cfg.attn_implementation, rt.device)
    if attention in DENSE and cfg.packing and rt.device.type == "cuda":
        rt.log(f"warning: attention {attention} builds a dense (B, 1, L, L) mask per packed batch and computes all "
               "L^2 scores; attn_implementation auto picks a varlen kernel or FlexAttention instead")
    model = load_model(cfg, tokenizer, attention, param_dtype)
    eot = tokenizer.convert_tokens_to_ids(fmt.end_of_turn)
    if isinstance(eot, int) and eot >= 0:  # generation stops at the format's end of turn
        eos = model.generation_config.eos_token_id
        model.generation_config.eos_token_id = sorted({eot, *(eos if isinstance(eos, list) else [eos] if eos else [])})
    adapter_params = sum(p.numel() for p in trainable_parameters(model)) if cfg.method == "lora" else 0
    flops = FlopCounter.from_config(model.config, lora=cfg.method == "lora", adapter_params=adapter_params)
    rt.log(f"{cfg.method}: {sum(p.numel() for p in trainable_parameters(model)):,} trainable parameters, "
           f"attention {attention}, {'bf16' if bf16 else 'fp32'}")
    return wrap(CausalLMLoss(model), cfg, rt.device, rt.world, bf16), attention, flops


def setup_optimizer(module: nn.Module, cfg: Config, total_steps: int, device: torch.device
                    ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW over the wrapped module's parameters (FSDP shards them), and the schedule, which needs total_steps."""
    optimizer = make_optimizer(module, cfg, device)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg, total_steps))


def make_micro_batch(cfg: Config, attention: str, pad_id: int, device: torch.device) -> MicroBatch:
    """Host side of a micro-batch: collate at a stable width (see `row_width`), add the attention's tables, pin."""
    flat = attention in VARLEN
    multiple = FLEX_BLOCK if attention == "flex_attention" else 8

    def micro_batch(tset: TokenizedSet, rows: list[np.ndarray]) -> dict[str, Any]:
        sizes = [int(tset.lengths[r].sum()) for r in rows]
        needed, cap = (sum(sizes), cfg.seq_len * len(rows)) if flat else (max(sizes), cfg.seq_len)
        batch = collate(tset, rows, pad_id, flatten=flat, width=row_width(needed, cap, multiple))
        batch.update(host_inputs(batch, attention))
        if device.type == "cuda":
            batch = {k: v.pin_memory() if torch.is_tensor(v) else v for k, v in batch.items()}
        return batch

    return micro_batch


class Prefetcher:
    """Prepares step s + 1 on a worker thread while the caller runs step s. Steps must be asked for in order."""

    def __init__(self, make: Callable[[int], Any], start: int, stop: int):
        self.make, self.stop = make, stop
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sft-prefetch")
        self.pending: Future | None = self.pool.submit(make, start) if start < stop else None
        self.step = start

    def get(self, step: int) -> Any:
        if step != self.step or self.pending is None:
            raise RuntimeError(f"prefetcher asked for step {step}, holds step {self.step}")
        result = self.pending.result()
        self.step += 1
        self.pending = self.pool.submit(self.make, self.step) if self.step < self.stop else None
        return result

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def make_forward(module: nn.Module, attention: str, bf16: bool, device: torch.device) -> Forward:
    """Summed token loss of one collated micro-batch (per_token: each target's): the one forward shared by training
    and evaluation. Copies from pinned memory without blocking; nothing here waits for the GPU."""
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
    compute_dtype = torch.bfloat16 if bf16 else torch.float32
    host_only = {"labels", "target_langs"} | ({"segment_ids"} if attention in VARLEN else set())

    def forward(batch: dict[str, Any], per_token: bool = False) -> torch.Tensor:
        on_device = {k: v.to(device, non_blocking=True) if torch.is_tensor(v) and k not in host_only else v
                     for k, v in batch.items()}
        with autocast:
            return module(input_ids=on_device["input_ids"], target_positions=on_device["target_positions"],
                          target_ids=on_device["target_ids"], per_token=per_token,
                          **device_inputs(on_device, attention, compute_dtype))

    return forward


@dataclass
class Evaluator:
    """Eval loss and chrF at a step. Its inputs are fixed once, before training, so every evaluation of the run
    scores the same batches and prompts and the numbers compare across steps."""

    module: nn.Module
    forward: Forward
    batches: list[dict[str, Any]]  # this rank's share; the same count on every rank
    langs: list[str]  # what the batches' language ids mean
    chrf_pairs: list[dict[str, Any]]  # all ranks' prompts; rank r generates pairs[r::world]
    tokenizer: Any
    fmt: ChatFormat
    max_new_tokens: int
    rt: Runtime

    def __bool__(self) -> bool:
        return bool(self.batches or self.chrf_pairs)

    def __call__(self, step: int) -> dict[str, Any]:
        """Collective."""
        rt = self.rt
        record: dict[str, Any] = {"step": step}
        if self.batches:
            record.update(eval_loss(self.module, self.batches, self.forward, rt.all_reduce, rt.device, self.langs))
        if self.chrf_pairs:  # each rank answers its share of the prompts; rank 0 gathers and scores
            mine = generate(unwrap(self.module).model, self.tokenizer, self.fmt,
                            [p["messages"] for p in self.chrf_pairs[rt.rank::rt.world]], rt.device,
                            self.max_new_tokens)
            shares = [mine]
            if rt.world > 1:
                shares = [None] * rt.world
                torch.distributed.all_gather_object(shares, mine)
            answers = [None] * len(self.chrf_pairs)
            for r, share in enumerate(shares):
                answers[r::rt.world] = share
            record["chrf"] = chrf_by_language(self.chrf_pairs, answers)
        return record


def setup_eval(cfg: Config, data: Data, module: nn.Module, forward: Forward, micro_batch: MicroBatch,
               tokenizer: Any, fmt: ChatFormat, rt: Runtime) -> Evaluator:
    """Collate the eval batches once (FSDP needs every rank in every forward, so ranks are padded to the same
    count with uncounted filler) and pick the chrF prompts: validation split, else the held-out slice."""
    batches = []
    if data.eval is not None and len(data.eval):
        rows = rows_of(data.eval, cfg, cfg.seed)
        chunks = [rows[i:i + cfg.batch_size] for i in range(0, len(rows), cfg.batch_size)]
        per_rank = -(-len(chunks) // rt.world)
        if cfg.eval_batches:
            per_rank = min(per_rank, cfg.eval_batches)
        batches = [micro_batch(data.eval, c) for c in chunks[rt.rank::rt.world][:per_rank]]
        while len(batches) < per_rank:  # equal forward count on every rank; the filler is not counted
            batches.append({**micro_batch(data.eval, chunks[0]), "weight": 0})
    pairs = []
    if cfg.chrf_samples and cfg.distributed == "fsdp" and rt.world > 1:
        rt.log("chrf_samples: generation is not run under FSDP (every rank would have to generate); eval loss only")
    elif cfg.chrf_samples:
        if "validation" in data.files.splits:
            pairs = translation_pairs(data.files.splits["validation"], cfg.chrf_samples, cfg.seed)
        elif data.eval is not None:
            pairs = translation_pairs(data.files.splits["train"], cfg.chrf_samples, cfg.seed, rows=data.eval.rows)
    langs = data.eval.langs if data.eval is not None else []
    return Evaluator(module, forward, batches, langs, pairs, tokenizer, fmt, cfg.chrf_max_new_tokens, rt)


def resume(cfg: Config, out: Path, module: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
           log: MetricsLog, guard: dict[str, Any], rt: Runtime) -> int:
    """Collective. The step to start at: 0, or that of the latest complete checkpoint (--resume), whose weights,
    optimizer, schedule and RNG are restored; metrics logged after it are dropped, the resumed run logs them again.
    A checkpoint whose guard (data, seq_len, layout, ...) differs from this run's is refused."""
    checkpoint = latest_checkpoint(out) if cfg.resume else None
    rt.barrier()
    if checkpoint is not None:
        step = load_checkpoint(checkpoint, module, optimizer, scheduler, rt.rank, rt.world, guard)["step"]
        log.truncate_after(step)
        rt.log(f"resumed from {checkpoint} at step {step}")
        return step
    if cfg.resume:
        rt.log(f"--resume: no checkpoint in {out}, starting at step 0")
    return 0


def write_run_config(out: Path, cfg: Config, data: Data, attention: str, rt: Runtime) -> None:
    """output_dir/run_config.json: the settings, and what they resolved to (attention, language mix, data)."""
    if rt.main:
        record = {"config": cfg.to_dict(), "attention": attention, "language_mix": data.mix, "data": data.identity,
                  "world_size": rt.world}
        (out / "run_config.json").write_text(json.dumps(record, indent=1), encoding="utf-8")


def train(cfg: Config) -> list[dict[str, Any]]:
    """Run training as configured; returns what was logged (also in output_dir/metrics.jsonl)."""
    # ------------------------------------------------------------------ set up: where, data, model, optimizer, eval
    started = time.perf_counter()
    rt = Runtime.from_env()
    out = setup_output_dir(cfg, rt)
    torch.manual_seed(cfg.seed)
    bf16 = use_bf16(cfg, rt.device)
    tokenizer, fmt = setup_tokenizer(cfg, rt)
    data = setup_data(cfg, tokenizer, fmt, rt)  # before the process group: no collective can time out meanwhile
    rt.connect(cfg.dist_timeout_s)
    module, attention, flops = setup_model(cfg, tokenizer, fmt, bf16, rt)
    write_run_config(out, cfg, data, attention, rt)
    optimizer, scheduler = setup_optimizer(module, cfg, data.total_steps, rt.device)
    forward = make_forward(module, attention, bf16, rt.device)
    micro_batch = make_micro_batch(cfg, attention, tokenizer.pad_token_id, rt.device)
    evaluate = setup_eval(cfg, data, module, forward, micro_batch, tokenizer, fmt, rt)
    log = MetricsLog(out, enabled=rt.main, tensorboard=cfg.tensorboard)
    guard = resume_guard(cfg, data)
    step = resume(cfg, out, module, optimizer, scheduler, log, guard, rt)
    records: list[dict[str, Any]] = []

    def emit(record: dict[str, Any]) -> None:
        log.log(record)
        records.append(record)

    def prepare(s: int) -> tuple[list[dict[str, Any]], int]:
        """Step s's micro-batches for this rank, and the step's target count over all ranks (from the host)."""
        targets = int(data.example_targets[np.concatenate(data.batches.step_rows(s))].sum())
        return [micro_batch(data.train, rows) for rows in data.batches.micro_batches(s)], max(targets, 1)

    # ------------------------------------------------------------------ the loop
    params = trainable_parameters(module)
    window = MetricsWindow(flops, peak_flops(rt.device, cfg.peak_tflops), rt.device, rt.world, rt.all_reduce)
    prefetch = Prefetcher(prepare, step, data.total_steps)
    module.train()
    while step < data.total_steps:
        micro, targets = prefetch.get(step)
        # DDP/FSDP average gradients over ranks; times world makes that a sum over the global batch.
        scale = rt.world / targets
        try:
            for i, batch in enumerate(micro):
                with gradient_sync(module, i == len(micro) - 1):
                    loss_sum = forward(batch)
                    (loss_sum * scale).backward()
                window.loss += loss_sum.detach()
            grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm or float("inf"))
            lr = scheduler.get_last_lr()[0]
            optimizer.step()  # AdamW allocates its moments here, on the first step
        except torch.OutOfMemoryError as e:
            prefetch.close()
            raise SystemExit(oom_hint(cfg)) from e
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        window.add(micro)

        if step % cfg.log_every == 0 or step == data.total_steps:
            emit(window.record(step, lr, grad_norm, epoch=round(step / data.batches.steps_per_epoch, 4)))
        if evaluate and cfg.eval_every and step % cfg.eval_every == 0 and step < data.total_steps:
            emit(evaluate(step))
            window.restart_clock()
        if cfg.save_every >= 0 and (cfg.save_every and step % cfg.save_every == 0 or step == data.total_steps):
            epoch, row = data.batches.position(step)
            save_checkpoint(out, step, module, optimizer, scheduler,
                            {"epoch": epoch, "row": row, "world_size": rt.world, "config": cfg.to_dict(),
                             "guard": guard}, rt.rank, cfg.keep_checkpoints)
            window.restart_clock()
    prefetch.close()

    # ------------------------------------------------------------------ the end: evaluate, export
    if evaluate:
        emit(evaluate(step))
    emit({"step": step, "run_seconds": round(time.perf_counter() - started, 2), **peak_memory(rt.device)})
    if cfg.save_every >= 0:
        final, save_dtype = out / "final", torch.bfloat16 if bf16 else torch.float32
        export(module, unwrap(module).model, tokenizer, fmt.source, final, cfg.method == "lora", save_dtype, rt.rank)
        if cfg.merge and cfg.method == "lora" and rt.main:
            merge_adapter(cfg.model, final, out / "merged", save_dtype)
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
