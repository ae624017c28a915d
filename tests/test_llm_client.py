"""LLMClient against a real OpenAI-compatible HTTP server on 127.0.0.1 answering NTREX references.

Nothing is mocked: the openai client talks HTTP to `tests/openai_server.py`, which answers with
the NTREX-128 reference line in the requested language, and fails on request (429, 5xx, slow,
malformed, dropped connections). Skipped when the shared corpus is absent.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys
import traceback
from pathlib import Path

import pytest
from openai_server import CHAT, OpenAIStub
from openai_server import toy_lang_of as lang_of

from datakit.errors import DatakitError
from datakit.llm import (
    LLMClient,
    Request,
    answer_validator,
    judge_messages,
    judge_validator,
    translation_messages,
)
from datakit.llm.batch import BatchOptions, _call
from datakit.llm.redact import MASK

ROOT = Path(__file__).resolve().parents[1]
KEY = "sk-test-SECRET-123"
MODEL = "ntrex-mt"
# A generous timeout everywhere (a busy 2-core CI machine must not time out by accident), except in
# the tests that inject "slow" answers, which use FAST_TIMEOUT < SLOW.
TIMEOUT, FAST_TIMEOUT, SLOW = 10.0, 1.5, 3.0
PRICES = {MODEL: {"input": 1000.0, "output": 1000.0}}  # $0.001 per token: budgets in whole dollars


@pytest.fixture(scope="module")
def ntrex(corpus) -> Path:
    d = corpus / "ntrex128" / "NTREX-128"
    if not (d / "newstest2019-src.eng.txt").is_file():
        pytest.skip("NTREX-128 is not in the shared corpus")
    return d


@pytest.fixture(scope="module")
def server(ntrex):
    with OpenAIStub(ntrex, slow_seconds=SLOW) as s:
        yield s


@pytest.fixture
def stub(server, monkeypatch):
    server.clear()
    server.retry_after = "1"
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    return server


@pytest.fixture(scope="module")
def english(ntrex) -> list[str]:
    return (ntrex / "newstest2019-src.eng.txt").read_text(encoding="utf-8").splitlines()


def refs(ntrex: Path, code: str) -> list[str]:
    return (ntrex / f"newstest2019-ref.{code}.txt").read_text(encoding="utf-8").splitlines()


def requests_for(english: list[str], lines: range, tgt: str = "swh_Latn", **params) -> list[Request]:
    return [Request(f"ntrex:{i}:{tgt}", translation_messages(english[i], "eng_Latn", tgt), params=params,
                    meta={"lang": tgt, "source": english[i]}) for i in lines]


def client(tmp_path: Path, **kw) -> LLMClient:
    opts = {"cache": tmp_path / "cache", "concurrency": 4, "timeout": TIMEOUT, "backoff_base": 0.05,
            "max_retries": 6, "prices": PRICES, "batch_options": BatchOptions(poll_interval=0.05), **kw}
    return LLMClient(MODEL, **opts)


def test_happy_path_real_text_through_validation(stub, english, ntrex, tmp_path):
    reqs = requests_for(english, range(0, 10)) + requests_for(english, range(0, 10), "zho_Hans")
    c = client(tmp_path)
    plan = c.plan(reqs)
    assert (plan.requests, plan.to_send, plan.cached) == (20, 20, 0) and plan.cost_usd > 0
    assert stub.events == []  # planning sends nothing
    out = c.run(reqs, validator=answer_validator(lang_of=lang_of))
    assert all(o.ok for o in out), [(o.id, o.reason, o.detail) for o in out if not o.ok]
    assert [o.text for o in out] == refs(ntrex, "swa")[:10] + refs(ntrex, "zho-CN")[:10]
    assert all(o.prompt_tokens and o.completion_tokens and o.cost_usd > 0 for o in out)
    assert len(stub.events) == 20 and stub.max_inflight <= 4


def test_every_prompt_answered_once_under_faults(stub, english, tmp_path):
    faults = {"429": 2, "500": 2, "503": 1, "slow": 2, "malformed": 2, "no_choices": 1, "drop": 2, "drop_mid": 1}
    for kind, n in faults.items():
        stub.inject(kind, times=n)
    reqs = requests_for(english, range(20, 36))
    # Global faults may all land on one prompt: allow as many retries as there are faults.
    c = client(tmp_path, concurrency=3, timeout=FAST_TIMEOUT, max_retries=sum(faults.values()), backoff_max=0.5)
    out = c.run(reqs, validator=answer_validator(lang_of=lang_of))
    assert all(o.ok for o in out), [(o.id, o.reason, o.detail) for o in out if not o.ok]
    seen = stub.by_prompt()
    assert sorted(seen) == sorted(english[20:36])
    for prompt, answers in seen.items():
        assert answers.count("ok") == 1 and answers[-1] == "ok", (prompt, answers)
    got = [a for answers in seen.values() for a in answers if a != "ok"]
    assert sorted(got) == sorted(k for k, n in faults.items() for _ in range(n))  # each fault met once
    assert len(stub.events) == 16 + sum(faults.values()) == c.calls
    # At most 3 in flight from the client; a timed-out slow request lingers on the server a while.
    assert stub.max_inflight <= 3 + faults["slow"]


def test_retry_after_is_honoured(stub, english, tmp_path):
    stub.inject("429", times=1)
    out = client(tmp_path, concurrency=1).run(requests_for(english, range(40, 41)))
    assert out[0].ok and out[0].attempts == 2
    first, second = stub.events
    assert (first.answer, second.answer) == ("429", "ok")
    assert second.t - first.t >= 0.95  # Retry-After: 1, not the 0.05 s backoff


def test_rerun_and_fresh_process_send_nothing(stub, english, ntrex, tmp_path):
    reqs = requests_for(english, range(50, 62))
    first = client(tmp_path).run(reqs)
    assert all(o.ok for o in first) and len(stub.events) == 12
    again = client(tmp_path).run(reqs)
    assert len(stub.events) == 12
    assert [o.text for o in again] == [o.text for o in first] and all(o.cached and o.cost_usd == 0 for o in again)
    # A fresh process, same cache folder, no key at all: everything comes from the cache.
    script = f"""
