"""What is asked and what comes back, independent of how it travels (live call, Batch API, cache).

A `Request` is what the construct and filter stages build; `cache_key` names it by content so the
same question is answered once whatever run, process or folder asks it; `parse_completion` turns
a chat-completion body into an `Answer` or says, with `MalformedResponse`, that the body is not
one (a protocol fault worth a retry, unlike a bad answer, which is the model's and is kept).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from datakit.hashing import canonical_json

# Bumped only if the key's recipe changes; old cache rows then simply stop matching.
KEY_VERSION = 1

# Options that change how a request travels, not what is answered: never part of the key, never
# accepted in `params` (they would make two identical questions look different).
TRANSPORT_OPTIONS = frozenset({"timeout", "extra_headers", "extra_query", "extra_body", "stream", "stream_options"})


@dataclass(frozen=True)
class Request:
    """One chat completion to obtain.

    `id` is the caller's stable name for it (source, row, direction) used in logs and outcomes;
    `params` are per-request generation parameters (temperature, max_tokens, seed, ...) merged over
    the client's; `meta` travels with the request for validators (expected language, source text)
    and is neither sent nor part of the cache key.
    """

    id: str
    messages: Sequence[Mapping[str, str]]
    params: Mapping[str, Any] = field(default_factory=dict)
    meta: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, obj: Request | Mapping[str, Any]) -> Request:
        """Accept a Request or a plain dict with the same fields (`id`, `messages`, `params`, `meta`)."""
        if isinstance(obj, Request):
            return obj
        unknown = set(obj) - {"id", "messages", "params", "meta"}
        if unknown:
            raise ValueError(f"unknown request fields {sorted(unknown)}")
        return cls(id=str(obj["id"]), messages=list(obj["messages"]), params=dict(obj.get("params") or {}),
                   meta=dict(obj.get("meta") or {}))


def cache_key(model: str, messages: Sequence[Mapping[str, str]], params: Mapping[str, Any]) -> str:
    """sha256 of canonical JSON of (model, messages, parameters).

    The endpoint is deliberately not in the key: the contract is "same model, same messages, same
    parameters -> same answer, paid once", so a rebuild through another base URL of the same
    provider (a proxy, the Batch API) reuses what was bought. Keep answers of different providers
    apart by model name or by cache folder. The key never sees the API key.
    """
    bad = TRANSPORT_OPTIONS & set(params)
    if bad:
        raise ValueError(f"transport options are not generation parameters: {sorted(bad)}")
    payload = {"v": KEY_VERSION, "model": model, "messages": [dict(m) for m in messages], "params": dict(params)}
    return hashlib.sha256(canonical_json(payload).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Answer:
    """A well-formed completion: the text (possibly empty, possibly a refusal) and its usage."""

    text: str
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    refusal: str | None = None
    response_model: str | None = None

    @property
    def has_usage(self) -> bool:
        return self.prompt_tokens is not None and self.completion_tokens is not None


class MalformedResponse(Exception):
    """The body is not a chat completion (bad JSON, no choices, no message): retry, do not keep."""


def _count(usage: Mapping[str, Any], name: str) -> int | None:
    v = usage.get(name)
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else None


def parse_completion(body: str | bytes | Mapping[str, Any]) -> Answer:
    """Read a chat-completion body strictly enough to trust it, leniently enough for real servers.

    Missing usage is tolerated (the budget then charges the worst case); a missing or non-string
    message content with no refusal is a protocol fault, an empty string is an (empty) answer.
    """
    if isinstance(body, (str, bytes)):
        try:
            body = json.loads(body)
        except ValueError as e:
            raise MalformedResponse(f"body is not JSON ({e.__class__.__name__})") from None
    if not isinstance(body, Mapping):
        raise MalformedResponse("body is not a JSON object")
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], Mapping):
        raise MalformedResponse("no choices")
    message = choices[0].get("message")
    if not isinstance(message, Mapping):
        raise MalformedResponse("choice without a message")
    content, refusal = message.get("content"), message.get("refusal")
    if content is None and isinstance(refusal, str):
        content = ""
    if not isinstance(content, str):
        raise MalformedResponse("message content is not a string")
    usage = body.get("usage") if isinstance(body.get("usage"), Mapping) else {}
    finish = choices[0].get("finish_reason")
    model = body.get("model")
    return Answer(
        text=content,
        finish_reason=finish if isinstance(finish, str) else None,
        prompt_tokens=_count(usage, "prompt_tokens"),
        completion_tokens=_count(usage, "completion_tokens"),
        refusal=refusal if isinstance(refusal, str) and refusal else None,
        response_model=model if isinstance(model, str) else None,
    )
