"""datakit's partition task as datatrove PipelineSteps, so datatrove's executors can run it.

    [ReadAndConstruct, RecordStep(normalise), RecordStep(length), ..., WriteRecords]

Each step is a datatrove PipelineStep over Documents (the record rides in `metadata["record"]`,
its text in `text`, the index of its partition job in `metadata["partition"]`), so datatrove's own
filters and writers can be put between them; records rejected by a step are written with the
stage and reason, as in every datakit run. A rank runs its share of the partitions one after the
other (`RankJobs.load(rank)`), so a worker sets up once per rank, not once per partition. The steps
share one `Shared` per rank (datatrove pickles a pipeline as a whole, so they hold the same
object), whose `PartitionRun`s write exactly the files the Dask task writes: output bytes do not
depend on the engine. `datakit.engine.datatrove.DatatroveEngine.run_pipeline` runs it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from datakit.collector import each_batch_paused
from datakit.engine.datatrove import RankJobs, save_result
from datakit.partition import BATCH_ROWS, PartitionJob, PartitionResult, PartitionRun
from datakit.record_stages.order import enabled_stages


class Shared:
    """What the steps of one rank share: its jobs and the partitions it has started, in job order."""

    def __init__(self, jobs: RankJobs):
        self.jobs = jobs
        self.runs: dict[int, PartitionRun] = {}  # job index -> its run, in the order they were started
        self.done: dict[int, PartitionResult] = {}  # job index -> result, for partitions an earlier run finished
        self.finished: set[int] = set()


def _text(record: dict) -> str:
    return "\n".join([m["content"] for m in record["messages"]])


def _document(record: dict, partition: int) -> Document:
    return Document(text=_text(record), id=f"{record['source']}:{json.dumps(record['meta'].get('line', record['meta'].get('index', '')))}",
                    metadata={"record": record, "partition": partition})


class ReadAndConstruct(PipelineStep):
    """Reads this rank's partitions, one after the other, and yields their constructed records as Documents."""

    name = "datakit read + construct"
    type = "📖 - READER"

    def __init__(self, shared: Shared):
        super().__init__()
        self.shared = shared

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        for index, job in self.shared.jobs.load(rank):
            run = PartitionRun(job)
            self.shared.runs[index] = run
            done = run.done()
            if done is not None:  # finished by an earlier run: nothing to redo
                self.shared.done[index] = done
                continue
            run.start()
            for records in run.constructed():
                self.stat_update("constructed", value=len(records))
                for record in records:
                    yield _document(record, index)


def _batches(data: DocumentsPipeline, size: int) -> Iterator[list[Document]]:
    """Batches of at most `size` documents, all of one partition (a stage is applied within its partition's run)."""
    batch: list[Document] = []
    for doc in data:
        if batch and (len(batch) >= size or doc.metadata["partition"] != batch[0].metadata["partition"]):
            yield batch
            batch = []
        batch.append(doc)
    if batch:
        yield batch


class RecordStep(PipelineStep):
    """The `index`-th per-record stage of the partition (normalise, length, decontaminate, lid, ...), in batches."""

    type = "🔻 - FILTER"

    def __init__(self, shared: Shared, index: int, stage_name: str):
        super().__init__()
        self.shared, self.index = shared, index
        self.name = f"datakit {stage_name}"

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        if data is None:
            return
        for batch in _batches(data, BATCH_ROWS):
            partition = batch[0].metadata["partition"]
            run = self.shared.runs[partition]  # started by ReadAndConstruct before its first document came
            kept = run.apply(run.stages[self.index], [d.metadata["record"] for d in batch])
            self.stat_update("kept", value=len(kept))
            self.stat_update("rejected", value=len(batch) - len(kept))
            # A stage changes a record in place (normalise): its document goes on, with the text redone.
            docs = {id(d.metadata["record"]): d for d in batch}
            for record in kept:
                doc = docs.get(id(record))
                if doc is None:
                    yield _document(record, partition)
                else:
                    doc.text = _text(record)
                    yield doc


class WriteRecords(PipelineStep):
    """Writes the surviving records to each partition's work file and marks the partition done.

    The steps are lazy generators, in order: once a document of a later partition arrives here,
    every document of the partitions before it has passed every step, so those are finished then
    (also those that kept no record), and the rest once the stream ends."""

    name = "datakit work file"
    type = "💽 - WRITER"

    def __init__(self, shared: Shared, results: str):
        super().__init__()
        self.shared, self.results = shared, results

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        try:
            # The steps before this one are lazy: pulling a batch here reads, builds and stages it.
            each_batch_paused(_batches(data or [], BATCH_ROWS), self._keep)
            self._finish(before=None)
        except BaseException as e:
            for index, run in self.shared.runs.items():
                if index not in self.shared.finished:
                    run.abort(e)
            raise
        return
        yield

    def _keep(self, batch: list[Document]) -> None:
        partition = batch[0].metadata["partition"]
        self._finish(before=partition)
        self.shared.runs[partition].keep([d.metadata["record"] for d in batch])

    def _finish(self, before: int | None) -> None:
        """Finish, in order, the started partitions up to `before` (None: all of them)."""
        shared = self.shared
        for index, run in shared.runs.items():
            if index == before:
                return
            if index not in shared.finished:
                save_result(self.results, index, shared.done[index] if index in shared.done else run.finish())
                shared.finished.add(index)


def partition_pipeline(jobs: RankJobs, results: str) -> list[PipelineStep]:
    """The partition tasks as one datatrove pipeline: rank r runs the jobs of `jobs.load(r)` and saves
    each job's `PartitionResult` in `results` (what `DatatroveEngine.run_pipeline` reads back)."""
    shared = Shared(jobs)
    first: PartitionJob = jobs.load(0)[0][1]
    names = [spec.name for spec in enabled_stages(first.recipe)]
    return [ReadAndConstruct(shared), *(RecordStep(shared, i, n) for i, n in enumerate(names)), WriteRecords(shared, results)]