import json
from pathlib import Path
from datakit.llm import LLMClient, Request, translation_messages
src = Path({str(ntrex / "newstest2019-src.eng.txt")!r}).read_text(encoding="utf-8").splitlines()
reqs = [Request(str(i), translation_messages(src[i], "eng_Latn", "swh_Latn")) for i in range(50, 62)]
out = LLMClient({MODEL!r}, cache={str(tmp_path / "cache")!r}).run(reqs)
print(json.dumps([[o.ok, o.cached, o.text] for o in out]))
"""
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    env["PYTHONPATH"] = str(ROOT)
    res = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr[-2000:]
    rows = json.loads(res.stdout.strip().splitlines()[-1])
    assert rows == [[True, True, o.text] for o in first]
    assert len(stub.events) == 12


def test_budget_cap_is_never_exceeded(stub, english, tmp_path):
    cap = 1.5
    stub.inject("slow", times=1)  # a timed-out answer the server still "bills"
    reqs = requests_for(english, range(100, 124), max_tokens=200)
    c = client(tmp_path, budget=cap, timeout=FAST_TIMEOUT)
    out = c.run(reqs)
    ok = [o for o in out if o.ok]
    skipped = [o for o in out if o.reason == "budget_exceeded"]
    assert ok and skipped and len(ok) + len(skipped) == len(reqs)
    assert sum(o.cost_usd for o in out) <= cap and c.budget.spent_usd <= cap
    billed = sum(p + q for p, q in stub.billed) * 0.001  # what the server says it served, delivered or not
    assert billed <= cap
    # Refused requests were not sent (or, refused on a retry, not sent again).
    sent = stub.by_prompt()
    assert all(len(sent.get(english[int(o.id.split(":")[1])], [])) == o.attempts for o in skipped)
    assert sum(o.attempts == 0 for o in skipped) >= 1
    # A new run with a new budget pays only for what is left; the answers already bought are free.
    before = len(stub.events)
    rest = client(tmp_path, budget=cap).run(reqs)
    assert [o.text for o in rest[:len(ok)] if o.cached] and len(stub.events) - before <= len(skipped)
    assert all(o.cached for o, prev in zip(rest, out, strict=True) if prev.ok)


def test_budget_without_a_price_is_refused_before_sending(stub, english, tmp_path):
    c = LLMClient("unpriced-model", cache=tmp_path / "c", budget=1.0)
    with pytest.raises(DatakitError, match="llm.prices.unpriced-model"):
        c.run(requests_for(english, range(3)))
    assert stub.events == []


def test_bad_answers_are_rejected_once_and_cached(stub, english, tmp_path):
    lines = english[130:136]
    stub.inject("refusal", match=lines[0])
    stub.inject("empty", match=lines[1])
    stub.inject("english", match=lines[2])
    stub.inject("400", match=lines[3])
    stub.inject("500", times=10, match=lines[4])
    reqs = requests_for(english, range(130, 136))
    reqs[5] = dataclasses.replace(reqs[5], meta={"lang": "zho_Hans"})  # a Swahili answer for a Chinese record
    c = client(tmp_path, max_retries=2)
    out = c.run(reqs, validator=answer_validator(lang_of=lang_of))
    assert [o.reason for o in out] == ["refusal", "empty_answer", "untranslated", "llm_error", "llm_error",
                                       "wrong_language"]
    assert "HTTP 400" in out[3].detail and out[3].attempts == 1  # a bad request is not retried
    assert out[4].attempts == 3 and "after 3 attempts" in out[4].detail
    seen = stub.by_prompt()
    assert [len(seen[t]) for t in lines] == [1, 1, 1, 1, 3, 1]
    # Re-run: rejected answers come from the cache (no second request); errors are asked again
    # (the 400 was a one-off and is answered now; the 500s go on).
    again = client(tmp_path, max_retries=2).run(reqs, validator=answer_validator(lang_of=lang_of))
    assert [o.reason for o in again] == ["refusal", "empty_answer", "untranslated", None, "llm_error",
                                         "wrong_language"]
    seen = stub.by_prompt()
    assert [len(seen[t]) for t in lines] == [1, 1, 1, 2, 6, 1]


def test_duplicates_are_sent_once(stub, english, tmp_path):
    reqs = requests_for(english, range(140, 143)) * 2
    out = client(tmp_path).run(reqs)
    assert len(stub.events) == 3 and all(o.ok for o in out)
    assert [o.cached for o in out] == [False] * 3 + [True] * 3 and out[0].text == out[3].text


def test_judge_through_the_same_client(stub, english, tmp_path):
    c = client(tmp_path)
    reqs = [Request(f"judge:{i}", judge_messages(english[i], "Jibu"), params={"temperature": 0}) for i in range(3)]
    stub.judge_reply = '{"score": 4, "reason": "fluent"}'
    assert all(o.ok for o in c.run(reqs[:2], validator=judge_validator(3)))
    stub.judge_reply = "I'd say 4 out of 5."
    bad = c.run(reqs, validator=judge_validator(3))
    assert [o.reason for o in bad] == [None, None, "judge_unparseable"]
    stub.judge_reply = '{"score": 4, "reason": "fluent"}'


def test_batch_api_fills_the_same_cache(stub, english, ntrex, tmp_path):
    lines = range(200, 210)
    stub.inject("500", match=english[203], path="batch")
    stub.inject("503", times=1, path="/v1/batches")  # batches.create is retried like a chat call
    c = client(tmp_path)
    out = c.run(requests_for(english, lines), batch=True, validator=answer_validator(lang_of=lang_of))
    assert [o.reason for o in out] == [None] * 3 + ["llm_error"] + [None] * 6
    assert [o.text for i, o in enumerate(out) if i != 3] == [refs(ntrex, "swa")[i] for i in lines if i != 203]
    assert all(o.via == "batch" for o in out) and stub.by_prompt(CHAT) == {}
    assert [e.answer for e in stub.events if e.path == "/v1/batches"] == ["503", "ok"]
    # A live run afterwards sends only the one the batch failed.
    live = client(tmp_path).run(requests_for(english, lines))
    assert all(o.ok for o in live) and [o.cached for o in live].count(False) == 1
    assert list(stub.by_prompt(CHAT)) == [english[203]]


def test_batch_respects_the_budget(stub, english, tmp_path):
    cap = 1.5
    c = client(tmp_path, budget=cap)
    out = c.run(requests_for(english, range(230, 240), max_tokens=200), batch=True)
    ok = [o for o in out if o.ok]
    skipped = [o for o in out if o.reason == "budget_exceeded"]
    assert ok and skipped and len(ok) + len(skipped) == 10
    assert sum(o.cost_usd for o in out) <= cap and c.budget.spent_usd <= cap
    assert sum(p + q for p, q in stub.billed) * 0.001 * 0.5 <= cap  # at batch prices
    assert len(stub.by_prompt("batch")) == len(ok)  # refused ones were not submitted


def test_batch_left_pending_is_collected_not_resubmitted(stub, english, tmp_path):
    stub.batch_polls = 3
    reqs = requests_for(english, range(220, 224))
    impatient = client(tmp_path, batch_options=BatchOptions(poll_interval=0.01, max_wait=0.0))
    out = impatient.run(reqs, batch=True)
    assert all(o.reason == "llm_error" and "re-run to collect" in o.detail for o in out)
    still = client(tmp_path, batch_options=BatchOptions(poll_interval=0.01, max_wait=0.0)).run(reqs, batch=True)
    assert all(o.reason == "llm_error" for o in still)  # still running: waited for, not resubmitted
    later = client(tmp_path).run(reqs, batch=True)
    assert all(o.ok for o in later)
    assert [e.path for e in stub.events].count("/v1/batches") == 1  # submitted once, collected later
    assert len(stub.by_prompt("batch")) == 4


def test_the_key_is_written_nowhere(stub, english, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    lines = english[300:308]
    stub.inject("401_echo", match=lines[0])
    stub.inject("500", times=2)
    stub.inject("malformed", times=1)
    c = client(tmp_path, max_retries=3)
    out = c.run(requests_for(english, range(300, 308)))
    assert out[0].reason == "llm_error" and f"Incorrect API key provided: {MASK}" in out[0].detail
    assert all(o.ok for o in out[1:])
    stub.inject("401_echo", times=1, path="/v1/files")
    batch_out = c.run(requests_for(english, range(310, 312)), batch=True)
    assert all(o.reason == "llm_error" and "Incorrect API key provided" in o.detail for o in batch_out)
    stub.inject("401_echo", times=1, path="/v1/files")
    with pytest.raises(DatakitError) as err:  # errors the Batch API path raises are redacted too
        _call(c, "files.create", lambda: c.openai_client().files.create(file=("x.jsonl", b"{}"), purpose="batch"))
    assert "401" in str(err.value)
    # The key did travel (the test would prove nothing otherwise) ...
    assert any(e.authorization == f"Bearer {KEY}" for e in stub.events)
    # ... and is in no file written, no log line, no outcome, no exception.
    outdir = tmp_path / "out"
    outdir.mkdir()
    (outdir / "outcomes.jsonl").write_text("".join(json.dumps(dataclasses.asdict(o)) + "\n" for o in out + batch_out))
    for path in [*tmp_path.rglob("*")]:
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path
    assert KEY not in caplog.text and "SECRET" not in caplog.text
    assert KEY not in "".join(traceback.format_exception(err.value)) and KEY not in repr(c)
    assert KEY not in json.dumps([dataclasses.asdict(o) for o in out + batch_out])
