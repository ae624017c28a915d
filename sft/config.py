"""Every training setting in one dataclass: defaults here, a YAML file over them, `--key value` over that.

`python -m sft.train --config cfg.yaml --lr 1e-4 --configs swh_Latn,yor_Latn --resume`
Values are checked against the field's type; an unknown or mistyped key is an error that names the key.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A setting is unknown, has the wrong type or an impossible value."""


@dataclass
class Config:
    # --- what to train, on what
    model: str = ""  # local folder or Hub id of a causal LM
    tokenizer: str | None = None  # defaults to `model`
    data: str = ""  # datakit output folder or Hub dataset id
    mirror: str = ""  # local mirror of Hub datasets, as datakit's --mirror: Hub id org/name is read from DIR/org/name
    configs: list[str] = field(default_factory=lambda: ["default"])  # dataset configs: languages, or default = all
    # Language mix of the training examples (the `lang` column), the rule of datakit's balance: p ~ n^(1/T) over the
    # languages' example counts n; `language_weights` (lang: weight) sets p ~ weight instead. T = 1 and no weights:
    # the data as it is. An epoch keeps its size; a language above its share is subsampled, one below is repeated.
    sampling_temperature: float = 1.0
    language_weights: dict[str, float] = field(default_factory=dict)
    template: str = "auto"  # auto | model | bayling | bayling3 | path/to/template.jinja
    system_prompt: str | None = None  # None: the template's own default (BayLing's for bayling*); "": none
    method: str = "lora"  # lora | full

    # --- LoRA (peft)
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_targets: list[str] = field(default_factory=lambda: ["all-linear"])  # or q_proj,k_proj,v_proj,o_proj,...
    merge: bool = False  # at the end, merge the adapter into the base model and save output_dir/merged

    # --- sequences and batches
    seq_len: int = 2048
    packing: bool = True  # several examples per row, kept apart by restarting positions + attention masks
    batch_size: int = 8  # rows per micro-batch per device
    grad_accum: int = 1  # micro-batches per optimizer step

    # --- optimisation
    lr: float = 2e-4
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio
    warmup_steps: int = 0
    weight_decay: float = 0.0  # applied to matrices only, never to norms and biases
    adam_beta1: float = 0.9
    adam_beta2: float = 0.95
    max_grad_norm: float = 1.0  # 0 = no clipping
    max_steps: int = 0  # > 0 wins over epochs
    epochs: float = 1.0

    # --- runtime
    precision: str = "auto"  # auto (bf16 on a GPU that has it, else fp32) | bf16 | fp32
    # auto: on a GPU flash_attention_2 (flash-attn installed), else torch_varlen (torch's own FlashAttention kernels),
    # else flex_attention; sdpa on the CPU. sdpa/eager build a dense (B, 1, L, L) mask for packed rows.
    attn_implementation: str = "auto"  # auto | flash_attention_2 | flash_attention_3 | torch_varlen | flex_attention | sdpa | eager
    grad_checkpointing: bool = False
    distributed: str = "ddp"  # under torchrun: ddp | fsdp
    compile: bool = False  # torch.compile each decoder layer
    seed: int = 42
    tokenize_timeout_s: int = 14400  # how long a process waits for another one tokenizing the same split (file lock)
    dist_timeout_s: int = 1800  # collectives under torchrun (tokenizing happens before the process group exists)

    # --- evaluation
    eval_every: int = 0  # steps; 0 = only at the end
    eval_holdout: int = 0  # with no validation split: hold out this many training examples (0 = no eval)
    eval_batches: int = 0  # cap on eval micro-batches per rank (0 = all)
    chrf_samples: int = 0  # held-out translation pairs per target language scored with chrF (0 = off)
    chrf_max_new_tokens: int = 256

    # --- output
    output_dir: str = "runs/sft"
    save_every: int = 0  # steps; 0 = only at the end; -1 = never save anything (benchmarks, dry runs)
    keep_checkpoints: int = 2
    log_every: int = 10  # a logged step waits for the GPU (loss, grad norm); the others never do
    tensorboard: bool = False  # also write TensorBoard events (needs the tensorboard package)
    cache_dir: str = ""  # tokenized-data cache; "" = $SFT_CACHE_DIR or ~/.cache/datakit/sft
    peak_tflops: float = 0.0  # per device, for MFU; 0 = look up the GPU model
    resume: bool = False  # continue from the latest complete checkpoint in output_dir

    def validate(self) -> Config:
        for key in ("model", "data"):
            if not getattr(self, key):
                raise ConfigError(f"'{key}' is required (set it in the YAML file or pass --{key} ...)")
        for key, allowed in CHOICES.items():
            if getattr(self, key) not in allowed:
                raise ConfigError(f"'{key}' must be one of {', '.join(allowed)}; got {getattr(self, key)!r}")
        if self.template not in TEMPLATES and not self.template.endswith(".jinja"):
            raise ConfigError(f"'template' must be one of {', '.join(TEMPLATES)} or a path to a .jinja file; "
                              f"got {self.template!r}")
        for key in ("seq_len", "batch_size", "grad_accum", "lora_r", "log_every", "keep_checkpoints"):
            if getattr(self, key) < 1:
                raise ConfigError(f"'{key}' must be at least 1; got {getattr(self, key)}")
        if self.save_every < -1:
            raise ConfigError(f"'save_every' must be -1 (never), 0 (at the end) or a number of steps; got {self.save_every}")
        for key in ("max_steps", "warmup_steps", "eval_every", "eval_holdout", "chrf_samples"):
            if getattr(self, key) < 0:
                raise ConfigError(f"'{key}' must not be negative; got {getattr(self, key)}")
        if self.max_steps == 0 and self.epochs <= 0:
            raise ConfigError("set 'max_steps' > 0 or 'epochs' > 0")
        if self.sampling_temperature <= 0:
            raise ConfigError(f"'sampling_temperature' must be positive; got {self.sampling_temperature}")
        bad = {k: w for k, w in self.language_weights.items() if w < 0}
        if bad or (self.language_weights and not any(self.language_weights.values())):
            raise ConfigError(f"'language_weights' must be >= 0 and not all 0; got {self.language_weights}")
        if self.lr <= 0:
            raise ConfigError(f"'lr' must be positive; got {self.lr}")
        if not self.configs:
            raise ConfigError("'configs' is empty: name at least one dataset config (or 'default')")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


