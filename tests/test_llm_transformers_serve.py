"""LLMClient against `transformers serve`: a real OpenAI-compatible server, not ours.

The model is a tiny Llama built here from a config, with a byte-level BPE tokenizer trained
offline and a chat template: no download, HF_HOME in a temporary folder (with the `hub`
subfolder `transformers serve` scans), HF_HUB_OFFLINE=1. Its answers are noise; what is under
test is the protocol: requests, usage, finish reasons, concurrency, the cache.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="transformers[serving] is not installed")
pytest.importorskip("uvicorn", reason="transformers[serving] is not installed")

from datakit.llm import LLMClient, Request  # noqa: E402

KEY = "sk-test-SECRET-serve"


def build_tiny_model(out: Path) -> None:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<s>", "</s>", "<pad>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(["Translate the following English text into Swahili.", "Habari ya dunia", "你好世界"],
                            trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    fast.chat_template = ("{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}</s>{% endfor %}"
                          "{% if add_generation_prompt %}<s>assistant: {% endif %}")
    fast.save_pretrained(out)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(fast), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
                         bos_token_id=0, eos_token_id=1, pad_token_id=2)
    LlamaForCausalLM(config).save_pretrained(out)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def serve(tmp_path_factory):
    root = tmp_path_factory.mktemp("tf-serve")
    model = root / "tiny-llama"
    build_tiny_model(model)
    (root / "hf" / "hub").mkdir(parents=True)  # without it /v1/models answers 500
    port = free_port()
    env = {**os.environ, "HF_HOME": str(root / "hf"), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    log = (root / "serve.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-c", "from transformers.cli.transformers import main; main()",
                             "serve", str(model), "--host", "127.0.0.1", "--port", str(port), "--device", "cpu",
                             "--log-level", "warning"], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/models", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"transformers serve did not start: {(root / 'serve.log').read_text()[-3000:]}")
            time.sleep(0.3)
        yield url, model, root
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_llm_client_against_transformers_serve(serve, tmp_path, monkeypatch):
    url, model, root = serve
    monkeypatch.setenv("OPENAI_BASE_URL", url)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    reqs = [Request(f"r{i}", [{"role": "user", "content": f"Translate the following English text into Swahili.\n\n"
                                                          f"Sentence number {i}."}], params={"seed": i})
            for i in range(4)]
    c = LLMClient(str(model), params={"max_tokens": 6}, concurrency=2, timeout=60, cache=tmp_path / "cache",
                  budget=0.05, prices={str(model): {"input": 1.0, "output": 2.0}}, backoff_base=0.2)
    out = c.run(reqs)
    assert all(o.ok for o in out), [(o.id, o.reason, o.detail) for o in out]
    for o in out:
        assert o.prompt_tokens and o.prompt_tokens > 0 and 0 < o.completion_tokens <= 6
        assert o.finish_reason in ("length", "stop") and isinstance(o.text, str)
        assert o.cost_usd == pytest.approx((o.prompt_tokens * 1.0 + o.completion_tokens * 2.0) / 1e6)
    assert c.calls == 4 and c.budget.spent_usd <= 0.05
    again = LLMClient(str(model), params={"max_tokens": 6}, cache=tmp_path / "cache")
    assert [o.text for o in again.run(reqs)] == [o.text for o in out] and again.calls == 0
    for path in [*tmp_path.rglob("*"), root / "serve.log"]:
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path
