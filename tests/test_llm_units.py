"""datakit.llm pieces that need no server: keys, parsing, prices, budget, validation, judge, redaction."""

from __future__ import annotations

import email.utils
import multiprocessing
import pickle
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import httpx2
import openai
import pytest
from openai_server import toy_lang_of as lang_of

from datakit.errors import DatakitError
from datakit.llm import (
    Answer,
    Budget,
    LLMClient,
    PriceTable,
    Request,
    ResponseCache,
    UnknownPrice,
    answer_validator,
    cache_key,
    check_answer,
    default_cache_dir,
    estimate_tokens,
    is_refusal,
    judge_validator,
    open_client,
    parse_judgement,
    parse_retry_after,
    redact,
)
from datakit.llm.pricing import max_prompt_tokens
from datakit.llm.protocol import MalformedResponse, parse_completion
from datakit.llm.redact import safe_endpoint
from datakit.llm.work import failure_of
from datakit.retry import Failure

MSGS = [{"role": "user", "content": "Translate into Swahili.\n\nHello"}]


def test_cache_key_is_canonical_and_covers_model_messages_params():
    k = cache_key("m", MSGS, {"temperature": 0, "max_tokens": 10})
    assert k == cache_key("m", [dict(reversed(list(MSGS[0].items())))], {"max_tokens": 10, "temperature": 0})
    assert len({k, cache_key("m2", MSGS, {"temperature": 0, "max_tokens": 10}),
                cache_key("m", MSGS, {"temperature": 0.1, "max_tokens": 10}),
                cache_key("m", [{"role": "user", "content": "other"}], {"temperature": 0, "max_tokens": 10})}) == 4
    with pytest.raises(ValueError, match="transport"):
        cache_key("m", MSGS, {"timeout": 3})


def test_parse_completion_strict_on_protocol_lenient_on_usage():
    ok = parse_completion('{"choices":[{"message":{"content":"Habari"},"finish_reason":"stop"}],'
                          '"usage":{"prompt_tokens":5,"completion_tokens":2}}')
    assert (ok.text, ok.finish_reason, ok.prompt_tokens, ok.completion_tokens) == ("Habari", "stop", 5, 2)
    assert not parse_completion({"choices": [{"message": {"content": ""}}]}).has_usage
    assert parse_completion({"choices": [{"message": {"content": None, "refusal": "no"}}]}).refusal == "no"
    for bad in ('{"choices": [', "[]", '{"choices": []}', '{"choices": [{"text": "x"}]}',
                '{"choices": [{"message": {"content": 3}}]}', b"\xff"):
        with pytest.raises(MalformedResponse):
            parse_completion(bad)


def test_retry_after_seconds_milliseconds_and_http_date():
    assert parse_retry_after({"retry-after": "2"}) == 2.0
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    now = time.time()
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert 28 <= parse_retry_after({"retry-after": date}, now=now) <= 31
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None


def test_llm_failures_add_malformed_bodies_to_the_shared_policy():
    request = httpx2.Request("POST", "http://127.0.0.1/v1/chat/completions")
    f = failure_of(MalformedResponse("no choices"))
    assert (f.retryable, f.kind, f.why) == (True, "malformed", "malformed response (no choices)")
    invalid = openai.APIResponseValidationError(httpx2.Response(200, request=request), body=None)
    assert failure_of(invalid).retryable and failure_of(invalid).kind == "malformed"
    bad = openai.BadRequestError("max_tokens is too large", body=None,
                                 response=httpx2.Response(400, request=request))
    assert failure_of(bad) == Failure(False, "HTTP 400: max_tokens is too large", "status", 400)
    limited = openai.RateLimitError("slow down", body=None,
                                    response=httpx2.Response(429, headers={"Retry-After": "2"}, request=request))
    assert failure_of(limited) == Failure(True, "HTTP 429: slow down", "status", 429, 2.0)
    assert failure_of(openai.APITimeoutError(request=request)).kind == "timeout"
    assert not failure_of(ValueError("a bug")).retryable


def test_prices_defaults_overrides_and_snapshots():
    table = PriceTable({"local-llama": {"input": 0, "output": 0}, "gpt-4o": {"input": 1, "output": 2, "batch": 0.4}})
    assert table.get("gpt-4o-mini-2024-07-18") == table.get("gpt-4o-mini")
    assert table.get("gpt-4o-2024-08-06").input == 1
    assert table.get("gpt-4o").cost(1_000_000, 500_000) == pytest.approx(2.0)
    assert table.get("gpt-4o").cost(1_000_000, 500_000, batch=True) == pytest.approx(0.8)
    assert table.get("local-llama").cost(10**9, 10**9) == 0
    assert table.get("mystery") is None
    with pytest.raises(UnknownPrice, match="llm.prices.mystery"):
        table.require("mystery")
    with pytest.raises(DatakitError):
        PriceTable({"x": {"input": "cheap"}})


