"""The cyclic collector is paused while a batch is built or staged, and found as it was after."""

from __future__ import annotations

import gc

import pytest

from datakit.collector import collector_paused
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
