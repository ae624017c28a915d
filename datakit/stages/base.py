"""The accounting every stage goes through, so that no record is ever lost.

A stage only decides: keep, or reject with a reason (and optionally change the record). `run`
owns the rest: counting records in, kept and rejected by reason, and handing rejected records to
be written. The stats identity `in + created + repeated == kept + sum(rejected) + unselected`
holds for every stage by construction, and the build checks it before it writes stats.json.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from datakit.records import Record


@dataclass
class StageStats:
    name: str
    in_: int = 0
    kept: int = 0
    rejected: collections.Counter = field(default_factory=collections.Counter)
    created: int = 0
    unselected: int = 0
    repeated: int = 0

    def merge(self, other: StageStats) -> StageStats:
        self.in_ += other.in_
        self.kept += other.kept
        self.rejected.update(other.rejected)
        self.created += other.created
        self.unselected += other.unselected
        self.repeated += other.repeated
        return self

    @property
    def balanced(self) -> bool:
        return self.in_ + self.created + self.repeated == self.kept + sum(self.rejected.values()) + self.unselected

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "in": self.in_,
            "kept": self.kept,
            "rejected": dict(sorted(self.rejected.items())),
            "created": self.created,
            "unselected": self.unselected,
            "repeated": self.repeated,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> StageStats:
        return cls(d["name"], d["in"], d["kept"], collections.Counter(d["rejected"]), d.get("created", 0),
                   d.get("unselected", 0), d.get("repeated", 0))


@dataclass
class Rejection:
    record: Record
    stage: str
    reason: str


class RecordStage:
    """A per-record stage: subclasses implement `apply`, returning None to keep or a reason code."""

    name: str = "stage"

    def apply(self, record: Record) -> str | None:
        raise NotImplementedError

    def run(self, records: Iterable[Record], stats: StageStats) -> tuple[list[Record], list[Rejection]]:
        kept, rejected = [], []
        for record in records:
            stats.in_ += 1
            reason = self.apply(record)
            if reason is None:
                kept.append(record)
            else:
                rejected.append(Rejection(record, self.name, reason))
                stats.rejected[reason] += 1
        stats.kept += len(kept)
        return kept, rejected
