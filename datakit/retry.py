"""One retry policy for every HTTP call datakit makes: publishing to the Hub, LLM calls, the Batch API.

It is one module so that the same server answer means the same thing everywhere: before it, the
publisher and the LLM client disagreed on which statuses were worth another try and on whether
`Retry-After` may be an HTTP date.

- Worth another try (`classify`): HTTP 408 (request timeout), 409 (conflict: another operation in
  progress, as the Hub says when commits race), 429 and every 5xx, timeouts and dropped
  connections. Not: other 4xx (the same request fails the same way) and anything else (a bug or a
  bad input is not cured by waiting). A `DatakitError` is a verdict already stated for the user,
  never retried whatever caused it.
- How long to wait (`Retry.delay`): what the server asked, if it did (`retry-after-ms`, which the
  openai SDK's servers send, else `Retry-After` as delta-seconds or as an HTTP date), capped at
  `max_retry_after`; otherwise exponential backoff with full jitter, a uniform draw in
  [0, min(cap, base * 2**n)] before retry n (0 for the first), which spreads clients that failed
  together instead of sending them back in step.

Status and headers are read from the error's `response` (an httpx2 `Response`), which is how
httpx2's `HTTPStatusError`, openai's `APIStatusError` and huggingface_hub's `HfHubHTTPError` all
carry them; wrapped errors are classified by their causes (`__cause__`, `__context__`). Callers
add what is specific to them (the LLM client also retries malformed bodies) on top of `classify`.
"""

from __future__ import annotations

import email.utils
import math
import random
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import timezone
from typing import Any, Literal, TypeVar

import httpx2

from datakit.errors import DatakitError

T = TypeVar("T")

RETRYABLE_STATUS: frozenset[int] = frozenset({408, 409, 429}) | frozenset(range(500, 600))
MAX_RETRY_AFTER = 600.0  # seconds: a server asking for longer is treated as asking for this long

Kind = Literal["status", "timeout", "connection", "malformed", "other"]


@dataclass(frozen=True)
class Failure:
    """What one failed attempt says about the next one.

    `kind` is what failed: the server answered with an error `status`; the request timed out; the
    connection could not be made or was dropped; the body was not what the protocol promises
    (`malformed`, set by callers that parse bodies); or `other`. Callers use it beyond the retry
    decision: a server that answered with a status did no billable work, a timeout may have.
    `retry_after` is the wait the server asked for, in seconds, when it asked.
    """

    retryable: bool
    why: str
    kind: Kind = "other"
    status: int | None = None
    retry_after: float | None = None


def causes(e: BaseException) -> Iterator[BaseException]:
    """`e`, then what caused it, outermost first: libraries wrap the error that says what happened."""
    seen: list[BaseException] = []
    cur: BaseException | None = e
    while cur is not None and cur not in seen:
        seen.append(cur)
        yield cur
        cur = cur.__cause__ or cur.__context__


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        x = float(value)
    except ValueError:
        return None
    return None if math.isnan(x) else x


def parse_retry_after(headers: Mapping[str, str] | None, now: float | None = None) -> float | None:
    """Seconds the server asked to wait, or None when it did not say (or said nothing readable).

    `retry-after-ms` wins (finer, and what the openai SDK reads first); then `Retry-After` as
    delta-seconds or as an HTTP date (RFC 9110 allows both; a date in the past means now). Header
    names are matched without regard to case. `now` (epoch seconds) is for tests.
    """
    if not headers:
        return None
    named = {str(k).lower(): v for k, v in headers.items()}
    ms = _number(named.get("retry-after-ms"))
    if ms is not None:
        return max(0.0, ms / 1000.0)
    value = named.get("retry-after")
    if value is None:
        return None
    seconds = _number(value)
    if seconds is not None:
        return max(0.0, seconds)
    try:
        when = email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000": the sender does not say; HTTP dates are GMT anyway
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _status_failure(err: BaseException) -> Failure | None:
    response = getattr(err, "response", None)
    status = getattr(response, "status_code", None)
    if not isinstance(status, int) or status < 400:
        return None  # no answer, or one that is not an error (openai's validation errors carry a 200)
    retryable = status in RETRYABLE_STATUS
    wait = parse_retry_after(getattr(response, "headers", None)) if retryable else None
    return Failure(retryable, f"HTTP {status}", "status", status, wait)


def _timeout_types() -> tuple[type[BaseException], ...]:
    # openai is looked up, not imported: an openai error exists only once openai is loaded, and
    # publishing should not pay for importing it.
    openai = sys.modules.get("openai")
    return (httpx2.TimeoutException,) + ((openai.APITimeoutError,) if openai is not None else ())


def _connection_types() -> tuple[type[BaseException], ...]:
    openai = sys.modules.get("openai")
    return (httpx2.TransportError,) + ((openai.APIConnectionError,) if openai is not None else ())


def classify(e: BaseException) -> Failure:
    """Whether another attempt can help after `e`, and why (see the module doc)."""
    if isinstance(e, DatakitError):
        return Failure(False, str(e))
    timeouts, connections = _timeout_types(), _connection_types()
    for err in causes(e):
        failure = _status_failure(err)
        if failure is not None:
            return failure
        if isinstance(err, timeouts):
            return Failure(True, f"timeout ({type(err).__name__})", "timeout")
        if isinstance(err, connections):
            return Failure(True, f"connection error ({type(err).__name__})", "connection")
    return Failure(False, f"{type(e).__name__}: {e}")


def backoff(retry: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Full jitter: uniform in [0, min(cap, base * 2**retry)]; `retry` is 0 before the first retry."""
    ceiling = min(cap, base * 2.0 ** min(retry, 64))  # the cap is reached long before 2**64
    return (rng or random).uniform(0.0, ceiling)


@dataclass(frozen=True)
class Retry:
    """How many attempts, and how long to wait between them.

    `attempts` counts the first try. `sleep` and `rng` are there for tests (no real waiting, a
    seeded draw).
    """

    attempts: int = 6
    base: float = 2.0
    cap: float = 60.0
    max_retry_after: float = MAX_RETRY_AFTER
    sleep: Callable[[float], Any] = time.sleep
    rng: random.Random | None = None

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.base < 0 or self.cap < 0 or self.max_retry_after < 0:
            raise ValueError("retry: attempts >= 1 and non-negative waits are required")

    def delay(self, retry: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number `retry` (0 for the first): the server's word, capped, or backoff."""
        if retry_after is not None:
            return min(retry_after, self.max_retry_after)
        return backoff(retry, self.base, self.cap, self.rng)

    def call(self, fn: Callable[[], T], *, classify: Callable[[BaseException], Failure] = classify,
             on_retry: Callable[[Failure, int, float], None] | None = None) -> T:
        """`fn()`, tried again while it fails in a retryable way and attempts remain.

        The last error (or the first one not worth retrying) is raised as it is, for the caller to
        state in its own terms. `on_retry(failure, attempt, wait)` sees each retry before its wait
        (`attempt` is the one that just failed, from 1).
        """
        for attempt in range(1, self.attempts + 1):
            try:
                return fn()
            except Exception as e:
                failure = classify(e)
                if not failure.retryable or attempt == self.attempts:
                    raise
                wait = self.delay(attempt - 1, failure.retry_after)
                if on_retry is not None:
                    on_retry(failure, attempt, wait)
                self.sleep(wait)
        raise AssertionError("unreachable: attempts >= 1")
