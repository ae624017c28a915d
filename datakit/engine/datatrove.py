"""datatrove's executors as a datakit engine, and a datatrove executor on Dask.

`DatatroveEngine.run_pipeline` runs a datatrove pipeline with one rank per job (the build hands
it the partition steps of `datakit.datatrove_steps.partition`); `map` runs phases that are not
record streams (writing rejected duplicates, writing shards) as ranks of a one-step pipeline
(`RunJobs`). Like every engine it knows ranks and results, nothing about records.

`DaskPipelineExecutor` runs the ranks of any datatrove pipeline as Dask tasks, on a LocalCluster
or an existing cluster, with datatrove's completion markers (finished ranks are skipped).
"""

from __future__ import annotations

import logging
import pickle
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from datatrove.data import DocumentsPipeline
from datatrove.executor import LocalPipelineExecutor
from datatrove.executor.base import DistributedEnvVars, PipelineExecutor
from datatrove.pipeline.base import PipelineStep
from datatrove.utils.stats import PipelineStats

from datakit.engine import count_reused, default_workers

log = logging.getLogger(__name__)


def quiet_datatrove() -> None:
    """datatrove logs every task at INFO to the console; keep warnings."""
    from datatrove.utils.logging import logger

    logger.remove()
    logger.add(sys.stderr, level="WARNING")


class RunJobs(PipelineStep):
    """Rank r runs fn(jobs[r]): for phases that are a list of independent jobs, not a record stream."""

    name = "datakit jobs"
    type = "⚙️ - JOBS"

    def __init__(self, fn: Callable[[Any], Any], jobs: Sequence[Any], results: str):
        super().__init__()
        self.fn, self.jobs, self.results = fn, list(jobs), results

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        save_result(self.results, rank, self.fn(self.jobs[rank]))
        return
        yield


def save_result(folder: str, rank: int, result: Any) -> None:
    """How a rank hands its result back to the engine (read back in rank order by `_load_results`)."""
    path = Path(folder) / f"{rank:05d}.pickle"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(pickle.dumps(result))
    tmp.replace(path)


def _load_results(folder: str, n: int) -> list[Any]:
    return [pickle.loads((Path(folder) / f"{r:05d}.pickle").read_bytes()) for r in range(n)]


class DaskPipelineExecutor(PipelineExecutor):
    """Runs a datatrove pipeline's ranks as Dask tasks (datatrove ships Local, Slurm and Ray executors).

    `client` is a distributed.Client (a LocalCluster's or an existing cluster's). Finished ranks
    (datatrove's completion files in `logging_dir`) are skipped, as with datatrove's executors.
    """

    def __init__(self, pipeline: list[PipelineStep | Callable], client, tasks: int = 1, logging_dir=None,
                 skip_completed: bool = True):
        super().__init__(pipeline, logging_dir, skip_completed)
        self.client, self.tasks = client, tasks

    @property
    def world_size(self) -> int:
        return self.tasks

    def get_distributed_env(self, node_rank: int = -1) -> DistributedEnvVars:
        return DistributedEnvVars(datatrove_node_ips="localhost", datatrove_cpus_per_task="1", datatrove_mem_per_cpu="-1",
                                  datatrove_gpus_on_node="-1", datatrove_executor="DASK")

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["client"] = None  # ranks run on workers; they do not need the client
        return state

    def run(self) -> PipelineStats:
        ranks = self.get_incomplete_ranks()
        if not ranks:
            return PipelineStats()
        futures = self.client.map(self._run_for_rank, ranks, pure=False, key=[f"datatrove-rank-{r}" for r in ranks])
        stats = sum(self.client.gather(futures), start=PipelineStats())
        with self.logging_dir.open("stats.json", "wt") as f:
            stats.save_to_disk(f)
        return stats


class DatatroveEngine:
    """The engine interface (`map`) on datatrove executors, plus `run_pipeline` for a real pipeline."""

    def __init__(self, workers: int | None, work_dir: Path, client=None):
        self.workers = workers or default_workers()
        self.work_dir = work_dir
        self.client = client
        self.calls = 0

    def __enter__(self) -> DatatroveEngine:
        quiet_datatrove()
        log.info("engine: datatrove (%s, %d workers)", "Dask executor" if self.client else "LocalPipelineExecutor", self.workers)
        return self

    def __exit__(self, *exc: Any) -> None:
        pass

    def _execute(self, pipeline: list[PipelineStep], tasks: int, folder: Path) -> int:
        """Run the ranks that are not complete; returns how many were complete already."""
        if self.client is not None:
            executor = DaskPipelineExecutor(pipeline, self.client, tasks=tasks, logging_dir=str(folder / "logs"))
        else:
            executor = LocalPipelineExecutor(pipeline, tasks=tasks, workers=min(self.workers, tasks),
                                             logging_dir=str(folder / "logs"), start_method="spawn")
        complete = tasks - len(executor.get_incomplete_ranks())
        executor.run()
        return complete

    def run_pipeline(self, label: str, jobs: Sequence[Any], pipeline: Callable[[str], list[PipelineStep]]) -> list[Any]:
        """Run `pipeline(results_folder)` with one rank per job; each rank saves its result with
        `save_result(results_folder, rank, result)`. Returns the results in job order."""
        return self._run(label, jobs, pipeline)

    def map(self, fn: Callable[[Any], Any], jobs: Sequence[Any], label: str) -> list[Any]:
        return self._run(label, jobs, lambda results: [RunJobs(fn, jobs, results)])

    def _run(self, label: str, jobs: Sequence[Any], pipeline: Callable[[str], list[PipelineStep]]) -> list[Any]:
        if not jobs:
            return []
        self.calls += 1
        folder = self.work_dir / f"{self.calls:02d}-{label.replace(' ', '_')}"
        results = str(folder / "results")
        skipped = self._execute(pipeline(results), len(jobs), folder)
        out = _load_results(results, len(jobs))
        reused = max(skipped, count_reused(out))
        log.info("%s: %d task%s via datatrove%s", label, len(jobs), "" if len(jobs) == 1 else "s",
                 f", {reused} reused from an earlier run" if reused else "")
        return out
