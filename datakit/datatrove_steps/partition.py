"""datakit's partition task as datatrove PipelineSteps, so datatrove's executors can run it.

    [ReadAndConstruct, RecordStep(normalise), RecordStep(length), ..., WriteRecords]

Each step is a datatrove PipelineStep over Documents (the record rides in `metadata["record"]`,
its text in `text`), so datatrove's own filters and writers can be put between them; records
rejected by a step are written with the stage and reason, as in every datakit run. The steps
share one `PartitionRun` per rank (datatrove pickles a pipeline as a whole, so they hold the same
object), which writes exactly the files the Dask task writes: output bytes do not depend on the
engine. `datakit.engine.datatrove.DatatroveEngine.run_pipeline` runs it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence

from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from datakit.engine.datatrove import save_result
from datakit.partition import BATCH_ROWS, PartitionJob, PartitionRun
from datakit.record_stages.order import enabled_stages


class Shared:
    """What the steps of one rank share: the jobs (by rank) and the running partition."""

    def __init__(self, jobs: Sequence[PartitionJob]):
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
    """The `index`-th per-record stage of the partition (normalise, length, decontaminate, lid, ...), in batches."""

    type = "🔻 - FILTER"

    def __init__(self, shared: Shared, index: int, stage_name: str):
        super().__init__()
        self.shared, self.index = shared, index
        self.name = f"datakit {stage_name}"

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        if data is None:
            return
        stage = None
        for batch in _batches(data, BATCH_ROWS):
            run = self.shared.run  # set up by ReadAndConstruct once the first document is pulled
            stage = stage or run.stages[self.index]
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
        save_result(self.results, rank, result)
        return
        yield


def partition_pipeline(jobs: Sequence[PartitionJob], results: str) -> list[PipelineStep]:
    """The partition tasks as one datatrove pipeline over `jobs` (rank r runs jobs[r]); each rank
    saves its `PartitionResult` in `results` (what `DatatroveEngine.run_pipeline` reads back)."""
    shared = Shared(jobs)
    names = [spec.name for spec in enabled_stages(jobs[0].recipe)]
    return [ReadAndConstruct(shared), *(RecordStep(shared, i, n) for i, n in enumerate(names)), WriteRecords(shared, results)]
