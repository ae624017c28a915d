"""Is a generated answer usable? Checks shared by synthesis and the judge.

A bad generation is the model's answer, not a transport fault: it becomes a rejected record with
a reason, it stays in the cache (so a re-run rejects it again without paying again), and it is
never retried. Reasons:

- `refusal`         the provider's refusal field is set, or the answer opens with a refusal phrase
                    ("As an AI language model", "I'm sorry, but I can't", "作为一个AI语言模型",
                    "抱歉，我无法", ...) that the source text does not contain itself
- `empty_answer`    nothing but whitespace
- `truncated`       the model stopped at max_tokens (finish_reason "length")
- `content_filter`  the provider filtered the answer
- `untranslated`    the answer is the source text again
- `bad_format`      a format check failed (by default: a chatty preamble such as
                    "Here is the translation:" / "以下是翻译：" before a translation)
- `wrong_language`  the caller's language-ID hook says another language, or is unsure

The language-ID model lives elsewhere; callers pass `lang_of(text) -> (code, probability)`, which
may return None (or a None code) for a language it does not know: such answers are kept, not
rejected, and the verdict's detail says the language was unchecked.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from datakit.llm.protocol import Answer, Request

LangOf = Callable[[str], "tuple[str | None, float] | None"]
FormatCheck = Callable[[str], "str | None"]

REFUSAL_PHRASES = (
    "as an ai language model", "as an ai model", "as a language model", "as an ai assistant",
    "i'm sorry, but i can't", "i'm sorry, but i cannot", "i am sorry, but i cannot", "i'm sorry, i can't",
    "sorry, but i can't", "sorry, i can't", "i cannot fulfill", "i can't fulfill", "i can't assist with",
    "i cannot assist with", "i can't help with", "i cannot help with", "i'm unable to", "i am unable to",
    "i cannot provide", "i can't provide", "i won't be able to",
    "作为一个ai语言模型", "作为ai语言模型", "作为一个人工智能语言模型", "作为人工智能语言模型", "作为一个ai助手",
    "作为一个人工智能", "抱歉,我无法", "抱歉,我不能", "对不起,我无法", "对不起,我不能", "很抱歉,我无法",
    "很抱歉,我不能", "我无法提供", "我不能提供", "我无法满足",
)

PREAMBLES = (
    "here is the translation", "here's the translation", "sure, here", "sure! here", "certainly! here",
    "certainly, here", "the translation is:", "translation:",
    "以下是翻译", "翻译如下", "译文如下", "好的,以下是", "当然,以下是",
)

# How far into the answer a refusal or preamble is looked for: they open answers; a phrase deep in
# a long text is more likely content than refusal.
_HEAD = 240


def _norm(text: str) -> str:
    t = unicodedata.normalize("NFKC", text).casefold()
    t = t.replace("\u2019", "'").replace("\u2018", "'")
    return re.sub(r"\s+", " ", t).strip()


def is_refusal(text: str, source: str | None = None) -> bool:
    """Does the answer open with a refusal phrase (one the source does not itself contain)?"""
    head, src = _norm(text)[:_HEAD], _norm(source or "")
    return any(p in head and p not in src for p in REFUSAL_PHRASES)


def no_preamble(text: str) -> str | None:
    """Format check for translations: the answer must be the translation only."""
    head = _norm(text)[:60]
    return "preamble before the answer" if any(head.startswith(p) for p in PREAMBLES) else None


@dataclass(frozen=True)
class Verdict:
    reason: str | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.reason is None


def check_answer(text: str, *, finish_reason: str | None = None, refusal: str | None = None,
                 lang: str | Collection[str] | None = None, lang_of: LangOf | None = None,
                 min_prob: float = 0.5, source: str | None = None,
                 fmt: FormatCheck | None = None) -> Verdict:
    """Run the checks in a fixed order and return the first failure, or an ok verdict."""
    if refusal:
        return Verdict("refusal", "provider refusal field set")
    if not text.strip():
        return Verdict("empty_answer")
    if finish_reason == "length":
        return Verdict("truncated", "stopped at max_tokens")
    if finish_reason == "content_filter":
        return Verdict("content_filter")
    if is_refusal(text, source):
        return Verdict("refusal", _norm(text)[:80])
    if source is not None and _norm(text) == _norm(source):
        return Verdict("untranslated")
    if fmt is not None:
        problem = fmt(text)
        if problem:
            return Verdict("bad_format", problem)
    if lang is not None and lang_of is not None:
        wanted = {lang} if isinstance(lang, str) else set(lang)
        found = lang_of(text)
        if found is None or found[0] is None:
            return Verdict(None, "language unchecked: unknown to the language-ID model")
        code, prob = found
        if code not in wanted:
            return Verdict("wrong_language", f"{code} ({prob:.2f}), expected {'/'.join(sorted(wanted))}")
        if prob < min_prob:
            return Verdict("wrong_language", f"{code} only at {prob:.2f} < {min_prob}")
    return Verdict()


def answer_validator(*, lang_of: LangOf | None = None, min_prob: float = 0.5,
                     fmt: FormatCheck | None = None) -> Callable[[Request, Answer], Verdict]:
    """A validator for `LLMClient.run`: reads the expected language and source from `request.meta`.

    `meta["lang"]` (a code or a list of codes) turns on the language check; `meta["source"]` (the
    text that was translated) turns on the untranslated check and keeps refusal phrases that were
    in the source from counting. `fmt` defaults to `no_preamble` when a source is given.
    """

    def validate(request: Request, answer: Answer) -> Verdict:
        meta: Mapping[str, Any] = request.meta
        source = meta.get("source")
        return check_answer(answer.text, finish_reason=answer.finish_reason, refusal=answer.refusal,
                            lang=meta.get("lang"), lang_of=lang_of, min_prob=min_prob, source=source,
                            fmt=fmt if fmt is not None else (no_preamble if source is not None else None))

    return validate
