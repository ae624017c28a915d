"""An LLM judge: each record of the chosen tasks gets a 1-5 score against a rubric.

The judge goes through the same client, cache and budget as synthesis (datakit.llm). Its answer
is parsed strictly: a score it cannot read is a rejected judgement (`judge_unparseable`), never a
guess; a score under the recipe's threshold rejects the record (`judge_low_score`). A record the
judge could not be asked about (budget spent, endpoint failing) is kept and marked, not judged.
"""

from __future__ import annotations

from datakit.llm import Request, judge_messages, judge_validator, open_client
from datakit.llm.judge import DEFAULT_RUBRIC, parse_judgement
from datakit.recipe import Judge as JudgeConfig
from datakit.record_stages.base import RecordStage
from datakit.records import Record, record_id
from datakit.stats import StageStats

JUDGED = {"judge_low_score", "judge_unparseable"}


class Judge(RecordStage):
    name = "judge"

    def __init__(self, config: JudgeConfig, cache_dir: str | None, run_id: str):
        self.config, self.cache_dir, self.run_id = config, cache_dir, run_id
        self._client = None
        self._outcomes: dict[int, object] = {}

    def client(self):
        if self._client is None:  # made in the worker: clients are not shipped between processes
            c = self.config
            self._client = open_client(c.model, cache_dir=self.cache_dir, budget_usd=c.budget_usd, prices=c.prices or None,
                                       run_id=self.run_id, params=c.params, concurrency=c.concurrency)
        return self._client

    def begin_batch(self, records: list[Record]) -> None:
        chosen = [(i, r) for i, r in enumerate(records) if r["task"] in self.config.tasks]
        self._outcomes = {}
        if not chosen:
            return
        requests = []
        for _, r in chosen:
            user = next(m["content"] for m in r["messages"] if m["role"] == "user")
            answer = [m["content"] for m in r["messages"] if m["role"] == "assistant"][-1]
            requests.append(Request(record_id(r), judge_messages(user, answer, rubric=self.config.rubric or DEFAULT_RUBRIC)))
        outcomes = self.client().run(requests, validator=judge_validator(self.config.threshold))
        self._outcomes = {id(r): o for (_, r), o in zip(chosen, outcomes, strict=True)}

    def apply(self, record: Record, stats: StageStats) -> str | None:
        outcome = self._outcomes.get(id(record))
        if outcome is None:
            return None
        if outcome.reason is None or outcome.reason in JUDGED:
            judgement = parse_judgement(outcome.text or "")
            record["scores"]["judge"] = {"score": judgement.score, "model": self.config.model}
            stats.note(record["task"], "judged")
            return outcome.reason
        record["scores"]["judge"] = {"unjudged": outcome.reason}
        stats.note(record["task"], "unjudged")
        return None
