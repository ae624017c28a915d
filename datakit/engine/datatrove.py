"""datatrove: datakit's stages as datatrove PipelineSteps, and a datatrove executor on Dask.

`--engine datatrove` runs the prepare phase as a datatrove pipeline, one rank per partition:

    [ReadAndConstruct, RecordStep(normalise), RecordStep(length), ..., WriteRecords]

Each step is a datatrove PipelineStep over Documents (the record rides in `metadata["record"]`,
its text in `text`), so datatrove's own filters and writers can be put between them; records
rejected by a step are written with the stage and reason, as in every datakit run. The steps
share one `PartitionRun` per rank (datatrove pickles a pipeline as a whole, so they hold the same
object), which writes exactly the files the Dask task writes: output bytes do not depend on the
engine. Phases that are not record streams (writing rejected duplicates, writing shards) run as
ranks of a one-step pipeline (`RunJobs`).

`DaskPipelineExecutor` runs the ranks of any datatrove pipeline as Dask tasks, on a LocalCluster
or an existing cluster, with datatrove's completion markers (finished ranks are skipped).
"""

from __future__ import annotations

import json
import logging
import pickle
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from datatrove.data import Document, DocumentsPipeline
from datatrove.executor import LocalPipelineExecutor
from datatrove.executor.base import DistributedEnvVars, PipelineExecutor
from datatrove.pipeline.base import PipelineStep
from datatrove.utils.stats import PipelineStats

from datakit.partition import BATCH_ROWS, PartitionRun, PrepareJob

log = logging.getLogger(__name__)


def quiet_datatrove() -> None:
    """datatrove logs every task at INFO to the console; keep warnings."""
    from datatrove.utils.logging import logger

    logger.remove()
    logger.add(sys.stderr, level="WARNING")


class Shared:
    """What the steps of one rank share: the jobs (by rank) and the running partition."""

    def __init__(self, jobs: Sequence[PrepareJob]):
        self.jobs = list(jobs)
        self.run: PartitionRun | None = None
        self.skip = False


def _document(record: dict) -> Document:
    text = "\n".join(m["content"] for m in record["messages"])
    return Document(text=text, id=f"{record['source']}:{json.dumps(record['meta'].get('line', record['meta'].get('index', '')))}",
                    metadata={"record": record})


class ReadAndConstruct(PipelineStep):
    """Reads this rank's partition and yields its constructed records as Documents."""

    name = "datakit read + construct"
    type = "📖 - READER"

    def __init__(self, shared: Shared):
        super().__init__()
        self.shared = shared

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        run = PartitionRun(self.shared.jobs[rank])
        self.shared.run, self.shared.skip = run, run.done() is not None
        if self.shared.skip:  # finished by an earlier run: nothing to redo
            return
        run.start()
        for records in run.constructed():
            for record in records:
                self.stat_update("constructed")
                yield _document(record)


def _batches(data: DocumentsPipeline, size: int) -> Iterator[list[Document]]:
    batch = []
    for doc in data:
        batch.append(doc)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


class RecordStep(PipelineStep):
    """One datakit per-record stage (normalise, length, decontaminate, lid, quality), in batches."""

    type = "🔻 - FILTER"

    def __init__(self, shared: Shared, stage_name: str):
        super().__init__()
        self.shared, self.stage_name = shared, stage_name
        self.name = f"datakit {stage_name}"

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        if data is None:
            return
        for batch in _batches(data, BATCH_ROWS):
            run = self.shared.run
            stage = next(s for s in run.stages if s.name == self.stage_name)
            kept = run.apply(stage, [d.metadata["record"] for d in batch])
            self.stat_update("kept", value=len(kept))
            self.stat_update("rejected", value=len(batch) - len(kept))
            for record in kept:
                yield _document(record)


class WriteRecords(PipelineStep):
    """Writes the surviving records to the partition's work file and marks the partition done."""

    name = "datakit work file"
    type = "💽 - WRITER"

    def __init__(self, shared: Shared, results: str):
        super().__init__()
        self.shared, self.results = shared, results

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        # The steps are lazy generators: the partition is set up only once the first document is pulled.
        try:
            for batch in _batches(data or [], BATCH_ROWS):
                self.shared.run.keep([d.metadata["record"] for d in batch])
            run = self.shared.run
            result = run.done() if self.shared.skip else run.finish()
        except BaseException as e:
            if self.shared.run is not None:
                self.shared.run.abort(e)
            raise
        _save_result(self.results, rank, result)
        return
        yield


class RunJobs(PipelineStep):
    """Rank r runs fn(jobs[r]): for phases that are a list of independent jobs, not a record stream."""

    name = "datakit jobs"
    type = "⚙️ - JOBS"

    def __init__(self, fn: Callable[[Any], Any], jobs: Sequence[Any], results: str):
        super().__init__()
        self.fn, self.jobs, self.results = fn, list(jobs), results

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        _save_result(self.results, rank, self.fn(self.jobs[rank]))
        return
        yield


def _save_result(folder: str, rank: int, result: Any) -> None:
    path = Path(folder) / f"{rank:05d}.pickle"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(pickle.dumps(result))
    tmp.replace(path)


def _load_results(folder: str, n: int) -> list[Any]:
    return [pickle.loads((Path(folder) / f"{r:05d}.pickle").read_bytes()) for r in range(n)]


def prepare_pipeline(jobs: Sequence[PrepareJob], results: str) -> list[PipelineStep]:
    """The prepare phase as a datatrove pipeline over `jobs` (rank r prepares jobs[r])."""
    shared = Shared(jobs)
    from datakit.partition import stage_names

    names = [n for n in stage_names(jobs[0].recipe) if n not in ("read", "construct")]
    return [ReadAndConstruct(shared), *(RecordStep(shared, n) for n in names), WriteRecords(shared, results)]


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
    """The build's engine interface (`map`) on datatrove executors; `prepare` gets the real pipeline."""

    def __init__(self, workers: int | None, work_dir: Path, client=None):
        from datakit.engine.dask import default_workers

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

    def prepare(self, jobs: Sequence[PrepareJob]) -> list[dict[str, Any]]:
        """The prepare phase as datakit's steps in a datatrove pipeline."""
        return self._run("prepare", jobs, lambda results: prepare_pipeline(jobs, results))

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
        reused = max(skipped, sum(1 for r in out if isinstance(r, dict) and r.get("reused")))
        log.info("%s: %d task%s via datatrove%s", label, len(jobs), "" if len(jobs) == 1 else "s",
                 f", {reused} reused from an earlier run" if reused else "")
        return out
