"""Text normalisation: one Unicode form, LF line ends, no control characters, no stray spaces.

NFC by default: it only composes characters, whereas NFKC would also rewrite full-width
punctuation in Chinese and Japanese text, which is content. Zero-width joiners stay: Persian and
Indic scripts need them. After normalising, a turn with no text left, or a conversation that is
not user/assistant turns ending with the assistant, is rejected.
"""

from __future__ import annotations

from datakit.recipe import Normalise as NormaliseConfig
from datakit.record_stages.base import RecordStage
from datakit.records import Record
from datakit.stats import StageStats
from datakit.text import normalise_text


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
