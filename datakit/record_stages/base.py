"""The accounting every stage goes through, so that no record is ever lost.

A stage only decides: keep, or reject with a reason (and optionally change the record). `run`
owns the rest: counting records in, kept and rejected by reason, and handing rejected records to
be written. The stats identity `in + created + repeated == kept + sum(rejected) + unselected`
holds for every stage by construction, and the build checks it before it writes stats.json.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from datakit.collector import collector_paused
from datakit.records import Record
from datakit.stats import StageStats


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
        """The stage over a batch, timed, with the cyclic collector paused (`datakit.collector`)."""
        started = time.perf_counter()
        try:
            with collector_paused():
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
