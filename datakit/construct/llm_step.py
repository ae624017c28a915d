"""What the LLM steps that run before the build (synthesis, native templates) share: how a client is
opened from recipe settings, and how an answer is judged (the generic checks, then language ID).
"""

from __future__ import annotations

from collections.abc import Callable

from datakit.llm import LLMClient, Request, Verdict, check_answer, open_client
from datakit.llm.protocol import Answer
from datakit.recipe import LLMStep


def step_client(cfg: LLMStep, cache_dir: str | None, run_id: str) -> LLMClient:
    """One client per step, with its own budget tally (`run_id`): one step's spending never eats
    another step's cap, and a resumed run keeps counting what it already spent."""
    return open_client(cfg.model, cache_dir=cache_dir, budget_usd=cfg.budget_usd, prices=cfg.prices or None,
                       run_id=run_id, params=cfg.params, concurrency=cfg.concurrency, max_tokens=cfg.max_tokens)


def checked_by_lid(lid_stage, *, shape: Callable[[str, Request], str | None] | None = None,
                   prose: Callable[[str], str] = lambda text: text) -> Callable[[Request, Answer], Verdict]:
    """A validator: the generic answer checks against `meta["source"]`, then `shape` (a format
    problem, or None), then the calibrated language ID of the lid stage on `prose(answer)` against
    `meta["lang"]`. The first failure is the verdict, so a bad answer has one reason."""

    def validate(request: Request, answer: Answer) -> Verdict:
        verdict = check_answer(answer.text, finish_reason=answer.finish_reason, refusal=answer.refusal, source=request.meta["source"])
        if not verdict.ok:
            return verdict
        problem = shape(answer.text, request) if shape is not None else None
        if problem:
            return Verdict("bad_format", problem)
        if lid_stage is not None:
            mismatch = lid_stage.text_mismatch(prose(answer.text), request.meta["lang"])
            if mismatch:
                return Verdict("wrong_language", mismatch)
        return verdict

    return validate
