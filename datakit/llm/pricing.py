"""Prices, token estimates and the budget: know the bill before sending, never pass the cap.

Two different numbers are computed for each request, on purpose:
- an *estimate* of its tokens, shown to the user in the plan before anything is sent;
- an *upper bound*, which the budget reserves before the request goes out. Input is bounded by
  its UTF-8 byte count (no byte-level BPE or byte-fallback tokenizer makes more tokens than bytes)
  plus a per-message and per-request allowance for the chat template; output is bounded by
  `max_tokens`, which the client always sends. The budget refuses a request whose upper bound no
  longer fits, so the sum of real costs stays under the cap even with requests in flight.

Estimate: tiktoken needs to download its vocabularies, so it is not used; instead ~4 ASCII
characters per token, 1 token per CJK character (Han, kana, Hangul), 2 other characters per token,
plus 4 tokens per message and 3 per request (OpenAI's published rule of thumb).
"""

from __future__ import annotations

import math
import os
import sqlite3
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datakit.errors import DatakitError


@dataclass(frozen=True)
class Price:
    """USD per 1M tokens; `batch` is the multiplier the provider's Batch API applies."""

    input: float
    output: float
    batch: float = 0.5

    def cost(self, prompt_tokens: int, completion_tokens: int, *, batch: bool = False) -> float:
        usd = (prompt_tokens * self.input + completion_tokens * self.output) / 1e6
        return usd * self.batch if batch else usd


# OpenAI list prices (USD per 1M tokens, standard tier) as published in 2025. Prices change:
# check them, and set your own (or a local model's 0) in the recipe's `llm.prices`.
DEFAULT_PRICES: dict[str, Price] = {
    "gpt-4o": Price(2.50, 10.00),
    "gpt-4o-mini": Price(0.15, 0.60),
    "gpt-4.1": Price(2.00, 8.00),
    "gpt-4.1-mini": Price(0.40, 1.60),
    "gpt-4.1-nano": Price(0.10, 0.40),
    "gpt-5": Price(1.25, 10.00),
    "gpt-5-mini": Price(0.25, 2.00),
    "gpt-5-nano": Price(0.05, 0.40),
    "gpt-4-turbo": Price(10.00, 30.00),
    "gpt-3.5-turbo": Price(0.50, 1.50),
}


class UnknownPrice(DatakitError):
    pass


class PriceTable:
    """Default prices overlaid with the user's; a dated snapshot takes its family's price.

    User entries are `{model: {"input": usd_per_1m, "output": usd_per_1m[, "batch": multiplier]}}`
    (a recipe's `llm.prices`). `gpt-4o-2024-08-06` is priced as `gpt-4o` (longest known prefix
    followed by '-'), so `gpt-4o-mini` never falls back to `gpt-4o`.
    """

    def __init__(self, overrides: Mapping[str, Mapping[str, float] | Price] | None = None,
                 defaults: Mapping[str, Price] = DEFAULT_PRICES):
        self.prices: dict[str, Price] = dict(defaults)
        for model, p in (overrides or {}).items():
            if isinstance(p, Price):
                self.prices[model] = p
                continue
            try:
                self.prices[model] = Price(float(p["input"]), float(p["output"]), float(p.get("batch", 0.5)))
            except (KeyError, TypeError, ValueError):
                raise DatakitError(f"llm.prices.{model}: give 'input' and 'output' in USD per 1M tokens, "
                                   f"got {p!r}") from None
            if min(self.prices[model].input, self.prices[model].output) < 0:
                raise DatakitError(f"llm.prices.{model}: prices cannot be negative")

    def get(self, model: str) -> Price | None:
        if model in self.prices:
            return self.prices[model]
        family = [m for m in self.prices if model.startswith(m + "-")]
        return self.prices[max(family, key=len)] if family else None

    def require(self, model: str) -> Price:
        price = self.get(model)
        if price is None:
            raise UnknownPrice(f"no price for model {model!r}, so a budget cannot be enforced: set "
                               f"llm.prices.{model} (input/output USD per 1M tokens; 0 for a local model)")
        return price


def _is_cjk(ch: str) -> bool:
    o = ord(ch)
    return (0x3040 <= o <= 0x30FF or 0x3400 <= o <= 0x4DBF or 0x4E00 <= o <= 0x9FFF or 0xAC00 <= o <= 0xD7AF
            or 0xF900 <= o <= 0xFAFF or 0x20000 <= o <= 0x2FA1F)


def estimate_tokens(text: str) -> int:
    """A quick, documented estimate (see module doc); good to ~30% on most scripts."""
    ascii_n = cjk = other = 0
    for ch in text:
        if ord(ch) < 128:
            ascii_n += 1
        elif _is_cjk(ch):
            cjk += 1
        else:
            other += 1
    return math.ceil(ascii_n / 4 + cjk + other / 2)


def estimate_prompt_tokens(messages: Sequence[Mapping[str, str]]) -> int:
    return 3 + sum(4 + estimate_tokens(str(m.get("content") or "")) for m in messages)


# Allowances for what a chat template adds around messages (role markers, special tokens, a
# default system prompt): generous, because the budget's promise depends on them.
PER_MESSAGE_BOUND = 16
PER_REQUEST_BOUND = 64


def max_prompt_tokens(messages: Sequence[Mapping[str, str]]) -> int:
    """An upper bound on prompt tokens: UTF-8 bytes of every field plus template allowances."""
    return PER_REQUEST_BOUND + sum(
        PER_MESSAGE_BOUND + sum(len(str(v).encode("utf-8")) for v in m.values()) for m in messages)


