"""The accounting every stage goes through, so that no record is ever lost.

A stage only decides: keep, or reject with a reason (and optionally change the record). `run`
owns the rest: counting records in, kept and rejected by reason, and handing rejected records to
be written. The stats identity `in + created + repeated == kept + sum(rejected) + unselected`
holds for every stage by construction, and the build checks it before it writes stats.json.
"""

from __future__ import annotations

import collections
import time
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


@dataclass
class Rejection:
    record: Record
    stage: str
    reason: str


class RecordStage:
    """A per-record stage: subclasses implement `apply`, returning None to keep or a reason code."""

    name: str = "stage"

    def apply(self, record: Record, stats: StageStats) -> str | None:
        raise NotImplementedError

    def begin_batch(self, records: list[Record]) -> None:
        """Work done once per batch before `apply` (a model's batched prediction)."""

    seconds: float = 0.0  # time spent in this stage (this process), for the build's profile; never in stats.json

    def run(self, records: list[Record], stats: StageStats) -> tuple[list[Record], list[Rejection]]:
        started = time.perf_counter()
        try:
            return self._run(records, stats)
        finally:
            self.seconds += time.perf_counter() - started

    def _run(self, records: list[Record], stats: StageStats) -> tuple[list[Record], list[Rejection]]:
        kept, rejected = [], []
        self.begin_batch(records)
        for record in records:
            stats.in_ += 1
            reason = self.apply(record, stats)
            if reason is None:
                kept.append(record)
            else:
                rejected.append(Rejection(record, self.name, reason))
                stats.rejected[reason] += 1
        stats.kept += len(kept)
        return kept, rejected
