"""What the live path (`client`) and the Batch API path (`batch`) share: the unit of work and its failures.

An `Item` is one request as it will be sent (with the client's parameters merged in and its cache
key); a `Result` is what became of it, before validation. `failure_of` is the shared retry
policy's verdict (`datakit.retry.classify`) plus what only a call to the provider can get wrong: a
body that is not the promised JSON, which is worth another attempt like a dropped connection.
Kept apart from both paths so that neither imports the other's module to use them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import openai

from datakit.llm.protocol import Answer, MalformedResponse, Request
from datakit.retry import Failure, classify


@dataclass(frozen=True)
class Item:
    request: Request
    params: Mapping[str, Any]
    key: str


@dataclass(frozen=True)
class Result:
    answer: Answer | None
    reason: str | None = None
    detail: str = ""
    cost_usd: float | None = 0.0
    attempts: int = 0
    via: str = "live"  # live | batch | cache


def failure_of(e: BaseException) -> Failure:
    """Whether another attempt at an API call can help after `e`, with a message for the outcome.

    Messages are not yet redacted: callers scrub them with the client's secrets.
    """
    if isinstance(e, MalformedResponse):
        return Failure(True, f"malformed response ({e})", "malformed")
    failure = classify(e)
    if isinstance(e, openai.APIStatusError):
        return replace(failure, why=f"HTTP {e.status_code}: {e.message}")
    if failure.kind == "other" and isinstance(e, openai.APIError):
        # The SDK could not make sense of what came back (a response that fails its validation).
        return Failure(True, f"API error ({type(e).__name__}: {e})", "malformed")
    return failure
