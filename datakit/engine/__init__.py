"""Engines run what they are handed: a function over a list of jobs, results in job order.

They know tasks, workers and progress, nothing about records: nothing here imports the record
processing (sources, construct, stages, the corpus steps); the build hands an engine the task
function and its jobs. A task result that has `reused` set was finished by an earlier run.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, Protocol


class Engine(Protocol):
    def map(self, fn: Callable[[Any], Any], jobs: Sequence[Any], label: str) -> list[Any]:
        """fn(job) for every job, returned in job order whichever worker finished first."""
        ...


def default_workers() -> int:
    """One worker per core this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def count_reused(results: Sequence[Any]) -> int:
    return sum(1 for r in results if getattr(r, "reused", False))


def rank_groups(jobs: int, tasks: int) -> list[list[int]]:
    """The job indices of each task (a datatrove rank, a Dask task of several jobs), strided (task t
    gets t, t + tasks, ...): jobs planned next to each other (the partitions of one big source, the
    shards of one language) are alike in size, so striding spreads the heavy ones over the tasks
    where contiguous blocks would stack them."""
    return [list(range(task, jobs, tasks)) for task in range(tasks)]