def max_output_tokens(params: Mapping[str, Any]) -> int:
    for name in ("max_completion_tokens", "max_tokens"):
        if isinstance(params.get(name), int):
            return params[name]
    raise ValueError("params must bound the output (max_tokens or max_completion_tokens)")


@dataclass(frozen=True)
class Hold:
    """Money set aside for one request in flight (nano-USD)."""

    nano: int


def _nano(usd: float) -> int:
    # Round up so the tally is never below the true cost: the cap then holds for real money too.
    return max(0, math.ceil(usd * 1e9 - 1e-6))


class Budget:
    """A spending cap in USD for one run: reserve the worst case before sending, settle after.

    In memory by default (threads of one process). With `ledger` (a file path), the tally lives in
    SQLite so several processes (Dask workers) share one cap; `run_id` names the run in it (a
    resumed run with the same id keeps counting what it spent). An in-memory budget refuses to be
    pickled, because copies in several processes would each allow the whole cap. `cap_usd=None`
    tracks spending with no limit.

    A request that does not fit only because of money held for requests in flight waits (up to
    `max_wait` seconds) for them to settle, since they usually cost far less than their worst
    case; one that could not fit even then is refused at once. Without the wait, a queue of
    requests would be refused in a burst while a few others were in flight, leaving much of the
    budget unspent. A process that dies holding money leaves it held in a ledger (on the safe
    side); a new `run_id` starts a fresh tally.
    """

    def __init__(self, cap_usd: float | None, *, ledger: str | os.PathLike[str] | None = None,
                 run_id: str = "default", max_wait: float = 3600.0):
        if cap_usd is not None and cap_usd < 0:
            raise DatakitError("the LLM budget cannot be negative")
        self.cap_usd = cap_usd
        # Round the cap down, costs up: the tally can only err on the safe side.
        self._cap = None if cap_usd is None else math.floor(cap_usd * 1e9 + 1e-6)
        self.ledger = Path(ledger) if ledger is not None else None
        self.run_id, self.max_wait = run_id, max_wait
        self._lock = threading.Lock()
        self._settled = threading.Condition()
        self._spent = self._reserved = 0
        if self.ledger is not None:
            self.ledger.parent.mkdir(parents=True, exist_ok=True)
            with self._db() as db:
                db.execute("INSERT OR IGNORE INTO budget VALUES (?,0,0)", (run_id,))

    def __getstate__(self) -> dict[str, Any]:
        if self.ledger is None:
            raise TypeError("an in-memory Budget cannot be shared across processes; give it a ledger path")
        return {"cap_usd": self.cap_usd, "ledger": self.ledger, "run_id": self.run_id, "max_wait": self.max_wait}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["cap_usd"], ledger=state["ledger"], run_id=state["run_id"],  # type: ignore[misc]
                      max_wait=state["max_wait"])

    def _db(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.ledger, timeout=60, isolation_level=None)  # type: ignore[arg-type]
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE IF NOT EXISTS budget (run_id TEXT PRIMARY KEY, spent INTEGER, reserved INTEGER)")
        return db

    def _update(self, change) -> Any:  # change(spent, reserved) -> (spent, reserved, result)
        with self._lock:
            if self.ledger is None:
                self._spent, self._reserved, result = change(self._spent, self._reserved)
                return result
            db = self._db()
            try:
                db.execute("BEGIN IMMEDIATE")
                spent, reserved = db.execute("SELECT spent, reserved FROM budget WHERE run_id=?",
                                             (self.run_id,)).fetchone()
                spent, reserved, result = change(spent, reserved)
                db.execute("UPDATE budget SET spent=?, reserved=? WHERE run_id=?", (spent, reserved, self.run_id))
                db.execute("COMMIT")
                return result
            finally:
                db.close()

    def reserve(self, usd: float, *, wait: float | None = None) -> Hold | None:
        """Set `usd` aside if it fits under the cap with everything spent and held; else None.

        Waits (at most `wait`, default `max_wait` seconds) while it would fit once requests in
        flight settle.
        """
        amount = _nano(usd)
        deadline = time.monotonic() + (self.max_wait if wait is None else wait)

        def change(spent: int, reserved: int) -> tuple[int, int, str]:
            if self._cap is None or spent + reserved + amount <= self._cap:
                return spent, reserved + amount, "ok"
            if spent + amount > self._cap or reserved == 0:
                return spent, reserved, "never"  # spending only grows: this is final
            return spent, reserved, "later"

        while True:
            verdict = self._update(change)
            if verdict == "ok":
                return Hold(amount)
            if verdict == "never" or time.monotonic() >= deadline:
                return None
            with self._settled:
                self._settled.wait(timeout=0.05)  # woken by a settle here; polls a shared ledger

    def settle(self, hold: Hold, usd: float) -> None:
        """Release `hold` and record what the request really cost."""
        self._update(lambda s, r: (s + _nano(usd), r - hold.nano, None))
        with self._settled:
            self._settled.notify_all()

    def charge(self, usd: float) -> None:
        """Record money already spent elsewhere (a batch job submitted by an earlier run)."""
        self._update(lambda s, r: (s + _nano(usd), r, None))

    def _totals(self) -> tuple[int, int]:
        return self._update(lambda s, r: (s, r, (s, r)))

    @property
    def spent_usd(self) -> float:
        return self._totals()[0] / 1e9

    def __repr__(self) -> str:
        return f"Budget(cap_usd={self.cap_usd}, spent_usd={self.spent_usd:.6f})"
