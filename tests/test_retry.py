"""datakit.retry, the one retry policy of publishing, LLM calls and the Batch API, on real inputs.

Errors are the libraries' own objects: httpx2 errors from real requests (a refused connection on
127.0.0.1, a status raised by `raise_for_status` through httpx2's MockTransport), openai and
huggingface_hub errors built around real httpx2 responses, as those libraries build them.
"""

from __future__ import annotations

import email.utils
import random
import socket
import time

import httpx2
import openai
import pytest
from huggingface_hub.errors import HfHubHTTPError

from datakit.errors import DatakitError
from datakit.retry import RETRYABLE_STATUS, Failure, Retry, backoff, classify, parse_retry_after

URL = "http://127.0.0.1/v1/chat/completions"


def http_date(epoch: float) -> str:
    return email.utils.formatdate(epoch, usegmt=True)


def response(status: int, headers: dict[str, str] | None = None) -> httpx2.Response:
    return httpx2.Response(status, headers=headers, json={"error": "x"}, request=httpx2.Request("POST", URL))


def status_error(status: int, headers: dict[str, str] | None = None) -> httpx2.HTTPStatusError:
    """What httpx2 itself raises for an error status, through a real client and transport."""
    transport = httpx2.MockTransport(lambda request: httpx2.Response(status, headers=headers))
    with httpx2.Client(transport=transport) as c, pytest.raises(httpx2.HTTPStatusError) as info:
        c.post(URL).raise_for_status()
    return info.value