def test_token_estimate_per_script_and_upper_bound():
    assert estimate_tokens("a" * 400) == 100
    assert estimate_tokens("你好世界") == 4  # one token per CJK character
    assert estimate_tokens("привет") == 3
    text = "Habari ya dunia 你好 мир " * 20
    msgs = [{"role": "user", "content": text}]
    # The bound the budget reserves is at least the UTF-8 byte count (>= tokens of any byte-level BPE).
    assert max_prompt_tokens(msgs) >= len(text.encode()) > estimate_tokens(text)


def test_budget_never_passes_cap_under_threads():
    budget = Budget(1.0)
    granted = []

    def worker():
        for _ in range(50):
            hold = budget.reserve(0.03)
            if hold is None:
                return
            granted.append(hold)
            time.sleep(0.0005)
            budget.settle(hold, 0.03)

    with ThreadPoolExecutor(8) as pool:
        for _ in range(8):
            pool.submit(worker)
    assert len(granted) == 33  # floor(1.0 / 0.03)
    assert budget.spent_usd <= 1.0
    assert budget.reserve(0.011) is None and budget.reserve(0.01) is not None


def test_budget_waits_for_requests_in_flight_rather_than_refusing():
    budget = Budget(1.0)
    hold = budget.reserve(0.8)
    threading.Timer(0.2, budget.settle, args=(hold, 0.1)).start()
    start = time.monotonic()
    assert budget.reserve(0.5) is not None  # fits once the 0.8 held settles at its real 0.1
    assert 0.15 <= time.monotonic() - start < 5
    start = time.monotonic()
    assert budget.reserve(0.95) is None  # 0.1 spent + 0.95 > 1.0 whatever happens: refused at once
    assert budget.reserve(0.5, wait=0.1) is None  # would fit if the 0.5 held settled cheaply: waits, times out
    assert 0.1 <= time.monotonic() - start < 1


def _hammer(client: LLMClient, worker: int, n: int) -> int:
    """One process of a run: spend from the shared budget and write answers into the shared cache."""
    got = 0
    for i in range(n):
        hold = client.budget.reserve(0.01)
        if hold is None:
            break
        client.budget.settle(hold, 0.01)
        got += 1
        key = cache_key("m", MSGS, {"seed": i})
        client.cache.put(key, model="m", messages=MSGS, params={"seed": i}, answer=Answer(f"{worker}:{i}"))
    return got


def test_one_budget_and_one_cache_for_several_processes(tmp_path):
    client = open_client("m", cache_dir=tmp_path, budget_usd=0.5, run_id="run-1")
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        counts = list(pool.map(_hammer, [client, client], [1, 2], [40, 40]))
    assert sum(counts) == 50 and min(counts) > 0
    ledger = tmp_path / "budget.sqlite3"
    assert Budget(0.5, ledger=ledger, run_id="run-1").spent_usd == pytest.approx(0.5)
    assert Budget(0.5, ledger=ledger, run_id="run-2").spent_usd == 0
    cache = ResponseCache(tmp_path)
    assert len(cache) == max(counts)  # one answer per key, whichever process wrote it first


