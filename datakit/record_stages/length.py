"""Length limits: turns too short or too long to train on, conversations with too many turns."""

from __future__ import annotations

from datakit.recipe import Length as LengthConfig
from datakit.record_stages.base import RecordStage
from datakit.records import Record
from datakit.stats import StageStats


class Length(RecordStage):
    name = "length"

    def __init__(self, config: LengthConfig):
        self.config = config

    def apply(self, record: Record, stats: StageStats) -> str | None:
        messages = record["messages"]
        if len(messages) > self.config.max_turns:
            return "too_many_turns"
        sizes = [len(m["content"]) for m in messages if m["role"] != "system"]
        if max(sizes) > self.config.max_chars:
            return "too_long"
        if min(sizes) < self.config.min_chars:
            return "too_short"
        return None