def refused() -> httpx2.ConnectError:
    """A real refused connection: a port that was just free on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(httpx2.ConnectError) as info:
        httpx2.get(f"http://127.0.0.1:{port}/", timeout=5)
    return info.value


# ---------------------------------------------------------------------------- Retry-After


def test_retry_after_delta_seconds():
    assert parse_retry_after({"retry-after": "2"}) == 2.0
    assert parse_retry_after({"retry-after": " 1.5 "}) == 1.5  # the openai SDK accepts fractions too
    assert parse_retry_after({"retry-after": "0"}) == 0.0
    assert parse_retry_after({"retry-after": "-3"}) == 0.0


def test_retry_after_http_date_future_and_past():
    now = time.time()
    assert 28 <= parse_retry_after({"retry-after": http_date(now + 30)}, now=now) <= 30
    assert parse_retry_after({"retry-after": http_date(now - 3600)}, now=now) == 0.0  # in the past: now
    # a date without a zone ("-0000") is read as GMT, as HTTP dates are
    naive = email.utils.formatdate(now + 60).rsplit(" ", 1)[0] + " -0000"
    assert 58 <= parse_retry_after({"retry-after": naive}, now=now) <= 60


def test_retry_after_ms_wins_and_header_names_ignore_case():
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert parse_retry_after({"retry-after-ms": "soon", "retry-after": "9"}) == 9.0  # unreadable ms: the other
    assert parse_retry_after(httpx2.Headers({"Retry-After": "3"})) == 3.0
    assert parse_retry_after({"Retry-After-Ms": "1500"}) == 1.5


@pytest.mark.parametrize("headers", [None, {}, {"content-type": "text/plain"}, {"retry-after": "soon"},
                                     {"retry-after": ""}, {"retry-after": "nan"},
                                     {"retry-after": "Fri, 99 Foo 2026 25:61:00 GMT"}])
def test_retry_after_absent_or_garbage(headers):
    assert parse_retry_after(headers) is None


# ---------------------------------------------------------------------------- classification


def test_status_classification_from_httpx():
    for status in (408, 409, 429, 500, 502, 503, 504, 599):
        f = classify(status_error(status))
        assert (f.retryable, f.kind, f.status, f.why) == (True, "status", status, f"HTTP {status}"), status
    for status in (400, 401, 403, 404, 413, 422):
        f = classify(status_error(status, {"Retry-After": "5"}))
        assert (f.retryable, f.kind, f.status, f.retry_after) == (False, "status", status, None), status
    assert classify(status_error(503, {"Retry-After": "7"})).retry_after == 7.0
    assert set(RETRYABLE_STATUS) == {408, 409, 429} | set(range(500, 600))


def test_openai_errors():
    rate = openai.RateLimitError("rate limited", response=response(429, {"retry-after-ms": "1500"}), body=None)
    assert classify(rate) == Failure(True, "HTTP 429", "status", 429, 1.5)
    bad = openai.BadRequestError("bad", response=response(400), body=None)
    assert classify(bad) == Failure(False, "HTTP 400", "status", 400)
    request = httpx2.Request("POST", URL)
    assert classify(openai.APITimeoutError(request=request)).kind == "timeout"
    assert classify(openai.APIConnectionError(request=request)) == \
        Failure(True, "connection error (APIConnectionError)", "connection")
    try:  # as the SDK raises it: from the transport error
        try:
            raise refused()
        except httpx2.ConnectError as e:
            raise openai.APIConnectionError(request=request) from e
    except openai.APIConnectionError as wrapped:
        assert classify(wrapped).kind == "connection" and classify(wrapped).retryable


def test_huggingface_hub_error_with_http_date():
    now = time.time()
    err = HfHubHTTPError("503 Server Error", response=response(503, {"Retry-After": http_date(now + 30)}))
    f = classify(err)
    assert (f.retryable, f.status) == (True, 503) and 25 <= f.retry_after <= 30
    assert not classify(HfHubHTTPError("404", response=response(404))).retryable


def test_transport_errors_and_wrapping():
    assert classify(refused()) == Failure(True, "connection error (ConnectError)", "connection")
    assert classify(httpx2.RemoteProtocolError("Server disconnected")).kind == "connection"  # dropped mid-response
    assert classify(httpx2.ReadTimeout("timed out")) == Failure(True, "timeout (ReadTimeout)", "timeout")
    try:  # a library that wraps the real error is classified by its cause
        try:
            raise status_error(503)
        except httpx2.HTTPStatusError as e:
            raise RuntimeError("upload failed") from e
    except RuntimeError as wrapped:
        assert classify(wrapped).status == 503 and classify(wrapped).retryable
    try:  # a DatakitError is already the user's verdict, whatever caused it
        try:
            raise status_error(503)
        except httpx2.HTTPStatusError as e:
            raise DatakitError("stop") from e
    except DatakitError as final:
        assert not classify(final).retryable
    assert classify(ValueError("bug")) == Failure(False, "ValueError: bug")
    # an error that carries a successful response is not an HTTP error (openai's validation errors)
    invalid = openai.APIResponseValidationError(response(200), body=None)
    assert classify(invalid).kind == "other" and classify(invalid).status is None


# ---------------------------------------------------------------------------- waiting


def test_backoff_full_jitter_within_bounds():
    rng = random.Random(7)
    for retry in range(12):
        ceiling = min(60.0, 1.0 * 2**retry)
        draws = [backoff(retry, 1.0, 60.0, rng) for _ in range(200)]
        assert all(0.0 <= d <= ceiling for d in draws), retry
        assert max(draws) > 0.8 * ceiling and min(draws) < 0.2 * ceiling  # full jitter spans the range
    assert backoff(10_000, 1.0, 60.0, random.Random(1)) <= 60.0  # no overflow far past the cap
    same = [backoff(3, 0.5, 60.0, random.Random(42)) for _ in range(2)]
    assert same[0] == same[1]


def test_delay_prefers_the_server_and_caps_it():
    policy = Retry(base=1.0, cap=60.0, max_retry_after=600.0, rng=random.Random(3))
    assert policy.delay(0, 2.5) == 2.5
    assert policy.delay(5, 0.0) == 0.0
    assert policy.delay(0, 3600.0) == 600.0
    assert 0.0 <= policy.delay(2, None) <= 4.0
    with pytest.raises(ValueError):
        Retry(attempts=0)


def test_call_retries_what_is_retryable_and_reraises_the_last():
    answers = iter([503, 429, 200])
    seen: list[tuple[str, int, float]] = []
    waits: list[float] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        status = next(answers)
        return httpx2.Response(status, headers={"Retry-After": "4"} if status == 429 else None)

    with httpx2.Client(transport=httpx2.MockTransport(handler)) as c:
        policy = Retry(attempts=3, base=0.5, sleep=waits.append, rng=random.Random(0))
        r = policy.call(lambda: c.get(URL).raise_for_status(),
                        on_retry=lambda f, attempt, wait: seen.append((f.why, attempt, wait)))
    assert r.status_code == 200
    assert [(why, attempt) for why, attempt, _ in seen] == [("HTTP 503", 1), ("HTTP 429", 2)]
    assert 0.0 <= waits[0] <= 0.5 and waits[1] == 4.0 and waits == [w for _, _, w in seen]

    calls: list[int] = []

    def always(status: int):
        def fn() -> None:
            calls.append(status)
            raise status_error(status)
        return fn

    with pytest.raises(httpx2.HTTPStatusError):
        Retry(attempts=4, sleep=lambda s: None).call(always(502))
    assert calls == [502] * 4
    calls.clear()
    with pytest.raises(httpx2.HTTPStatusError):
        Retry(attempts=4, sleep=lambda s: None).call(always(404))
    assert calls == [404]  # not worth a second try