def test_in_memory_budget_refuses_to_be_copied_to_other_processes(tmp_path):
    with pytest.raises(TypeError, match="ledger"):
        pickle.dumps(Budget(1.0))
    client = LLMClient("m", cache=tmp_path / "c", budget=Budget(1.0, ledger=tmp_path / "b.sqlite3"))
    clone = pickle.loads(pickle.dumps(client))
    assert clone.budget.cap_usd == 1.0 and clone.cache.dir == client.cache.dir


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("DATAKIT_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "datakit" / "llm"
    monkeypatch.setenv("DATAKIT_CACHE_DIR", str(tmp_path / "dk"))
    assert default_cache_dir() == tmp_path / "dk" / "llm"


def test_cache_persists_first_writer_wins_and_is_thread_safe(tmp_path):
    cache = ResponseCache(tmp_path)
    key = cache_key("m", MSGS, {})
    first = cache.put(key, model="m", messages=MSGS, params={}, answer=Answer("one", "stop", 3, 1))
    again = cache.put(key, model="m", messages=MSGS, params={}, answer=Answer("two", "stop", 3, 1))
    assert first.text == again.text == "one"
    keys = [cache_key("m", MSGS, {"seed": i}) for i in range(40)]

    def put(k):
        cache.put(k, model="m", messages=MSGS, params={}, answer=Answer(k[:6]))

    threads = [threading.Thread(target=put, args=(k,)) for k in keys]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    reopened = pickle.loads(pickle.dumps(ResponseCache(tmp_path)))
    assert len(reopened) == 41 and reopened.get(keys[7]).text == keys[7][:6]


@pytest.mark.parametrize("text", [
    "As an AI language model, I cannot translate this.", "I'm sorry, but I can't help with that.",
    "I’m sorry, but I can’t do that.", "作为一个AI语言模型，我无法完成这个任务。", "抱歉，我无法提供这个翻译。",
])
def test_refusals_are_recognised(text):
    assert is_refusal(text)
    assert check_answer(text).reason == "refusal"


def test_refusal_phrase_that_is_in_the_source_is_content():
    source = "He said: I'm sorry, but I can't come tomorrow."
    assert not is_refusal("Alisema: I'm sorry, but I can't come tomorrow.", source=source)


def test_check_answer_reasons_in_order():
    assert check_answer("   ").reason == "empty_answer"
    assert check_answer("x", refusal="policy").reason == "refusal"
    assert check_answer("Habari", finish_reason="length").reason == "truncated"
    assert check_answer("Same text", source="Same  text").reason == "untranslated"
    assert check_answer("Here is the translation: Habari", source="Hello", fmt=None).ok
    v = answer_validator(lang_of=lang_of)
    req = Request("r", MSGS, meta={"lang": "swh_Latn", "source": "Hello"})
    assert v(req, Answer("Here is the translation: Habari ya dunia")).reason == "bad_format"
    assert v(req, Answer("The cat is on the mat and it is happy")).reason == "wrong_language"
    assert v(req, Answer("Paka yuko kwenye mkeka na ni furaha")).ok
    unknown = v(req, Answer("Qwxz plorf"))
    assert unknown.ok and "unchecked" in unknown.detail
    assert check_answer("猫在垫子上", lang=["zho_Hans", "zho_Hant"], lang_of=lang_of).ok
    assert check_answer("猫在垫子上", lang="zho_Hans", lang_of=lambda t: ("zho_Hans", 0.3)).reason == "wrong_language"


@pytest.mark.parametrize("text,score", [
    ('{"score": 4, "reason": "fluent"}', 4),
    ('```json\n{"score": 5}\n```', 5),
    ("Score: 2\nReason: misses half the question", 2),
    ("score:1", 1),
])
def test_judge_accepts_only_documented_shapes(text, score):
    assert parse_judgement(text).score == score


@pytest.mark.parametrize("text", [
    '{"score": 4.0}', '{"score": "4"}', '{"score": 6}', '{"score": 0}', '{"score": true}', '{"rating": 4}',
    '{"score": 4, "confidence": 0.9}', 'The score is {"score": 4}', "Score: 4/5", "Score: four", "4",
    "I would give it a 4.", "Score: 3\nScore: 4", "", '{"score": 4', "```\nScore: 4\n```",
])
def test_judge_rejects_everything_else(text):
    j = parse_judgement(text)
    assert j.score is None and j.rejected == "judge_unparseable"


def test_judge_validator_threshold():
    v = judge_validator(3)
    req = Request("j", MSGS)
    assert v(req, Answer('{"score": 3, "reason": "ok"}')).ok
    assert v(req, Answer('{"score": 2, "reason": "poor"}')).reason == "judge_low_score"
    assert v(req, Answer("Pretty good, 4 maybe")).reason == "judge_unparseable"
    assert v(req, Answer("")).reason == "judge_unparseable"


def test_redact_masks_known_key_and_credential_shapes(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-SECRET-123")
    msg = redact("Incorrect API key provided: sk-test-SECRET-123; Authorization: Bearer abcdef123456")
    assert "SECRET" not in msg and "abcdef123456" not in msg
    assert redact("my-custom-key-value-77", ["my-custom-key-value-77"]) == "[REDACTED]"
    assert redact("answer mentions sk-like words", shapes=False) == "answer mentions sk-like words"
    assert safe_endpoint("https://user:sk-pass@api.example.com/v1?api-key=zzz") == "https://api.example.com/v1"
