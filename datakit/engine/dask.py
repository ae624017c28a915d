"""The Dask engine: runs tasks on a LocalCluster sized to the machine, or on an existing cluster.

The engine knows tasks and futures, nothing about records. `map` submits the jobs as tasks,
shows progress as they finish, and returns the results in job order, so what the driver does
next never depends on which worker finished first.

Where there are many more jobs than worker threads, a task runs several jobs one after another
(`TASKS_PER_THREAD`): a Dask task costs a few milliseconds of scheduling and transfer, and a local
build with a target size hands it hundreds of partitions (a UDHR file each) whose own work is
about as small. A task takes every n-th job, not n neighbours (`rank_groups`, as datatrove's ranks
do), so that a run of large jobs (one source's partitions) is spread over the tasks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from datakit.engine import count_reused, default_workers, rank_groups

log = logging.getLogger(__name__)
TASKS_PER_THREAD = 8  # at least this many tasks per worker thread, so that no thread waits for a long last one
MAX_JOBS_PER_TASK = 16


def jobs_per_task(jobs: int, threads: int) -> int:
    """How many jobs one task runs: one until there are TASKS_PER_THREAD tasks for every thread."""
    return max(1, min(MAX_JOBS_PER_TASK, jobs // (TASKS_PER_THREAD * max(threads, 1))))


def run_each(fn: Callable[[Any], Any], jobs: Sequence[Any]) -> list[Any]:
    """A task of several jobs: fn(job) for each, in order."""
    return [fn(job) for job in jobs]


class DaskEngine:
    def __init__(self, workers: int | None = None, scheduler: str | None = None, console=None):
        self.workers = workers or default_workers()
        self.scheduler = scheduler
        self.console = console
        self.client = None
        self.cluster = None

    @property
    def threads(self) -> int:
        """The cluster's worker threads now (an existing cluster may have grown or shrunk)."""
        return sum(self.client.nthreads().values()) or 1  # type: ignore[union-attr]

    def __enter__(self) -> DaskEngine:
        for noisy in ("distributed", "distributed.worker", "distributed.scheduler", "distributed.nanny", "distributed.core", "bokeh", "tornado"):
            logging.getLogger(noisy).setLevel(logging.ERROR)
        from distributed import Client, LocalCluster

        if self.scheduler:
            self.client = Client(self.scheduler, timeout="30s")
            log.info("attached to Dask scheduler %s (%d workers)", self.scheduler, len(self.client.scheduler_info().get("workers", {})))
        else:
            self.cluster = LocalCluster(n_workers=self.workers, threads_per_worker=1, processes=True,
                                        dashboard_address=":0", silence_logs=logging.ERROR)
            self.client = Client(self.cluster)
            log.info("started a local Dask cluster: %d worker process%s", self.workers, "" if self.workers == 1 else "es")
        link = getattr(self.client, "dashboard_link", None)
        if link:
            log.info("Dask dashboard: %s", link)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()

    def map(self, fn: Callable[[Any], Any], jobs: Sequence[Any], label: str) -> list[Any]:
        if not jobs:
            return []
        from distributed import as_completed

        tasks = -(-len(jobs) // jobs_per_task(len(jobs), self.threads))
        members = rank_groups(len(jobs), tasks)
        futures = self.client.map(run_each, [fn] * tasks, [[jobs[i] for i in m] for m in members], pure=False,
                                  key=[f"{label}-{t}" for t in range(tasks)])
        index = {f.key: t for t, f in enumerate(futures)}
        results: list[Any] = [None] * len(jobs)
        columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn()]
        with Progress(*columns, console=self.console, transient=False, disable=self.console is None) as progress:
            bar = progress.add_task(label, total=len(jobs))
            try:
                for future in as_completed(futures):
                    t = index[future.key]
                    for i, result in zip(members[t], future.result(), strict=True):
                        results[i] = result
                    progress.advance(bar, len(members[t]))
            except BaseException:
                for f in futures:
                    f.cancel()
                raise
        reused = count_reused(results)
        log.info("%s: %d task%s%s%s", label, len(jobs), "" if len(jobs) == 1 else "s",
                 f" ({tasks} on Dask, several each)" if tasks < len(jobs) else "",
                 f", {reused} reused from an earlier run" if reused else "")
        return results
