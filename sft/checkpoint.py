"""Checkpoints that resume exactly, and the final export.

output_dir/checkpoint-<step>/
    train_state/      model (trainable weights only: the adapter under LoRA) + optimizer, torch.distributed.checkpoint
                      (each FSDP rank writes its own shards; DDP and a single process write one copy)
    scheduler.pt      learning-rate schedule position
    rng-<rank>.pt     Python, NumPy, torch CPU and CUDA generator states of every rank (dropout draws)
    state.json        step, data position (epoch, row), world size, the config, and the run's data identity
                      (`guard`: data fingerprint, seq_len, packing, seed, language mix, rows per step)
A checkpoint is written to checkpoint-<step>.tmp and renamed when every rank has finished, so a run killed while
saving leaves only complete checkpoints behind; resume takes the highest complete step.
The data position needs no saved iterator: the rows of step s are a pure function of (seed, s) (data.Batches).
That holds only for the same rows: resume refuses a run whose guard differs, and says what changed. Splitting the
same rows per step differently (batch_size x grad_accum) is allowed: it gives the same gradients.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_state_dict,
    set_state_dict,
)

_NAME = re.compile(r"^checkpoint-(\d+)$")
_OPTIONS = StateDictOptions(ignore_frozen_params=True)


def _barrier() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


def _rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoints(output_dir: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints, oldest first."""
    found = [(int(m.group(1)), p) for p in Path(output_dir).glob("checkpoint-*")
             if p.is_dir() and (m := _NAME.match(p.name)) and (p / "state.json").is_file()]
    return sorted(found)


def latest_checkpoint(output_dir: Path) -> Path | None:
    found = checkpoints(output_dir)
    return found[-1][1] if found else None


def save_checkpoint(output_dir: Path, step: int, module: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: Any, state: dict[str, Any], rank: int, keep: int) -> Path:
    """Collective: every rank calls it."""
    final = Path(output_dir) / f"checkpoint-{step}"
    tmp = final.with_name(final.name + ".tmp")
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    _barrier()
    model_sd, optim_sd = get_state_dict(module, optimizer, options=_OPTIONS)
    dcp.save({"model": model_sd, "optim": optim_sd}, checkpoint_id=str(tmp / "train_state"))
    torch.save(_rng_state(), tmp / f"rng-{rank}.pt")
    _barrier()
    if rank == 0:
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        (tmp / "state.json").write_text(json.dumps({**state, "step": step}, indent=1), encoding="utf-8")
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        for _, old in checkpoints(output_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    _barrier()
    return final


def check_resumable(path: Path, state: dict[str, Any], world: int, guard: dict[str, Any]) -> None:
    """Refuse to continue a checkpoint whose step s would train on other rows than it did, naming what changed."""
    if state.get("world_size", world) != world:
        raise SystemExit(f"{path} was written by {state['world_size']} ranks; resume with the same number "
                         f"(now {world}): the data position and RNG streams are per rank")
    saved = state.get("guard")
    if saved is None:  # written before the guard existed
        return
    now = json.loads(json.dumps(guard))
    changed = [f"{key} {saved.get(key)!r} -> {value!r}" for key, value in now.items() if saved.get(key) != value]
    if changed:
        raise SystemExit(f"cannot resume from {path}: changed since it was written: {'; '.join(changed)}. "
                         "Step s would train on other rows than it did; restore those settings or start a new "
                         "output_dir")


def load_checkpoint(path: Path, module: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
                    rank: int, world: int, guard: dict[str, Any] | None = None) -> dict[str, Any]:
    """Collective. Restores weights, optimizer, schedule and this rank's RNG; returns state.json."""
    state = json.loads((path / "state.json").read_text(encoding="utf-8"))
    check_resumable(path, state, world, guard or {})
    model_sd, optim_sd = get_state_dict(module, optimizer, options=_OPTIONS)
    loaded = {"model": model_sd, "optim": optim_sd}
    dcp.load(loaded, checkpoint_id=str(path / "train_state"))
    # strict=False: frozen weights (LoRA's base) are not in the checkpoint; dcp.load above already failed on
    # any trainable weight the checkpoint lacks.
    set_state_dict(module, optimizer, model_state_dict=loaded["model"], optim_state_dict=loaded["optim"],
                   options=StateDictOptions(ignore_frozen_params=True, strict=False))
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=False))
    _set_rng_state(torch.load(path / f"rng-{rank}.pt", weights_only=False))
    return state


def export(module: torch.nn.Module, model: torch.nn.Module, tokenizer: Any, chat_template: str,
           out_dir: Path, lora: bool, save_dtype: torch.dtype, rank: int) -> None:
    """Collective. The adapter (LoRA) or the full model in Hugging Face format, with the tokenizer carrying the
    chat template it was trained with, so inference formats prompts the same way."""
    full = get_model_state_dict(module, options=StateDictOptions(full_state_dict=True, cpu_offload=True,
                                                                 ignore_frozen_params=lora))
    if rank != 0:
        return
    prefix = "model."  # CausalLMLoss keeps the model as .model
    state = {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in full.items()}
    if not lora:
        state = {k: v.to(save_dtype) if v.is_floating_point() else v for k, v in state.items()}
    model.save_pretrained(out_dir, state_dict=state)
    tokenizer.chat_template = chat_template
    tokenizer.save_pretrained(out_dir)


def merge_adapter(base: str, adapter_dir: Path, out_dir: Path, dtype: torch.dtype) -> None:
    """Fold a LoRA adapter into its base model and save a plain model (+ tokenizer) that needs no peft."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(base, dtype=dtype)
    merged = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    merged.save_pretrained(out_dir)
    AutoTokenizer.from_pretrained(adapter_dir).save_pretrained(out_dir)
