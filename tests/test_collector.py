"""The cyclic collector is paused while a batch is built or staged, and found as it was after;
a task pauses each batch's whole life, from being made to being dropped."""

from __future__ import annotations

import gc

import pytest

from datakit.collector import collector_paused, each_batch_paused
from datakit.record_stages.base import RecordStage
from datakit.stats import StageStats


@pytest.fixture(autouse=True)
def _collecting():
    was = gc.isenabled()
    gc.enable()
    yield
    if not was:
        gc.disable()


def test_paused_inside_and_resumed_after_even_on_error():
    with collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(ValueError), collector_paused():
        raise ValueError("a failing batch")
    assert gc.isenabled()


def test_nested_block_leaves_the_outer_pause_alone():
    with collector_paused():
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # only the block that paused it resumes it
    assert gc.isenabled()
    gc.disable()
    with collector_paused():
        pass
    assert not gc.isenabled()  # paused by someone else before: left paused


class _Seen(RecordStage):
    name = "seen"

    def __init__(self):
        self.collecting: list[bool] = []

    def apply(self, record, stats):
        self.collecting.append(gc.isenabled())
        if record.get("boom"):
            raise RuntimeError("boom")
        return None if record["keep"] else "dropped"


def test_a_stage_runs_its_batch_with_the_collector_paused():
    stage, stats = _Seen(), StageStats("seen")
    kept, rejected = stage.run([{"keep": True}, {"keep": False}], stats)
    assert stage.collecting == [False, False] and gc.isenabled()
    assert len(kept) == 1 and [r.reason for r in rejected] == ["dropped"]
    with pytest.raises(RuntimeError):
        stage.run([{"keep": True, "boom": True}], stats)
    assert gc.isenabled()


class _Batch:
    """A batch that notes whether the collector ran when it was made, worked on and freed."""

    def __init__(self, n: int, seen: list):
        self.n, self.seen = n, seen
        seen.append(("made", n, gc.isenabled()))

    def __del__(self):
        self.seen.append(("freed", self.n, gc.isenabled()))


def test_each_batch_is_paused_from_being_made_to_being_dropped():
    seen: list = []

    def batches():
        for n in range(3):
            yield _Batch(n, seen)

    def work(batch: _Batch) -> None:
        seen.append(("worked", batch.n, gc.isenabled()))

    each_batch_paused(batches(), work)
    assert seen == [(step, n, False) for n in range(3) for step in ("made", "worked", "freed")]
    assert gc.isenabled()


def test_each_batch_paused_resumes_the_collector_when_work_fails():
    def work(batch: int) -> None:
        if batch == 1:
            raise RuntimeError("a failing batch")

    with pytest.raises(RuntimeError):
        each_batch_paused(iter(range(3)), work)
    assert gc.isenabled()