CHOICES = {
    "method": ("lora", "full"),
    "precision": ("auto", "bf16", "fp32"),
    "attn_implementation": ("auto", "flash_attention_2", "flash_attention_3", "torch_varlen", "flex_attention", "sdpa",
                            "eager"),
    "distributed": ("ddp", "fsdp"),
}
TEMPLATES = ("auto", "model", "bayling", "bayling3")
_TRUE, _FALSE = {"true", "yes", "on", "1"}, {"false", "no", "off", "0"}


def _coerce(key: str, hint: Any, value: Any) -> Any:
    """Turn a YAML value or a command-line string into the field's type, or say which key is wrong."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):  # `X | None`
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "~")):
            return None
        hint = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(hint), typing.get_args(hint)
    want = getattr(hint, "__name__", str(hint))
    try:
        if origin is dict:  # YAML mapping, or "swh_Latn=2,yor_Latn=1" on the command line
            if isinstance(value, str):
                text = value.strip()
                value = yaml.safe_load(text) if text.startswith("{") else dict(
                    (k.strip(), v) for k, _, v in (part.partition("=") for part in text.split(",") if part.strip()))
            if not isinstance(value, dict):
                raise TypeError
            return {str(k): _coerce(key, args[1], v) for k, v in value.items()}
        if origin is list:
            if isinstance(value, str):
                value = yaml.safe_load(value) if value.strip().startswith("[") else value.split(",")
            if not isinstance(value, list):
                raise TypeError
            return [_coerce(key, args[0], v).strip() if args[0] is str else _coerce(key, args[0], v) for v in value]
        if hint is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
                return value.lower() in _TRUE
            raise TypeError
        if hint is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise TypeError
            return int(value)
        if hint is float:
            if isinstance(value, bool):
                raise TypeError
            return float(value)
        if hint is str:
            if isinstance(value, (dict, list)):
                raise TypeError
            return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"'{key}' expects {want}; got {value!r}") from None
    raise ConfigError(f"'{key}' has a type the parser does not know: {hint}")


def _field_types() -> dict[str, Any]:
    return typing.get_type_hints(Config)


def _check_key(key: str, types_: dict[str, Any]) -> str:
    key = key.replace("-", "_")
    if key not in types_:
        close = difflib.get_close_matches(key, types_, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"unknown setting '{key}'{hint}")
    return key


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Defaults, then the YAML file, then overrides (already split into key -> value)."""
    types_ = _field_types()
    values: dict[str, Any] = {}
    if path is not None:
        loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping of settings, got {type(loaded).__name__}")
        for key, value in loaded.items():
            key = _check_key(str(key), types_)
            values[key] = _coerce(key, types_[key], value)
    for key, value in (overrides or {}).items():
        key = _check_key(key, types_)
        values[key] = _coerce(key, types_[key], value)
    return Config(**values).validate()


def parse_args(argv: list[str]) -> Config:
    """`--config file.yaml --key value --key=value --flag` (a bool key given alone means true)."""
    types_ = _field_types()
    path, overrides, i = None, {}, 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("-h", "--help"):
            raise SystemExit(usage())
        if not arg.startswith("--"):
            raise ConfigError(f"expected --key value, got {arg!r}")
        key, eq, value = arg[2:].partition("=")
        if not eq:
            has_value = i + 1 < len(argv) and not argv[i + 1].startswith("--")
            if key == "config" or has_value:
                if not has_value:
                    raise ConfigError("--config needs a file")
                value, i = argv[i + 1], i + 1
            elif types_.get(key.replace("-", "_")) is bool:
                value = "true"
            else:
                raise ConfigError(f"--{key} needs a value")
        if key == "config":
            path = value
        else:
            overrides[_check_key(key, types_)] = value
        i += 1
    return load_config(path, overrides)


def usage() -> str:
    lines = ["usage: python -m sft.train --config cfg.yaml [--key value ...]", "", "settings (defaults):"]
    for f in dataclasses.fields(Config):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        lines.append(f"  --{f.name} {default!r}")
    return "\n".join(lines)
