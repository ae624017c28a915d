"""LLMClient: plan, then obtain every answer once, through the cache, under the budget.

Endpoint and key come from the openai client's own variables (`OPENAI_BASE_URL`,
`OPENAI_API_KEY`); model, parameters and budget from the recipe. The openai client is built with
`max_retries=0` so that one retry policy is in force, datakit's own (`datakit.retry`, shared with
publishing and the Batch API calls):

- retried: HTTP 408, 409, 429 and 5xx, timeouts, dropped connections, and (specific to LLM calls,
  see `work.failure_of`) malformed bodies (not JSON, no choices, no message); exponential backoff
  with full jitter (a random wait between 0 and min(backoff_max, backoff_base * 2**attempt)), or
  exactly what `Retry-After` / `retry-after-ms` asks (seconds or an HTTP date, at most
  max_retry_after) when the server says; a 429 with Retry-After pauses every worker, not just the
  one that was told;
- not retried: other 4xx (a bad request stays bad) and bad answers (empty, refusal, wrong
  language: the model's answer, kept in the cache and rejected by the validator).

Money: before each attempt the budget reserves its worst case (see `pricing`); the attempt then
costs its reported usage, or the worst case when the server may have done the work without
saying (timeout, dropped connection, malformed body, no usage); 429/5xx/4xx cost nothing. A
request that no longer fits comes back `budget_exceeded` and is not sent.

One bad request never raises: `run` returns an `Outcome` per request, with `reason` None for an
accepted answer, else `llm_error`, `budget_exceeded` or the validator's reason. It raises only for
problems with the whole job (no key, no price under a budget).
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import openai

from datakit.errors import DatakitError
from datakit.llm.batch import BatchOptions, run_batch
from datakit.llm.cache import ResponseCache
from datakit.llm.pricing import (
    Budget,
    PriceTable,
    estimate_prompt_tokens,
    estimate_tokens,
    max_output_tokens,
    max_prompt_tokens,
)
from datakit.llm.protocol import Answer, MalformedResponse, Request, cache_key, parse_completion
from datakit.llm.redact import known_secrets, redact, safe_endpoint
from datakit.llm.validate import Verdict
from datakit.llm.work import Item, Result, failure_of
from datakit.retry import Retry

log = logging.getLogger("datakit.llm")

Validator = Callable[[Request, Answer], Verdict]


@dataclass(frozen=True)
class Outcome:
    """The result for one request. `text` is kept for rejected answers too (for the rejected record)."""

    id: str
    key: str
    text: str | None
    reason: str | None = None
    detail: str = ""
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost_usd: float | None = 0.0  # spent by this run on this request; None when the model has no price
    cached: bool = False
    attempts: int = 0
    via: str = "live"  # live | batch | cache

    @property
    def ok(self) -> bool:
        return self.reason is None

    def provenance(self, model: str) -> dict[str, Any]:
        """What a record's `meta` keeps about its generation (never the key, never headers). Not how
        this run obtained the answer (live, batch or cache): a rebuild from the cache must write
        the same bytes as the build that paid for it."""
        return {"generator_model": model, "llm_cache_key": self.key,
                "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens}


@dataclass(frozen=True)
class Plan:
    """What a run will send and what it may cost, known before anything is sent."""

    model: str
    requests: int
    unique: int
    cached: int
    to_send: int
    input_tokens: int
    output_tokens: int
    cost_usd: float | None
    worst_cost_usd: float | None
    budget_usd: float | None
    batch: bool = False

    def summary(self) -> str:
        def usd(x: float | None) -> str:
            return "unknown (no price for this model)" if x is None else f"${x:,.4f}"

        budget = "no budget cap" if self.budget_usd is None else f"budget ${self.budget_usd:,.4f}"
        return (f"LLM plan ({self.model}{', Batch API' if self.batch else ''}): {self.requests:,} requests, "
                f"{self.unique:,} unique, {self.cached:,} cached, {self.to_send:,} to send; estimated "
                f"{self.input_tokens:,} input + {self.output_tokens:,} output tokens, cost {usd(self.cost_usd)} "
                f"(worst case {usd(self.worst_cost_usd)}); {budget}")


class LLMClient:
    """Chat completions for one model, with cache, budget, retries and bounded concurrency.

    `params` are the recipe's generation parameters; `max_tokens` bounds every answer unless the
    params do (the budget needs a bound). `cache` is a ResponseCache or a folder (default: the
    user's cache folder); `budget` a Budget or a cap in USD; `prices` a PriceTable or the
    recipe's price overrides. Picklable when its budget is (the openai client is rebuilt where it
    lands).
    """

    def __init__(self, model: str, *, params: Mapping[str, Any] | None = None, concurrency: int = 4,
                 max_retries: int = 6, timeout: float = 120.0,
                 cache: ResponseCache | str | os.PathLike[str] | None = None,
                 budget: Budget | float | None = None,
                 prices: PriceTable | Mapping[str, Any] | None = None, max_tokens: int = 1024,
                 backoff_base: float = 1.0, backoff_max: float = 60.0, max_retry_after: float = 600.0,
                 batch_options: BatchOptions | None = None):
        if concurrency < 1 or max_retries < 0 or timeout <= 0:
            raise DatakitError("llm: concurrency >= 1, max_retries >= 0 and timeout > 0 are required")
        self.model = model
        self.params = dict(params or {})
        self.concurrency, self.max_retries, self.timeout = concurrency, max_retries, timeout
        self.cache = cache if isinstance(cache, ResponseCache) else ResponseCache(cache)
        self.budget = budget if isinstance(budget, Budget) else Budget(budget)
        self.prices = prices if isinstance(prices, PriceTable) else PriceTable(prices)
        self.max_tokens = max_tokens
        self.backoff_base, self.backoff_max, self.max_retry_after = backoff_base, backoff_max, max_retry_after
        self.batch_options = batch_options or BatchOptions()
        self._client: openai.OpenAI | None = None
        self._lock = threading.Lock()
        self._hold_until = 0.0
        self.calls = 0  # HTTP attempts made by this object (for reports and tests)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.update(_client=None, _lock=None, _hold_until=0.0)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"LLMClient(model={self.model!r}, cache={self.cache!r}, budget={self.budget!r})"

    # -- the openai client -------------------------------------------------------------------

    def openai_client(self) -> openai.OpenAI:
        """The openai SDK client, built on first need only, so a run answered entirely from the cache
        needs no key at all."""
        with self._lock:
            if self._client is None:
                try:
                    self._client = openai.OpenAI(max_retries=0, timeout=self.timeout)
                except openai.OpenAIError as e:
                    raise DatakitError(redact(f"cannot create the OpenAI client ({e}); set OPENAI_API_KEY "
                                              "and, for another endpoint, OPENAI_BASE_URL")) from None
            return self._client

    def secrets(self) -> list[str]:
        """What every message this client writes must be scrubbed of (the key in use)."""
        key = self._client.api_key if self._client is not None else None
        return known_secrets(key if isinstance(key, str) else None)

    def endpoint(self) -> str:
        """The endpoint as cache rows and pending batch jobs record it (no credentials in it)."""
        return safe_endpoint(self.openai_client().base_url)

    # -- planning ----------------------------------------------------------------------------

    def _prepare(self, requests: Iterable[Request | Mapping[str, Any]]) -> list[Item]:
        items = []
        for r in requests:
            req = Request.of(r)
            params = {**self.params, **req.params}
            if "max_tokens" not in params and "max_completion_tokens" not in params:
                params["max_tokens"] = self.max_tokens
            try:
                key = cache_key(self.model, req.messages, params)
            except (TypeError, ValueError) as e:
                raise DatakitError(f"llm request {req.id!r}: {e}") from None
            items.append(Item(req, params, key))
        return items

    def worst_usd(self, item: Item, *, batch: bool = False) -> float:
        """What `item` can cost at most (full prompt, every allowed output token): what the budget holds."""
        price = self.prices.get(self.model)
        if price is None:
            return 0.0
        return price.cost(max_prompt_tokens(item.request.messages), max_output_tokens(item.params), batch=batch)

    def _plan(self, items: Sequence[Item], cached: Mapping[str, Answer], batch: bool) -> Plan:
        unique = list({i.key: i for i in items}.values())
        todo = [i for i in unique if i.key not in cached]
        tokens_in = sum(estimate_prompt_tokens(i.request.messages) for i in todo)
        # Expected answer length: about the last user message (translation-shaped), within max_tokens.
        tokens_out = sum(min(max_output_tokens(i.params), estimate_tokens(str(i.request.messages[-1].get("content", ""))))
                         for i in todo)
        price = self.prices.get(self.model)
        if self.budget.cap_usd is not None and todo:
            self.prices.require(self.model)
        return Plan(self.model, len(items), len(unique), len(unique) - len(todo), len(todo), tokens_in, tokens_out,
                    price.cost(tokens_in, tokens_out, batch=batch) if price else None,
                    sum(self.worst_usd(i, batch=batch) for i in todo) if price else None,
                    self.budget.cap_usd, batch)

    def plan(self, requests: Iterable[Request | Mapping[str, Any]], *, batch: bool = False) -> Plan:
        """Count and price a job without sending anything."""
        items = self._prepare(requests)
        return self._plan(items, self.cache.get_many(i.key for i in items), batch)

    # -- running -----------------------------------------------------------------------------

    def run(self, requests: Iterable[Request | Mapping[str, Any]], *, validator: Validator | None = None,
            batch: bool = False, on_plan: Callable[[Plan], None] | None = None) -> list[Outcome]:
        """One Outcome per request, in order. Duplicate requests are sent once and share the answer.

        `batch=True` sends what is not cached through the provider's Batch API (see `batch`).
        `on_plan` sees the plan before anything is sent (it is also logged); raising there aborts.
        """
        items = self._prepare(requests)
        cached = self.cache.get_many(i.key for i in items)
        plan = self._plan(items, cached, batch)
        log.info(plan.summary())
        if on_plan is not None:
            on_plan(plan)
        todo = list({i.key: i for i in items if i.key not in cached}.values())
        results: dict[str, Result] = {k: Result(a, via="cache") for k, a in cached.items()}
        if todo and batch:
            results.update(run_batch(self, todo))
        elif todo:
            pool = ThreadPoolExecutor(max_workers=min(self.concurrency, len(todo)), thread_name_prefix="datakit-llm")
            try:
                for item, result in zip(todo, pool.map(self._send, todo), strict=True):
                    results[item.key] = result
            finally:
                # On an interrupt, requests not yet started are dropped; those in flight finish and
                # land in the cache, so the next run does not pay for them again.
                pool.shutdown(wait=True, cancel_futures=True)
        return self._outcomes(items, results, validator)

    def _outcomes(self, items: Sequence[Item], results: Mapping[str, Result],
                  validator: Validator | None) -> list[Outcome]:
        outcomes, seen = [], set()
        for item in items:
            res = results[item.key]
            first = item.key not in seen
            seen.add(item.key)
            a, reason, detail = res.answer, res.reason, res.detail
            if a is not None and validator is not None:
                verdict = validator(item.request, a)
                reason, detail = verdict.reason, verdict.detail
            outcomes.append(Outcome(
                id=item.request.id, key=item.key, text=a.text if a else None, reason=reason,
                detail=redact(detail, self.secrets()), finish_reason=a.finish_reason if a else None,
                prompt_tokens=a.prompt_tokens if a else None, completion_tokens=a.completion_tokens if a else None,
                cost_usd=res.cost_usd if first else 0.0, cached=res.via == "cache" or not first,
                attempts=res.attempts if first else 0, via=res.via))
        return outcomes

    def _wait_for_hold(self) -> None:
        while (delay := self._hold_until - time.monotonic()) > 0:
            time.sleep(delay)

    @property
    def retry(self) -> Retry:
        """The shared retry policy with this client's settings (built on use, so they stay plain attributes)."""
        return Retry(self.max_retries + 1, self.backoff_base, self.backoff_max, self.max_retry_after)

    def _create_kwargs(self, item: Item) -> dict[str, Any]:
        """Standard parameters as arguments, the rest (top_k, repetition_penalty, ...) in the body."""
        known = _create_parameters()
        kwargs: dict[str, Any] = {"model": self.model, "messages": [dict(m) for m in item.request.messages]}
        extra = {k: v for k, v in item.params.items() if k not in known}
        kwargs.update({k: v for k, v in item.params.items() if k in known})
        if extra:
            kwargs["extra_body"] = extra
        return kwargs

    def _send(self, item: Item) -> Result:
        """Obtain one answer live: reserve, attempt, settle, back off; never raises for the request."""
        price = self.prices.get(self.model)
        worst = self.worst_usd(item)
        policy = self.retry
        spent, attempts, last = 0.0, 0, ""
        for attempt in range(policy.attempts):
            self._wait_for_hold()
            hold = self.budget.reserve(worst)
            if hold is None:
                return Result(None, "budget_exceeded", f"not sent: worst case ${worst:.6f} does not fit the "
                              f"budget{' after ' + last if last else ''}", spent if price else None, attempts)
            attempts += 1
            with self._lock:
                self.calls += 1
            try:
                raw = self.openai_client().chat.completions.with_raw_response.create(**self._create_kwargs(item))
                body = raw.text
                answer = parse_completion(body)
            except (MalformedResponse, openai.APIError, httpx2.TransportError) as e:
                failure = failure_of(e)
            else:
                if answer.has_usage and price is not None:
                    charged = price.cost(answer.prompt_tokens or 0, answer.completion_tokens or 0)
                else:
                    charged = worst
                self.budget.settle(hold, charged)
                stored = self.cache.put(item.key, model=self.model, messages=item.request.messages,
                                        params=item.params, answer=answer, response=_json_or_none(body),
                                        endpoint=self.endpoint(), via="live", secrets=self.secrets())
                return Result(stored, cost_usd=spent + charged if price else None, attempts=attempts)
            # A server that answered with an error status did no work to bill; after a timeout, a
            # dropped connection or a malformed body it may have, without saying: count the worst.
            charged = 0.0 if failure.kind == "status" else worst
            self.budget.settle(hold, charged)
            last = (f"timeout after {self.timeout}s" if failure.kind == "timeout"
                    else redact(failure.why, self.secrets())[:500])
            if not failure.retryable:
                log.warning("llm request %s failed, not retried: %s", item.request.id, last)
                return Result(None, "llm_error", last, spent if price else None, attempts)
            spent += charged
            delay = policy.delay(attempt, failure.retry_after)
            if failure.status == 429 and failure.retry_after:
                # A rate limit is the endpoint's, not this request's: every worker waits it out.
                with self._lock:
                    self._hold_until = max(self._hold_until, time.monotonic() + delay)
            if attempt < policy.attempts - 1:
                log.info("llm request %s: %s; retry %d/%d in %.2fs", item.request.id, last, attempt + 1,
                         self.max_retries, delay)
                policy.sleep(delay)
        log.warning("llm request %s failed after %d attempts: %s", item.request.id, attempts, last)
        return Result(None, "llm_error", f"{last} (after {attempts} attempts)", spent if price else None, attempts)


