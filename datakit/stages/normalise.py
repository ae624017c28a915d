"""Text normalisation: one Unicode form, LF line ends, no control characters, no stray spaces.

NFC by default: it only composes characters, whereas NFKC would also rewrite full-width
punctuation in Chinese and Japanese text, which is content. Zero-width joiners stay: Persian and
Indic scripts need them. After normalising, a turn with no text left, or a conversation that is
not user/assistant turns ending with the assistant, is rejected.
"""

from __future__ import annotations

import functools
import unicodedata

import regex

from datakit.recipe import Normalise as NormaliseConfig
from datakit.records import Record
from datakit.stages.base import RecordStage, StageStats

# C0/C1 controls except TAB and LF, the BOM and the line/paragraph separators.
_CONTROLS = regex.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufeff\u2028\u2029]")
_TRAILING_SPACE = regex.compile(r"[ \t]+\n")
_MANY_BLANK_LINES = regex.compile(r"\n{3,}")


@functools.lru_cache(maxsize=16384)
def normalise_text(text: str, form: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROLS.sub("", text)
    if form != "none":
        text = unicodedata.normalize(form, text)
    text = _TRAILING_SPACE.sub("\n", text)
    text = _MANY_BLANK_LINES.sub("\n\n", text)
    return text.strip()


def turns_ok(messages: list[dict[str, str]]) -> bool:
    """Optional system turn, then user and assistant alternating, ending with the assistant."""
    roles = [m["role"] for m in messages]
    if roles and roles[0] == "system":
        roles = roles[1:]
    return len(roles) >= 2 and len(roles) % 2 == 0 and all(r == ("user" if i % 2 == 0 else "assistant") for i, r in enumerate(roles))


class Normalise(RecordStage):
    name = "normalise"

    def __init__(self, config: NormaliseConfig):
        self.form = config.form

    def apply(self, record: Record, stats: StageStats) -> str | None:
        for message in record["messages"]:
            message["content"] = normalise_text(message["content"], self.form)
        if any(not m["content"] for m in record["messages"] if m["role"] != "system"):
            return "empty_text"
        record["messages"] = [m for m in record["messages"] if m["content"]]
        if not turns_ok(record["messages"]):
            return "bad_turns"
        return None
