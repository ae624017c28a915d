"""The Dask engine: runs tasks on a LocalCluster sized to the machine, or on an existing cluster.

The engine knows tasks and futures, nothing about records. `map` submits one task per job,
shows progress as they finish, and returns the results in job order, so what the driver does
next never depends on which worker finished first.
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

from datakit.engine import count_reused, default_workers

log = logging.getLogger(__name__)


class DaskEngine:
    def __init__(self, workers: int | None = None, scheduler: str | None = None, console=None):
        self.workers = workers or default_workers()
        self.scheduler = scheduler
        self.console = console
        self.client = None
        self.cluster = None

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

        futures = self.client.map(fn, jobs, pure=False, key=[f"{label}-{i}" for i in range(len(jobs))])
        index = {f.key: i for i, f in enumerate(futures)}
        results: list[Any] = [None] * len(jobs)
        columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn()]
        with Progress(*columns, console=self.console, transient=False, disable=self.console is None) as progress:
            bar = progress.add_task(label, total=len(jobs))
            try:
                for future in as_completed(futures):
                    results[index[future.key]] = future.result()
                    progress.advance(bar)
            except BaseException:
                for f in futures:
                    f.cancel()
                raise
        reused = count_reused(results)
        log.info("%s: %d task%s%s", label, len(jobs), "" if len(jobs) == 1 else "s",
                 f", {reused} reused from an earlier run" if reused else "")
        return results