def _json_or_none(body: str) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


_CREATE_PARAMETERS: frozenset[str] | None = None


def _create_parameters() -> frozenset[str]:
    global _CREATE_PARAMETERS
    if _CREATE_PARAMETERS is None:
        sig = inspect.signature(openai.resources.chat.completions.Completions.create)
        _CREATE_PARAMETERS = frozenset(sig.parameters) - {"self", "extra_headers", "extra_query", "extra_body", "timeout"}
    return _CREATE_PARAMETERS


def open_client(model: str, *, cache_dir: str | Path | None = None, budget_usd: float | None = None,
                prices: Mapping[str, Any] | None = None, run_id: str | None = None, **kwargs: Any) -> LLMClient:
    """The recipe's way in: model, cache folder (`--cache-dir`), budget and price overrides.

    With `run_id` (say, the build's recipe hash and output folder), the budget is one tally shared
    by every process of that run, kept beside the cache (`budget.sqlite3`): Dask workers then
    share one cap, and a resumed run keeps counting what it already spent. Without it the budget
    is in memory, for one process.
    """
    cache = ResponseCache(cache_dir)
    budget = Budget(budget_usd, ledger=cache.dir / "budget.sqlite3", run_id=run_id) if run_id else Budget(budget_usd)
    return LLMClient(model, cache=cache, budget=budget, prices=prices, **kwargs)


