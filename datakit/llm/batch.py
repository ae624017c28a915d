"""The provider's Batch API for large jobs (typically half price, answers within 24 hours).

Uncached requests are written as JSONL (`custom_id` = cache key), uploaded with `files.create`,
submitted with `batches.create`, polled with `batches.retrieve`, and the output and error files
are read back into the same cache a live run fills: a batch run and a live run are
interchangeable, and either one's answers serve the other.

Paying once: each submitted job is recorded in the cache database before waiting on it. A run
that stops while the provider works (interrupted, or past `max_wait`) leaves it pending there;
the next batch run against the same endpoint collects it instead of submitting those requests
again. The budget reserves each request's worst case at batch prices before submission; requests
that do not fit are not submitted (`budget_exceeded`). A request the job failed comes back
`llm_error` and is not cached, so a later run (live or batch) asks again.

Every Batch and Files API call goes through the client's retry policy (`datakit.retry`, with the
LLM-specific classification of `work.failure_of`). This module needs only the small interface
`BatchClient` of the client (an `LLMClient` is one), so it does not import `client`, which imports it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import httpx2
import openai

from datakit.errors import DatakitError
from datakit.llm.cache import ResponseCache
from datakit.llm.pricing import Budget, Hold, PriceTable
from datakit.llm.protocol import MalformedResponse, parse_completion
from datakit.llm.redact import redact
from datakit.llm.work import Item, Result, failure_of
from datakit.retry import Retry

log = logging.getLogger("datakit.llm")
T = TypeVar("T")

TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
ENDPOINT = "/v1/chat/completions"


@dataclass(frozen=True)
class BatchOptions:
    """Polling and size limits (the provider's: 50,000 requests and 200 MB per input file)."""

    poll_interval: float = 30.0
    max_wait: float = 25 * 3600.0
    max_requests: int = 50_000
    max_bytes: int = 190 * 1024 * 1024


class BatchClient(Protocol):
    """What the Batch API path uses of an `LLMClient`: its settings, cache, budget and public methods."""

    model: str
    prices: PriceTable
    budget: Budget
    cache: ResponseCache
    batch_options: BatchOptions

    @property
    def retry(self) -> Retry: ...

    def openai_client(self) -> openai.OpenAI: ...

    def secrets(self) -> list[str]: ...

    def endpoint(self) -> str: ...

    def worst_usd(self, item: Item, *, batch: bool = False) -> float: ...


def _call(client: BatchClient, what: str, fn: Callable[[], T]) -> T:
    """One Batch/Files API call under the client's retry policy; a final failure is a DatakitError."""
    try:
        return client.retry.call(fn, classify=failure_of)
    except (openai.APIError, httpx2.TransportError) as e:
        why = failure_of(e).why
        raise DatakitError(redact(f"Batch API {what} failed: {why}", client.secrets())[:600]) from None


def _lines(client: BatchClient, items: Sequence[Item]) -> list[bytes]:
    return [json.dumps({"custom_id": i.key, "method": "POST", "url": ENDPOINT,
                        "body": {"model": client.model, "messages": [dict(m) for m in i.request.messages],
                                 **i.params}}, ensure_ascii=False).encode("utf-8") + b"\n" for i in items]


def _chunks(client: BatchClient, items: Sequence[Item], opts: BatchOptions) -> list[list[tuple[Item, bytes]]]:
    chunks: list[list[tuple[Item, bytes]]] = [[]]
    size = 0
    for item, line in zip(items, _lines(client, items), strict=True):
        if chunks[-1] and (len(chunks[-1]) >= opts.max_requests or size + len(line) > opts.max_bytes):
            chunks.append([])
            size = 0
        chunks[-1].append((item, line))
        size += len(line)
    return [c for c in chunks if c]


def _wait(client: BatchClient, batch_id: str, opts: BatchOptions) -> Any:
    oa = client.openai_client()
    deadline = time.monotonic() + opts.max_wait
    while True:
        batch = _call(client, "batches.retrieve", lambda: oa.batches.retrieve(batch_id))
        if batch.status in TERMINAL or time.monotonic() >= deadline:
            return batch
        log.info("batch %s: %s", batch_id, batch.status)
        time.sleep(opts.poll_interval)


def _read(client: BatchClient, file_id: str | None) -> list[dict[str, Any]]:
    if not file_id:
        return []
    oa = client.openai_client()
    text = _call(client, "files.content", lambda: oa.files.content(file_id).text)
    rows = []
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue  # a broken line: its request simply has no result, and is reported as such
        if isinstance(row, dict) and isinstance(row.get("custom_id"), str):
            rows.append(row)
    return rows


def _collect(client: BatchClient, batch_id: str, items: Mapping[str, Item], holds: Mapping[str, Hold],
             opts: BatchOptions) -> dict[str, Result]:
    """Wait for one job, store its answers, settle its holds; results for the keys it covered."""

    price = client.prices.get(client.model)
    batch = _wait(client, batch_id, opts)
    results: dict[str, Result] = {}
    if batch.status not in TERMINAL:
        for hold in holds.values():  # may still be billed: count the worst case
            client.budget.settle(hold, hold.nano / 1e9)
        for key in items:
            results[key] = Result(None, "llm_error", f"batch {batch_id} still {batch.status} after "
                                  f"{opts.max_wait:.0f}s; re-run to collect it", None, 1, "batch")
        return results
    rows = _read(client, batch.output_file_id) + _read(client, batch.error_file_id)
    endpoint = client.endpoint()
    others = {r["custom_id"] for r in rows} - set(items)
    if others:  # a job from an earlier run also answered requests this run does not need: keep them
        _store_others(client, batch, [r for r in rows if r["custom_id"] in others], endpoint)
    for row in rows:
        key = row["custom_id"]
        if key not in items:
            continue
        item = items[key]
        response = row.get("response") if isinstance(row.get("response"), dict) else {}
        status, body = response.get("status_code"), response.get("body")
        cost: float | None = None
        try:
            if status != 200:
                error = row.get("error") or (body.get("error") if isinstance(body, dict) else None) or {}
                message = error.get("message", "") if isinstance(error, dict) else str(error)
                raise MalformedResponse(f"HTTP {status}: {message}")
            answer = parse_completion(body)
        except MalformedResponse as e:
            results[key] = Result(None, "llm_error", redact(f"batch result: {e}", client.secrets())[:500],
                                  0.0 if price else None, 1, "batch")
            cost = 0.0
        else:
            cost = (price.cost(answer.prompt_tokens or 0, answer.completion_tokens or 0, batch=True)
                    if price and answer.has_usage else (holds[key].nano / 1e9 if key in holds else 0.0))
            stored = client.cache.put(key, model=client.model, messages=item.request.messages, params=item.params,
                                      answer=answer, response=body, endpoint=endpoint, via="batch",
                                      secrets=client.secrets())
            results[key] = Result(stored, cost_usd=cost if price else None, attempts=1, via="batch")
        if key in holds:
            client.budget.settle(holds[key], cost)
        elif cost:
            client.budget.charge(cost)
    for key in items:
        if key not in results:
            if key in holds:
                client.budget.settle(holds[key], 0.0)
            results[key] = Result(None, "llm_error", f"batch {batch_id} {batch.status} without a result "
                                  "for this request", 0.0 if price else None, 1, "batch")
    client.cache.finish_batch(batch_id, batch.status)
    return results


def _collect_or_report(client: BatchClient, batch_id: str, items: Mapping[str, Item], holds: Mapping[str, Hold],
                       opts: BatchOptions) -> dict[str, Result]:
    """`_collect`, but a job that cannot be polled or read stays pending for the next run."""

    try:
        return _collect(client, batch_id, items, holds, opts)
    except DatakitError as e:
        for hold in holds.values():  # it may still run and be billed: count the worst case
            client.budget.settle(hold, hold.nano / 1e9)
        return {k: Result(None, "llm_error", f"{e}; batch {batch_id} is kept pending, re-run to collect it",
                          None, 1, "batch") for k in items}


def _store_others(client: BatchClient, batch: Any, rows: Sequence[dict[str, Any]], endpoint: str) -> None:
    bodies = {r["custom_id"]: r.get("body") for r in _read(client, batch.input_file_id)}
    price = client.prices.get(client.model)
    for row in rows:
        response = row.get("response") if isinstance(row.get("response"), dict) else {}
        body, request = response.get("body"), bodies.get(row["custom_id"])
        if response.get("status_code") != 200 or not isinstance(request, dict):
            continue
        try:
            answer = parse_completion(body)
        except MalformedResponse:
            continue
        params = {k: v for k, v in request.items() if k not in ("model", "messages")}
        client.cache.put(row["custom_id"], model=client.model, messages=request.get("messages") or [], params=params,
                         answer=answer, response=body, endpoint=endpoint, via="batch", secrets=client.secrets())
        if price and answer.has_usage:
            client.budget.charge(price.cost(answer.prompt_tokens or 0, answer.completion_tokens or 0, batch=True))


def run_batch(client: BatchClient, todo: Sequence[Item], opts: BatchOptions | None = None) -> dict[str, Result]:
    """Answers for `todo` (uncached, unique) through the Batch API; see the module doc."""

    opts = opts or client.batch_options
    oa = client.openai_client()
    endpoint = client.endpoint()
    wanted = {i.key: i for i in todo}
    results: dict[str, Result] = {}
    # 1. Jobs an earlier run submitted and did not collect: collect them rather than pay again.
    for batch_id, keys in client.cache.pending_batches(endpoint):
        if wanted.keys() & set(keys):
            log.info("collecting batch %s submitted by an earlier run", batch_id)
            results.update(_collect_or_report(client, batch_id, {k: wanted[k] for k in keys if k in wanted}, {}, opts))
    for key, answer in client.cache.get_many(k for k in wanted if k not in results).items():
        results[key] = Result(answer, via="cache")
    # Requests in a job that is still running are never submitted again: they wait for that job.
    in_flight = {k for _, keys in client.cache.pending_batches(endpoint) for k in keys}
    # 2. Reserve the worst case for each remaining request; what does not fit is not submitted.
    submit: list[Item] = []
    holds: dict[str, Hold] = {}
    for item in todo:
        if item.key in in_flight or (item.key in results and results[item.key].answer is not None):
            continue
        # No waiting: the money held here is this thread's own, for the job about to be submitted.
        hold = client.budget.reserve(client.worst_usd(item, batch=True), wait=0)
        if hold is None:
            results[item.key] = Result(None, "budget_exceeded", "not submitted: its worst case does not fit the "
                                       "budget", 0.0, 0, "batch")
            continue
        holds[item.key] = hold
        submit.append(item)
    # 3. Submit in chunks the provider accepts, record each job, then wait for and read each.
    jobs: list[tuple[str, dict[str, Item]]] = []
    for chunk in _chunks(client, submit, opts):
        data = b"".join(line for _, line in chunk)
        keys = {i.key: i for i, _ in chunk}
        try:
            file = _call(client, "files.create", lambda data=data: oa.files.create(
                file=("datakit-batch.jsonl", data, "application/jsonl"), purpose="batch"))
            batch = _call(client, "batches.create", lambda file=file: oa.batches.create(
                input_file_id=file.id, endpoint=ENDPOINT, completion_window="24h"))
        except DatakitError as e:
            for key in keys:
                client.budget.settle(holds.pop(key), 0.0)
                results[key] = Result(None, "llm_error", str(e), 0.0, 1, "batch")
            continue
        client.cache.add_batch(batch.id, endpoint, list(keys))
        log.info("submitted batch %s: %d requests", batch.id, len(keys))
        jobs.append((batch.id, keys))
    for batch_id, keys in jobs:
        results.update(_collect_or_report(client, batch_id, keys, {k: holds[k] for k in keys}, opts))
    return {k: results[k] for k in wanted}
