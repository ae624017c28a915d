"""Tiny models, tokenizers and shards for the sft tests: built offline in about a second, shared per session."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parents[1]

# The "model's own" chat template of the tiny tokenizer: Llama-3 style headers, BOS written by the template.
OWN_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
    "{{ m['content'] }}<|eot_id|>{% endfor %}{% if add_generation_prompt %}"
    "<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
SPECIALS = ["<pad>", "<s>", "</s>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
WORDS = ["the", "cat", "sat", "on", "a", "mat", "while", "rain", "fell", "over", "old", "town", "roads", "and", "people", "read", "news", "about", "parliament", "plans", "names", "Wales", "members", "change", "title", "habari", "ya", "leo", "jina", "la", "bunge", "kubadilisha", "ọmọ", "ile", "aṣoju", "ìpéjọpọ", "议会", "名称", "更改", "计划", "翻译", "成", "英语", "translate", "into", "English", "Swahili", "Chinese"]


def make_tokenizer(folder: Path, texts: list[str], vocab_size: int = 1024, chat_template: str | None = OWN_TEMPLATE,
                   specials: list[str] = SPECIALS) -> Any:
    """Byte-level BPE trained on `texts`; like Llama's, it adds BOS when asked for special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    bos = tok.token_to_id("<s>")
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                       special_tokens=[("<s>", bos)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    if chat_template:
        fast.chat_template = chat_template
    fast.save_pretrained(folder)
    return fast


def make_model(folder: Path, tokenizer: Any, seed: int = 0, layers: int = 2, hidden: int = 64) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=2048, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                         tie_word_embeddings=False)
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def synthetic_records(n: int, lang: str, seed: int, multi_turn_every: int = 4) -> list[dict[str, Any]]:
    """datakit-shaped records: short 'translations' of random words; every k-th record has two turns."""
    rng = np.random.default_rng(seed)

    def sentence(k: int) -> str:
        return " ".join(rng.choice(WORDS, size=k))

    records = []
    for i in range(n):
        src = sentence(int(rng.integers(3, 12)))
        messages = [{"role": "user", "content": f"Translate into Swahili:\n\n{src}"},
                    {"role": "assistant", "content": sentence(int(rng.integers(2, 10)))}]
        if multi_turn_every and i % multi_turn_every == 0:
            messages += [{"role": "user", "content": "Now shorter."},
                         {"role": "assistant", "content": sentence(int(rng.integers(1, 4)))}]
        records.append({"id": f"{seed:04d}{i:028d}", "messages": messages, "lang": lang, "src_lang": "eng_Latn",
                        "tgt_lang": lang, "task": "translation" if len(messages) == 2 else "interactive_translation",
                        "group": "cross_lingual", "source": "synthetic", "license": "CC0-1.0", "scores": "{}",
                        "meta": "{}"})
    return records


def write_shard(folder: Path, splits: dict[str, dict[str, list[dict[str, Any]]]]) -> Path:
    """A datakit-style output folder: data/<lang>/<split>-00000-of-00001.parquet + a card listing the configs."""
    langs = sorted({lang for by_lang in splits.values() for lang in by_lang})
    for split, by_lang in splits.items():
        for lang, rows in by_lang.items():
            (folder / "data" / lang).mkdir(parents=True, exist_ok=True)
            pq.write_table(pa.Table.from_pylist(rows), folder / "data" / lang / f"{split}-00000-of-00001.parquet")
    configs = [{"config_name": "default",
                "data_files": [{"split": sp, "path": f"data/*/{sp}-*.parquet"} for sp in splits]}]
    configs += [{"config_name": lang, "data_files": [{"split": sp, "path": f"data/{lang}/{sp}-*.parquet"}
                                                     for sp in splits if lang in splits[sp]]} for lang in langs]
    (folder / "README.md").write_text("---\n" + json.dumps({"configs": configs}) + "\n---\n# synthetic\n")
    return folder


@dataclass
class Tiny:
    model: Path  # a saved tiny Llama + its tokenizer
    tokenizer: Any


def _shared(tmp_path_factory: pytest.TempPathFactory, name: str) -> tuple[Path, bool]:
    """A folder shared by every test module of the session (fixtures imported into several modules run once)."""
    path = tmp_path_factory.getbasetemp() / "sft-shared" / name
    done = (path / ".done").exists()
    path.mkdir(parents=True, exist_ok=True)
    return path, done


@pytest.fixture(scope="session")
def synthetic_shard(tmp_path_factory) -> Path:
    path, done = _shared(tmp_path_factory, "synthetic-shard")
    if not done:
        write_shard(path, {"train": {"swh_Latn": synthetic_records(96, "swh_Latn", 1),
                                     "yor_Latn": synthetic_records(64, "yor_Latn", 2)},
                           "validation": {"swh_Latn": synthetic_records(12, "swh_Latn", 3),
                                          "yor_Latn": synthetic_records(12, "yor_Latn", 4)}})
        (path / ".done").touch()
    return path


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> Tiny:
    from transformers import AutoTokenizer

    path, done = _shared(tmp_path_factory, "tiny-llama")
    if not done:
        texts = [" ".join(WORDS)] * 20 + [json.dumps(r["messages"], ensure_ascii=False)
                                          for r in synthetic_records(200, "swh_Latn", 9)]
        tokenizer = make_tokenizer(path, texts, vocab_size=512)
        make_model(path, tokenizer)
        (path / ".done").touch()
    return Tiny(model=path, tokenizer=AutoTokenizer.from_pretrained(path))


@pytest.fixture(scope="session")
def datakit_shard(corpus, tmp_path_factory) -> Path:
    """A real output folder of datakit's build: pipelines/local.yaml on the shared corpus, 3 rows per source."""
    from datakit.build import BuildOptions, run_build

    path, done = _shared(tmp_path_factory, "datakit-shard")
    if not done:
        run_build(BuildOptions(recipe=str(ROOT / "pipelines" / "local.yaml"), data_dir=str(corpus),
                               output=str(path / "out"), sample=3, langs="swh_Latn", workers=1))
        (path / ".done").touch()
    return path / "out"


def train_config(tiny: Tiny, data: Path, tmp: Path, **overrides: Any):
    """A small, fast, deterministic CPU configuration; tests override what they examine."""
    from sft.config import load_config

    settings = {"model": str(tiny.model), "data": str(data), "output_dir": str(tmp / "run"),
                "cache_dir": str(tmp / "cache"), "precision": "fp32", "seq_len": 128, "batch_size": 4,
                "grad_accum": 1, "lr": 3e-3, "max_steps": 6, "method": "lora", "lora_r": 8, "lora_alpha": 16,
                "lora_dropout": 0.0, "warmup_steps": 1, "template": "model", "attn_implementation": "sdpa",
                "seed": 7, "log_every": 1}
    settings.update(overrides)
    return load_config(None, settings)


@pytest.fixture(autouse=False)
def one_thread():
    """Tiny matrices gain nothing from threads, and a shared 2-core machine makes them slower; restored after."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
