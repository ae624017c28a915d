"""The optional LLM judge: a rubric, a 1-5 score, and parsing that never guesses.

The judge goes through the same `LLMClient` (same cache, budget and retries) as synthesis. Its
answer is accepted in exactly two documented shapes, nothing else:

1. a JSON object `{"score": <int 1-5>, "reason": "<text>"}` (reason optional, no other keys),
   alone or inside one Markdown code fence (```json ... ```);
2. a first line `Score: <1-5>` (any case), optionally followed by free text as the reason, with
   no second `Score:` line.

Anything else (a float, "4/5", "four", two scores, prose around the JSON) is a rejected judgement
with reason `judge_unparseable`: reading a number out of free text would be a guess.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass

from datakit.llm.protocol import Answer, Request
from datakit.llm.validate import Verdict

DEFAULT_RUBRIC = """\
Rate the assistant's answer to the user's instruction on a 1-5 scale:
5 - fully correct, complete and fluent, in the language the instruction asks for;
4 - correct and fluent with minor omissions or awkward wording;
3 - usable but with noticeable errors, omissions or unnatural language;
2 - mostly wrong, incomplete, or partly in the wrong language;
1 - wrong, empty, a refusal, or in the wrong language."""

_INSTRUCTIONS = ('Reply with only a JSON object of the form {"score": <integer 1-5>, "reason": "<one sentence>"} '
                 "and nothing else.")


def judge_messages(instruction: str, answer: str, *, rubric: str = DEFAULT_RUBRIC,
                   language: str | None = None) -> list[dict[str, str]]:
    """The judge's prompt: rubric and output format in the system message, the pair to rate after."""
    lang = f"\nThe answer should be in {language}." if language else ""
    return [
        {"role": "system", "content": f"You are a strict judge of instruction-following data.\n{rubric}\n{_INSTRUCTIONS}"},
        {"role": "user", "content": f"[Instruction]\n{instruction}\n\n[Answer]\n{answer}{lang}\n\n"
                                    "Score the answer."},
    ]


@dataclass(frozen=True)
class Judgement:
    score: int | None
    reason: str = ""
    rejected: str | None = None  # "judge_unparseable" when the answer is not in a documented shape


_FENCE = re.compile(r"^```(?:json)?\s*\n?(.*?)\n?```$", re.S | re.I)
_SCORE_LINE = re.compile(r"^score\s*:\s*([1-5])\s*$", re.I)


def _unparseable(why: str) -> Judgement:
    return Judgement(None, why, "judge_unparseable")


def parse_judgement(text: str) -> Judgement:
    s = text.strip()
    fenced = _FENCE.match(s)
    if fenced:
        s = fenced.group(1).strip()
    if s.startswith("{"):
        try:
            obj = json.loads(s)
        except ValueError:
            return _unparseable("invalid JSON")
        if not isinstance(obj, dict) or "score" not in obj or set(obj) - {"score", "reason"}:
            return _unparseable("JSON must hold 'score' and optionally 'reason', nothing else")
        score, reason = obj["score"], obj.get("reason", "")
        if type(score) is not int or not 1 <= score <= 5:
            return _unparseable(f"score {score!r} is not an integer from 1 to 5")
        if not isinstance(reason, str):
            return _unparseable("reason is not a string")
        return Judgement(score, reason)
    if fenced:
        return _unparseable("code fence without a JSON object")
    lines = s.splitlines()
    m = _SCORE_LINE.match(lines[0].strip()) if lines else None
    if not m:
        return _unparseable("neither a JSON object nor a 'Score: n' first line")
    rest = "\n".join(lines[1:]).strip()
    if re.search(r"(?im)^\s*score\s*:", rest):
        return _unparseable("more than one score")
    return Judgement(int(m.group(1)), re.sub(r"(?i)^reason\s*:\s*", "", rest))


def judge_validator(threshold: int) -> Callable[[Request, Answer], Verdict]:
    """For `LLMClient.run`: unparseable judgements and scores below `threshold` are rejections."""
    if not 1 <= threshold <= 5:
        raise ValueError("the judge threshold is a score from 1 to 5")

    def validate(request: Request, answer: Answer) -> Verdict:
        if answer.refusal or not answer.text.strip():
            return Verdict("judge_unparseable", "empty or refused judgement")
        j = parse_judgement(answer.text)
        if j.rejected:
            return Verdict(j.rejected, j.reason)
        assert j.score is not None
        if j.score < threshold:
            return Verdict("judge_low_score", f"score {j.score} < {threshold}: {j.reason}"[:300])
        return Verdict(None, f"score {j.score}")

    return validate

