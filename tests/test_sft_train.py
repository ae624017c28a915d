"""End to end on CPU: LoRA and full runs learn on datakit's real output; a killed run resumes exactly."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest
import sft_tiny
import torch
import yaml
from sft_tiny import ROOT, train_config

from sft.checkpoint import checkpoints
from sft.train import train

# fixtures shared by the sft test modules (sft_tiny)
datakit_shard = sft_tiny.datakit_shard
one_thread = sft_tiny.one_thread
synthetic_shard = sft_tiny.synthetic_shard
tiny = sft_tiny.tiny

REQUIRED = {"step", "loss", "lr", "tokens_per_s", "padding_efficiency", "mfu", "tflops_per_device", "grad_norm"}


def read_metrics(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def mean(xs):
    return sum(xs) / len(xs)


def assert_learns(records, margin):
    steps = [r for r in records if "loss" in r]
    assert all(r.keys() >= REQUIRED for r in steps)
    first, last = mean([r["loss"] for r in steps[:5]]), mean([r["loss"] for r in steps[-5:]])
    print(f"loss {first:.3f} -> {last:.3f}: " + " ".join(f"{r['loss']:.2f}" for r in steps))
    assert last < first - margin


def test_lora_run_learns_on_a_datakit_shard_and_merges(tiny, datakit_shard, tmp_path, one_thread):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # A random tiny model maps hidden states to logits at random: its lm_head needs an adapter too.
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "lm_head"]
    cfg = train_config(tiny, datakit_shard, tmp_path, method="lora", lora_targets=targets, lora_r=16, lora_alpha=32,
                       lr=2e-2, seq_len=256, batch_size=4, max_steps=30, eval_holdout=8, merge=True)
    records = train(cfg)
    assert_learns(records, margin=0.5)
    assert read_metrics(tmp_path / "run") == json.loads(json.dumps(records))
    evals = [r for r in records if "eval_loss" in r]
    assert evals and evals[-1]["eval_loss"] < records[0]["loss"]  # held-out examples, no validation split here
    # the merged model computes what base + adapter computes, without peft
    ids = torch.tensor([tiny.tokenizer("habari ya leo")["input_ids"]])
    with_adapter = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny.model), tmp_path / "run/final")
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "run" / "merged")
    with torch.no_grad():
        torch.testing.assert_close(merged(ids).logits, with_adapter(ids).logits, atol=1e-4, rtol=1e-4)
    saved = AutoTokenizer.from_pretrained(tmp_path / "run" / "merged")
    assert saved.chat_template == tiny.tokenizer.chat_template  # inference formats prompts as training did


def test_full_run_learns_on_a_datakit_shard(tiny, datakit_shard, tmp_path, one_thread):
    from transformers import AutoModelForCausalLM

    cfg = train_config(tiny, datakit_shard, tmp_path, method="full", lr=3e-3, seq_len=256, batch_size=4,
                       max_steps=30, template="bayling", weight_decay=0.1, warmup_steps=3)
    records = train(cfg)
    assert_learns(records, margin=1.0)
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "run" / "final")
    assert sum(p.numel() for p in model.parameters()) > 0
    assert (tmp_path / "run" / "final" / "chat_template.jinja").read_text().count("### Instruction") >= 1


def test_validation_split_chrf_and_loss_per_language_with_a_language_mix(tiny, synthetic_shard, tmp_path, one_thread):
    records = train(train_config(tiny, synthetic_shard, tmp_path, max_steps=4, eval_every=2, chrf_samples=2,
                                 chrf_max_new_tokens=4, sampling_temperature=3.0, log_every=2))
    evals = [r for r in read_metrics(tmp_path / "run") if "eval_loss" in r]
    assert [r["step"] for r in evals] == [2, 4]
    assert set(evals[-1]["chrf"]) == {"swh_Latn", "yor_Latn"}
    by_lang = evals[-1]["eval_loss_by_lang"]  # beside the global one, in metrics.jsonl
    assert set(by_lang) == {"swh_Latn", "yor_Latn"} and min(by_lang.values()) <= evals[-1]["eval_loss"] <= max(
        by_lang.values())
    assert [r["step"] for r in records if "loss" in r] == [2, 4]  # log_every: the other steps never wait for a sync
    run = json.loads((tmp_path / "run" / "run_config.json").read_text())
    assert run["config"]["sampling_temperature"] == 3.0 and run["attention"] == "sdpa"
    mix = run["language_mix"]  # 96 swh_Latn vs 64 yor_Latn examples, flattened towards equal by T = 3
    assert mix["swh_Latn"]["available"] > mix["swh_Latn"]["sampled"] and mix["yor_Latn"]["sampled"] > 64
    assert "peak_rss_gb" in records[-1] and records[-1]["run_seconds"] > 0  # the run's peak memory, logged


def test_resume_refuses_other_data_seq_len_or_rows_per_step_and_names_them(tiny, synthetic_shard, tmp_path):
    train(train_config(tiny, synthetic_shard, tmp_path, max_steps=2, batch_size=4, save_every=2))

    def again(**changed):
        settings = {"max_steps": 3, "batch_size": 4, "save_every": 2, "resume": True, **changed}
        return train(train_config(tiny, synthetic_shard, tmp_path, **settings))

    with pytest.raises(SystemExit, match=r"changed since it was written: seq_len 128 -> 256"):
        again(seq_len=256)
    with pytest.raises(SystemExit, match=r"rows_per_step 4 -> 8"):
        again(batch_size=8)
    with pytest.raises(SystemExit, match=r"data '\w+' -> '\w+'; .*sampling_temperature 1.0 -> 2.0"):
        again(configs=["swh_Latn"], sampling_temperature=2.0)
    resumed = again(batch_size=2, grad_accum=2)  # the same rows per step, split differently: the same gradients
    assert [r["step"] for r in resumed if "loss" in r] == [3]


def test_refuses_to_overwrite_checkpoints_without_resume(tiny, synthetic_shard, tmp_path):
    train(train_config(tiny, synthetic_shard, tmp_path, max_steps=1))
    with pytest.raises(SystemExit, match="--resume"):
        train(train_config(tiny, synthetic_shard, tmp_path, max_steps=1))


def test_killed_run_resumes_with_the_uninterrupted_losses(tiny, synthetic_shard, tmp_path, one_thread):
    """Kill -9 a real `python -m sft.train` after a checkpoint, resume it: every step's loss as if never stopped.

    LoRA dropout is on (the RNG state matters), the run crosses an epoch (the data position matters), the
    schedule decays (the scheduler matters), Adam has moments (the optimizer matters).
    """
    settings = {"max_steps": 40, "save_every": 4, "keep_checkpoints": 2, "lora_dropout": 0.1, "batch_size": 2,
                "seq_len": 128, "warmup_steps": 3}
    whole = train(train_config(tiny, synthetic_shard, tmp_path / "whole", **settings))
    cfg = train_config(tiny, synthetic_shard, tmp_path / "killed", **settings)
    cfg_path = tmp_path / "killed.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg.to_dict()))
    run = tmp_path / "killed" / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "sft.train", "--config", str(cfg_path)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not checkpoints(run) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL, stderr.decode()[-2000:]
    stopped_at = checkpoints(run)[-1][0]
    assert stopped_at < settings["max_steps"]
    resumed = train(train_config(tiny, synthetic_shard, tmp_path / "killed", resume=True, **settings))
    assert resumed[0]["step"] == stopped_at + 1
    logged = read_metrics(run)  # the killed run's lines up to the checkpoint, then the resumed run's
    assert [r["step"] for r in logged if "loss" in r] == list(range(1, settings["max_steps"] + 1))
    pairs = list(zip([r for r in logged if "loss" in r], [r for r in whole if "loss" in r], strict=True))
    print(f"killed after checkpoint {stopped_at}; max loss difference "
          f"{max(abs(a['loss'] - b['loss']) for a, b in pairs):.2e}")
    for a, b in pairs:
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-6, abs=1e-7), a["step"]
        assert a["lr"] == pytest.approx(b["lr"], rel=1e-12)
    assert [s for s, _ in checkpoints(run)] == [36, 40]  # only the last keep_checkpoints remain


def test_tokenizer_of_another_model_is_refused(tiny, synthetic_shard, tmp_path):
    import random

    from sft_tiny import make_tokenizer

    from sft.model import ModelError

    rng = random.Random(0)
    texts = [" ".join("".join(rng.choices("abcdefghijklmnop", k=rng.randint(2, 9))) for _ in range(200))
             for _ in range(50)]
    bigger = make_tokenizer(tmp_path / "tok", texts, vocab_size=2000)
    assert len(bigger) > len(tiny.tokenizer)
    with pytest.raises(ModelError, match="tokenizer has .* tokens but .* embedding rows"):
        train(train_config(tiny, synthetic_shard, tmp_path, tokenizer=str(tmp_path / "tok"), max_steps=1))


def test_bf16_autocast_runs_on_cpu(tiny, synthetic_shard, tmp_path, one_thread):
    records = train(train_config(tiny, synthetic_shard, tmp_path, precision="bf16", max_steps=2, save_every=-1))
    assert all(math.isfinite(r["loss"]) for r in records if "loss" in r)
    assert not (tmp_path / "run" / "final").exists()  # save_every -1: nothing written but metrics
