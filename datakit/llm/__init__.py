"""LLM plumbing for synthesis and the judge: one openai client, one cache, one budget.

    from datakit.llm import LLMClient, Request, answer_validator, translation_messages

    client = LLMClient("gpt-4o-mini", params={"temperature": 0}, budget=5.0, cache=cache_dir)
    reqs = [Request(id, translation_messages(text, "eng_Latn", "swh_Latn"),
                    meta={"lang": "swh_Latn", "source": text}) for id, text in rows]
    print(client.plan(reqs).summary())          # before anything is sent
    for o in client.run(reqs, validator=answer_validator(lang_of=lid)):
        ...  # o.ok -> o.text; else a rejected record with reason o.reason

Endpoint and key come from OPENAI_BASE_URL / OPENAI_API_KEY only; the key is never stored,
logged or put in an error message.
"""

from datakit.llm.batch import BatchOptions
from datakit.llm.cache import ResponseCache, default_cache_dir
from datakit.llm.client import LLMClient, Outcome, Plan, open_client
from datakit.llm.judge import DEFAULT_RUBRIC, Judgement, judge_messages, judge_validator, parse_judgement
from datakit.llm.pricing import DEFAULT_PRICES, Budget, Price, PriceTable, UnknownPrice, estimate_tokens
from datakit.llm.prompts import translation_messages
from datakit.llm.protocol import Answer, Request, cache_key
from datakit.llm.redact import redact
from datakit.llm.validate import Verdict, answer_validator, check_answer, is_refusal
from datakit.retry import parse_retry_after

__all__ = [
    "DEFAULT_PRICES", "DEFAULT_RUBRIC", "Answer", "BatchOptions", "Budget", "Judgement",
    "LLMClient", "Outcome", "Plan", "Price", "PriceTable", "Request", "ResponseCache", "UnknownPrice", "Verdict",
    "answer_validator", "cache_key", "check_answer", "default_cache_dir", "estimate_tokens", "is_refusal",
    "judge_messages", "judge_validator", "open_client", "parse_judgement", "parse_retry_after", "redact",
    "translation_messages",
]
