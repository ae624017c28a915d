"""The Dask engine on a real local cluster: results in job order, every job run once, several jobs a
task where there are many more jobs than threads, and a failing job fails the map."""

from __future__ import annotations

import math
import operator

import pytest

from datakit.engine.dask import MAX_JOBS_PER_TASK, TASKS_PER_THREAD, DaskEngine, jobs_per_task


def test_jobs_per_task_keeps_every_thread_busy():
    for threads in (1, 2, 16, 64):
        for jobs in (0, 1, 15, 16, 100, 609, 5_000, 100_000):
            per_task = jobs_per_task(jobs, threads)
            tasks = -(-jobs // per_task)
            assert 1 <= per_task <= MAX_JOBS_PER_TASK
            assert per_task == 1 or tasks >= TASKS_PER_THREAD * threads  # batched only with tasks to spare


@pytest.fixture(scope="module")
def engine():
    with DaskEngine(workers=2) as e:
        yield e


def test_many_jobs_come_back_in_order_each_run_once(engine):
    jobs = list(range(609))  # a local build's pilot: batched, 16 jobs a task on 2 threads
    assert jobs_per_task(len(jobs), engine.threads) > 1
    assert engine.map(operator.neg, jobs, "negate") == [-j for j in jobs]
    few = [4.0, 9.0, 16.0]  # fewer jobs than threads can batch: one job a task
    assert engine.map(math.sqrt, few, "roots") == [2.0, 3.0, 4.0]
    assert engine.map(math.sqrt, [], "nothing") == []


def test_a_failing_job_fails_the_map(engine):
    with pytest.raises(ValueError, match="math domain error"):
        engine.map(math.sqrt, [float(j) for j in range(300)] + [-1.0], "roots")
