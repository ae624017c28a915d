"""The counts every stage keeps, per-record stage or whole-corpus step, so that no record is lost.

The stats identity `in + created + repeated == kept + sum(rejected) + unselected` holds for every
stage (`balanced`), and the build checks it, and that each stage receives what the one before it
kept, before it writes stats.json.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import Any


@dataclass
class StageStats:
    name: str
    in_: int = 0
    kept: int = 0
    rejected: collections.Counter = field(default_factory=collections.Counter)
    created: int = 0
    unselected: int = 0
    repeated: int = 0
    report: dict[str, collections.Counter] = field(default_factory=dict)  # a stage's own breakdown, e.g. per language

    def merge(self, other: StageStats) -> StageStats:
        self.in_ += other.in_
        self.kept += other.kept
        self.rejected.update(other.rejected)
        self.created += other.created
        self.unselected += other.unselected
        self.repeated += other.repeated
        for key, counts in other.report.items():
            self.report.setdefault(key, collections.Counter()).update(counts)
        return self

    def note(self, key: str, what: str, n: int = 1) -> None:
        counts = self.report.get(key)
        if counts is None:
            counts = self.report[key] = collections.Counter()
        counts[what] += n

    @property
    def balanced(self) -> bool:
        return self.in_ + self.created + self.repeated == self.kept + sum(self.rejected.values()) + self.unselected

    def to_json(self) -> dict[str, Any]:
        out = {
            "name": self.name,
            "in": self.in_,
            "kept": self.kept,
            "rejected": dict(sorted(self.rejected.items())),
            "created": self.created,
            "unselected": self.unselected,
            "repeated": self.repeated,
        }
        if self.report:
            out["report"] = {k: dict(sorted(v.items())) for k, v in sorted(self.report.items())}
        return out

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> StageStats:
        return cls(d["name"], d["in"], d["kept"], collections.Counter(d["rejected"]), d.get("created", 0),
                   d.get("unselected", 0), d.get("repeated", 0),
                   {k: collections.Counter(v) for k, v in d.get("report", {}).items()})
