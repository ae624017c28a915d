"""datatrove's executors as a datakit engine, and a datatrove executor on Dask.

A phase runs as a few datatrove ranks (`TASKS_PER_WORKER` per worker), each looping over its share
of the jobs, not one rank per job: datatrove pickles the whole executor for every rank it starts
and sets up a log file, stats and a completion marker per rank, so a rank per job made that cost
grow with the jobs (837 shards: 991 s against 13 s on Dask). The jobs are written to disk once, a
pickle per rank (`RankJobs`), so a rank loads only its own share and the executor stays small.

`DatatroveEngine.run_pipeline` runs a datatrove pipeline whose rank r handles `RankJobs.load(r)`
(the build hands it the partition steps of `datakit.datatrove_steps.partition`); `map` runs phases
that are not record streams (writing rejected duplicates, writing shards) as ranks of a one-step
pipeline (`RunJobs`). Like every engine it knows ranks and results, nothing about records.

`DaskPipelineExecutor` runs the ranks of any datatrove pipeline as Dask tasks, on a LocalCluster
or an existing cluster, with datatrove's completion markers (finished ranks are skipped).
"""

from __future__ import annotations

import dataclasses
import logging
import pickle
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cloudpickle
import multiprocess
from datatrove.data import DocumentsPipeline
from datatrove.executor import LocalPipelineExecutor
from datatrove.executor.base import DistributedEnvVars, PipelineExecutor
from datatrove.pipeline.base import PipelineStep
from datatrove.utils.stats import PipelineStats

from datakit.engine import count_reused, default_workers, rank_groups

log = logging.getLogger(__name__)

# Ranks per worker: more than one, so that a rank of slow jobs does not hold the whole phase while
# the other workers wait (the pool hands the next rank to whichever worker is free); few, so that
# datatrove's cost per rank stays a few hundred milliseconds per phase.
TASKS_PER_WORKER = 4


def quiet_datatrove() -> None:
    """datatrove logs every task at INFO to the console; keep warnings."""
    from datatrove.utils.logging import logger

    logger.remove()
    logger.add(sys.stderr, level="WARNING")


class RankJobs:
    """Each rank's share of a phase's jobs, pickled to `folder` once by the engine; a rank loads its own.

    Pickled with cloudpickle, as Dask sends tasks: a job may hold a lambda or a partial."""

    def __init__(self, folder: str, jobs: Sequence[Any], tasks: int):
        self.folder = folder
        for rank, indices in enumerate(rank_groups(len(jobs), tasks)):
            _write_pickle(self._path(rank), cloudpickle.dumps([(i, jobs[i]) for i in indices]))

    def _path(self, rank: int) -> Path:
        return Path(self.folder) / f"{rank:05d}.pickle"

    def load(self, rank: int) -> list[tuple[int, Any]]:
        """(job index, job) for every job of `rank`, in job order."""
        return pickle.loads(self._path(rank).read_bytes())


class RunJobs(PipelineStep):
    """Rank r runs fn(job) for each of its jobs: for phases that are a list of independent jobs, not a record stream."""

    name = "datakit jobs"
    type = "⚙️ - JOBS"

    def __init__(self, fn: Callable[[Any], Any], jobs: RankJobs, results: str):
        super().__init__()
        self.fn, self.jobs, self.results = fn, jobs, results

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        for index, job in self.jobs.load(rank):
            save_result(self.results, index, self.fn(job))
            self.stat_update("jobs")
        return
        yield


def _write_pickle(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def save_result(folder: str, index: int, result: Any) -> None:
    """How a rank hands job `index`'s result back to the engine (read back in job order by `_load_results`)."""
    _write_pickle(Path(folder) / f"{index:05d}.pickle", pickle.dumps(result))


def _load_results(folder: str, n: int) -> list[Any]:
    return [pickle.loads((Path(folder) / f"{i:05d}.pickle").read_bytes()) for i in range(n)]


def _reused(result: Any) -> Any:
    """A result read back from a rank that an earlier run completed, marked as such (see `datakit.engine`)."""
    if dataclasses.is_dataclass(result) and not isinstance(result, type) and hasattr(result, "reused"):
        return dataclasses.replace(result, reused=True)
    return result


def preload_pipeline_modules(pipeline: list[PipelineStep]) -> None:
    """Have the fork server import the modules the pipeline's steps (and jobs) come from.

    Every phase starts a new pool; its workers fork from one fork server that lives as long as the
    build, so what the server imported, each worker has without importing it again (a spawned
    worker imports the whole package per phase: seconds). Each worker also runs the program's
    main module again (`python -m datakit.build`: multiprocessing's rule), which is cheap only
    when what it imports is loaded already. The server takes its list when it starts, so the first
    phase (the partition steps, which import nearly everything) sets it."""
    modules = {type(step).__module__ for step in pipeline}
    modules |= {step.fn.__module__ for step in pipeline if isinstance(step, RunJobs) and getattr(step.fn, "__module__", None)}
    main = getattr(sys.modules.get("__main__"), "__spec__", None)
    if main is not None and main.name:  # run as `python -m NAME`
        modules.add(main.name)
    multiprocess.get_context("forkserver").set_forkserver_preload(sorted(modules))


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

    def _executor(self, pipeline: list[PipelineStep], tasks: int, folder: Path) -> PipelineExecutor:
        if self.client is not None:
            return DaskPipelineExecutor(pipeline, self.client, tasks=tasks, logging_dir=str(folder / "logs"))
        preload_pipeline_modules(pipeline)
        return LocalPipelineExecutor(pipeline, tasks=tasks, workers=min(self.workers, tasks),
                                     logging_dir=str(folder / "logs"), start_method="forkserver")

    def run_pipeline(self, label: str, jobs: Sequence[Any], pipeline: Callable[[RankJobs, str], list[PipelineStep]]) -> list[Any]:
        """Run `pipeline(rank_jobs, results_folder)`, whose rank r handles `rank_jobs.load(r)` and saves
        job i's result with `save_result(results_folder, i, result)`. Returns the results in job order."""
        return self._run(label, jobs, pipeline)

    def map(self, fn: Callable[[Any], Any], jobs: Sequence[Any], label: str) -> list[Any]:
        return self._run(label, jobs, lambda rank_jobs, results: [RunJobs(fn, rank_jobs, results)])

    def _run(self, label: str, jobs: Sequence[Any], pipeline: Callable[[RankJobs, str], list[PipelineStep]]) -> list[Any]:
        if not jobs:
            return []
        self.calls += 1
        tasks = min(len(jobs), self.workers * TASKS_PER_WORKER)
        # The folder names the split: another worker count is another split, whose ranks start afresh
        # (the jobs themselves still reuse what they finished).
        folder = self.work_dir / f"{self.calls:02d}-{label.replace(' ', '_')}-{tasks}"
        results = str(folder / "results")
        executor = self._executor(pipeline(RankJobs(str(folder / "jobs"), jobs, tasks), results), tasks, folder)
        complete = sorted(set(range(tasks)) - set(executor.get_incomplete_ranks()))
        executor.run()
        out = _load_results(results, len(jobs))
        groups = rank_groups(len(jobs), tasks)
        for rank in complete:
            for i in groups[rank]:
                out[i] = _reused(out[i])
        reused = count_reused(out)
        log.info("%s: %d job%s in %d datatrove task%s%s", label, len(jobs), "" if len(jobs) == 1 else "s", tasks, "" if tasks == 1 else "s",
                 f", {reused} reused from an earlier run" if reused else "")
        return out
