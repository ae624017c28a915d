"""Settings: YAML, then --key value overrides, checked against each field's type."""

from __future__ import annotations

import pytest

from sft.config import ConfigError, parse_args
from sft.train import oom_hint


@pytest.fixture
def cfg_file(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text("model: m\ndata: d\nlr: 1.0e-4\nconfigs: [swh_Latn]\nseq_len: 512\npacking: true\n")
    return path


def test_yaml_then_command_line_overrides(cfg_file):
    cfg = parse_args(["--config", str(cfg_file), "--lr", "3e-5", "--configs", "swh_Latn,yor_Latn", "--packing",
                      "false", "--max-steps=7", "--resume", "--system_prompt", "none"])
    assert cfg.lr == 3e-5 and isinstance(cfg.lr, float)  # YAML would read 3e-5 as a string
    assert cfg.configs == ["swh_Latn", "yor_Latn"]
    assert cfg.packing is False and cfg.resume is True
    assert cfg.max_steps == 7 and cfg.seq_len == 512
    assert cfg.system_prompt is None


@pytest.mark.parametrize(("argv", "message"), [
    (["--seq_len", "long"], "'seq_len' expects int"),
    (["--seq_length", "1"], "unknown setting 'seq_length' \\(did you mean 'seq_len'\\?\\)"),
    (["--method", "qlora"], "'method' must be one of lora, full"),
    (["--packing", "maybe"], "'packing' expects bool"),
    (["--batch_size", "0"], "'batch_size' must be at least 1"),
    (["--template", "chatml"], "'template' must be one of"),
    (["--max_steps", "2.5"], "'max_steps' expects int"),
])
def test_bad_settings_name_the_key(cfg_file, argv, message):
    with pytest.raises(ConfigError, match=message):
        parse_args(["--config", str(cfg_file), *argv])


def test_yaml_values_are_type_checked_and_required_keys_asked_for(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: m\ndata: d\nbatch_size: [1, 2]\n")
    with pytest.raises(ConfigError, match="'batch_size' expects int"):
        parse_args(["--config", str(bad)])
    with pytest.raises(ConfigError, match="'model' is required"):
        parse_args(["--data", "d"])


def test_out_of_memory_hint_says_what_to_change(cfg_file):
    hint = oom_hint(parse_args(["--config", str(cfg_file), "--batch_size", "8", "--grad_accum", "2"]))
    for advice in ("--grad_checkpointing true", "--batch_size 4 --grad_accum 4", "--seq_len 256", "--method lora",
                   "fsdp"):
        assert advice in hint


def test_example_configs_are_valid():
    from pathlib import Path

    folder = Path(__file__).resolve().parents[1] / "sft" / "configs"
    names = sorted(p.name for p in folder.glob("*.yaml"))
    assert names == ["llama3_8b_full.yaml", "llama3_8b_lora.yaml", "lora_tiny.yaml"]
    for name in names:
        cfg = parse_args(["--config", str(folder / name)])
        assert cfg.model and cfg.data


def test_language_weights_from_yaml_or_the_command_line(cfg_file, tmp_path):
    cfg = parse_args(["--config", str(cfg_file), "--language_weights", "swh_Latn=2,yor_Latn=0.5"])
    assert cfg.language_weights == {"swh_Latn": 2.0, "yor_Latn": 0.5}
    mapping = tmp_path / "mix.yaml"
    mapping.write_text("model: m\ndata: d\nlanguage_weights: {swh_Latn: 3}\nsampling_temperature: 2\n")
    cfg = parse_args(["--config", str(mapping)])
    assert cfg.language_weights == {"swh_Latn": 3.0} and cfg.sampling_temperature == 2.0
    with pytest.raises(ConfigError, match="'language_weights' expects"):
        parse_args(["--config", str(cfg_file), "--language_weights", "swh_Latn=lots"])
    with pytest.raises(ConfigError, match="'language_weights' must be >= 0"):
        parse_args(["--config", str(cfg_file), "--language_weights", "swh_Latn=-1"])
