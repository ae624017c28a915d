"""Baseline for the scale benchmark: a plain datatrove pipeline doing datakit's global work.

bench/bench_scale.py compares datakit's throughput with this: language ID, exact dedup, MinHash
near dedup and a Parquet write, built only from datatrove's own blocks with their documented
settings, each stage on `LocalPipelineExecutor(tasks=..., workers=workers)` on the same cores.

Stages (each one `LocalPipelineExecutor`, run in this order, wall time measured around each):

1. ``lid_exact_signature``: JsonlReader(docs) -> LanguageFilter (fastText lid.176, datatrove's
   defaults: ``languages=None`` so every language is kept, ``language_threshold=0.65`` on the top
   label) -> JsonlWriter(work/data/lid) -> ExactDedupSignature (xxhash64 of ``doc.text``).
2. ``exact_find``: ExactFindDedups over the signatures (tasks = ``finder_workers`` = workers, as
   ExactDedupSignature asks).
3. ``exact_filter_minhash_signature``: JsonlReader(work/data/lid) -> ExactDedupFilter ->
   JsonlWriter(work/data/exact) -> MinhashDedupSignature. Same tasks as stage 1, so each rank
   re-reads exactly the documents it hashed (the exact-dedup flow datatrove documents).
4. ``minhash_buckets``: MinhashDedupBuckets, tasks = ``num_buckets`` (14).
5. ``minhash_cluster``: MinhashDedupCluster, 1 task.
6. ``minhash_filter_parquet``: JsonlReader(work/data/exact) -> MinhashDedupFilter ->
   ParquetWriter(work/output) (snappy, datatrove's default; columns id, text and metadata as a
   JSON string, see `parquet_row`).

MinHash uses ``MinhashConfig()`` as documented: 5-gram shingles, 14 bands x 8 hashes (112
hashes, similarity threshold ~0.72), seed 1, 64-bit xxhash, datatrove's text normalisation.
The one change is the word tokenizer: datatrove's default (``language="eng"``) is spaCy, which is
not installed, so `OfflineWordTokenizer` is passed in its place (whitespace split after datatrove's
``simplify_text``; characters of unspaced scripts such as Han, kana, Thai or Khmer are one token
each, so their shingles are 5-character n-grams).

Language ID runs offline: datatrove's FT176LID downloads lid.176.bin on first use; `LocalFastTextLID`
loads a local fastText model instead (datakit's cached lid.176.ftz by default, the quantised
version of the same 176-language model).

The work folder is deleted at start (datatrove would otherwise skip tasks it finds completed in
the logs and reuse stale outputs); ``docs`` must not lie inside it.

    python bench/datatrove_baseline.py --docs DIR --work DIR [--workers 2] [--tasks N] [--lid-model PATH]

Import it as a module found on ``sys.path`` (``sys.path.insert(0, "bench")``), not loaded from a
file location: the forkserver workers unpickle the two classes below by module name.
"""

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import regex
from bench_build import TreeMemory  # the bench folder is on sys.path (see above)
from datatrove.data import Document
from datatrove.executor.local import LocalPipelineExecutor
from datatrove.io import get_datafolder
from datatrove.pipeline.dedup.exact_dedup import (
    ExactDedupConfig,
    ExactDedupFilter,
    ExactDedupSignature,
    ExactFindDedups,
)
from datatrove.pipeline.dedup.minhash import (
    MinhashConfig,
    MinhashDedupBuckets,
    MinhashDedupCluster,
    MinhashDedupFilter,
    MinhashDedupSignature,
)
from datatrove.pipeline.filters import LanguageFilter
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers import JsonlWriter, ParquetWriter
from datatrove.utils.lid import FT176LID
from datatrove.utils.word_tokenizers import WordTokenizer, simple_span_tokenize, strip_strings

# Scripts written without spaces between words: each character is a token.
_UNSPACED = r"\p{Han}\p{Hiragana}\p{Katakana}\p{Thai}\p{Lao}\p{Khmer}\p{Myanmar}\p{Tibetan}"
_TOKEN = regex.compile(rf"[{_UNSPACED}]|[^\s{_UNSPACED}]+")
_SENTENCE = regex.compile(r"[^.!?。！？\n]+[.!?。！？]*")


PARQUET_SCHEMA = pa.schema([("id", pa.string()), ("text", pa.string()), ("metadata", pa.string())])


class OfflineWordTokenizer(WordTokenizer):
    """Word tokenizer for MinhashDedupSignature that needs no spaCy or model download.

    Splits on whitespace; characters of unspaced scripts are single tokens. MinhashDedupSignature
    only calls `word_tokenize` (on text already lower-cased and stripped of punctuation)."""

    def word_tokenize(self, text: str) -> list[str]:
        return _TOKEN.findall(text)

    def sent_tokenize(self, text: str) -> list[str]:
        return strip_strings(_SENTENCE.findall(text))

    def span_tokenize(self, text: str) -> list[tuple[int, int]]:
        return list(simple_span_tokenize(text, self.sent_tokenize(text)))


class LocalFastTextLID(FT176LID):
    """datatrove's FT176LID reading a local fastText model file instead of downloading lid.176.bin."""

    def __init__(self, model_path: str, languages: list[str] | None = None, k: int = -1) -> None:
        super().__init__(languages, k)
        self.model_path = model_path

    @property
    def model(self) -> Any:
        if self._model is None:
            from fasttext.FastText import _FastText

            self._model = _FastText(self.model_path)
        return self._model


def parquet_row(writer: Any, doc: Document) -> dict:
    """ParquetWriter adapter: id, text and the metadata as one JSON string.

    datatrove's ParquetWriter takes its schema from the first document it writes, so documents
    whose metadata has other keys fail the write; a JSON column keeps the schema fixed."""
    import orjson

    return {"id": doc.id, "text": doc.text, "metadata": orjson.dumps(doc.metadata).decode()}


def text_content(doc: Document) -> str:
    """Exact-dedup key: the whole text (as in datatrove's examples)."""
    return doc.text


def _step_stats(logging_dir: Path) -> dict[str, dict[str, float]]:
    """{step name: {stat: total}} from an executor's merged stats.json."""
    steps = json.loads((logging_dir / "stats.json").read_text())
    out: dict[str, dict[str, float]] = {}
    for step in steps:
        out[step["name"]] = {key: value["total"] if isinstance(value, dict) else value
                             for key, value in step.get("stats", {}).items()}
    return out


def _stat(stats: dict[str, dict[str, float]], name_part: str, key: str) -> int:
    for name, values in stats.items():
        if name_part in name:
            return int(values.get(key, 0))
    raise KeyError(f"no step named like {name_part!r} in {list(stats)}")


def _fill_missing_ranks(folder: Path, tasks: int) -> None:
    """Create empty `${rank}.jsonl.gz` files for ranks that wrote no documents.

    A re-reading JsonlReader gives rank r the r-th file in sorted order; a missing file would shift
    the ranks and misalign the document indexes the dedup filters rely on."""
    import gzip

    folder.mkdir(parents=True, exist_ok=True)
    for rank in range(tasks):
        path = folder / f"{rank:05d}.jsonl.gz"
        if not path.exists():
            with gzip.open(path, "wb"):
                pass


def run_baseline(docs: str, work: str, workers: int = 2, tasks: int | None = None,
                 lid_model: str | None = None) -> dict:
    """Run the datatrove pipeline over JSON Lines documents in folder `docs` (each line
    {"id": str, "text": str, "metadata": {...}}), writing everything under `work` (cleared first).

    `tasks` (default: `workers`, at most one per input file) is the task count of the per-document
    stages; `lid_model` is a local fastText LID model (default: datakit's cached lid.176.ftz).

    Returns {"docs_in", "docs_out", "seconds", "stage_seconds", "bytes_written", "peak_rss_mb", ...}:
    bytes_written counts every data file under `work` (intermediate JSONL, signatures, duplicate
    ids, the Parquet output), not the logs; peak_rss_mb is the peak summed RSS of this process and
    all its descendants (shared pages counted once per process)."""
    docs_path = Path(docs).resolve()
    work_path = Path(work).resolve()
    if work_path == docs_path or work_path in docs_path.parents:
        raise ValueError(f"work folder {work_path} contains the input {docs_path}; it is cleared at start")
    if lid_model is None:
        from datakit.models import resolve_lid_model

        lid_model = str(resolve_lid_model(None))
    if not Path(lid_model).is_file():
        raise FileNotFoundError(f"LID model {lid_model} not found")
    n_files = len(get_datafolder(str(docs_path)).list_files(recursive=True))
    if n_files == 0:
        raise FileNotFoundError(f"no input files in {docs_path}")
    tasks = tasks or max(1, min(workers, n_files))

    shutil.rmtree(work_path, ignore_errors=True)
    data, logs = work_path / "data", work_path / "logs"
    lid_dir, exact_dir = data / "lid", data / "exact"
    exact_sigs, exact_dups = data / "exact_sigs", data / "exact_dups"
    mh_sigs, mh_buckets, mh_remove = data / "minhash_sigs", data / "minhash_buckets", data / "minhash_remove_ids"
    output = work_path / "output"

    exact_config = ExactDedupConfig(content_getter=text_content)
    minhash_config = MinhashConfig()  # 5-grams, 14 buckets x 8 hashes, seed 1, 64-bit xxhash
    finder_workers = max(1, workers)

    # languages=None: keep a document in any language whose top lid.176 score is > 0.65 (datatrove's
    # default language_threshold); documents whose best label scores <= 0.65 are dropped.
    language_filter = LanguageFilter(languages=None)
    language_filter.model = LocalFastTextLID(lid_model, languages=None)

    def executor(name: str, pipeline: list, n_tasks: int, depends: LocalPipelineExecutor | None
                 ) -> LocalPipelineExecutor:
        return LocalPipelineExecutor(pipeline=pipeline, tasks=n_tasks, workers=workers,
                                     logging_dir=str(logs / name), depends=depends, skip_completed=False)

    stages: list[tuple[str, LocalPipelineExecutor, Any]] = []
    s1 = executor("lid_exact_signature", [
        JsonlReader(str(docs_path)),
        language_filter,
        JsonlWriter(str(lid_dir), output_filename="${rank}.jsonl.gz"),
        ExactDedupSignature(output_folder=str(exact_sigs), config=exact_config, finder_workers=finder_workers),
    ], tasks, None)
    stages.append(("lid_exact_signature", s1, lambda: _fill_missing_ranks(lid_dir, tasks)))
    s2 = executor("exact_find", [
        ExactFindDedups(data_folder=str(exact_sigs), output_folder=str(exact_dups), config=exact_config),
    ], finder_workers, s1)
    stages.append(("exact_find", s2, None))
    s3 = executor("exact_filter_minhash_signature", [
        JsonlReader(str(lid_dir)),
        ExactDedupFilter(data_folder=str(exact_dups), config=exact_config),
        JsonlWriter(str(exact_dir), output_filename="${rank}.jsonl.gz"),
        MinhashDedupSignature(output_folder=str(mh_sigs), config=minhash_config, language=OfflineWordTokenizer()),
    ], tasks, s2)
    stages.append(("exact_filter_minhash_signature", s3, lambda: _fill_missing_ranks(exact_dir, tasks)))
    s4 = executor("minhash_buckets", [
        MinhashDedupBuckets(input_folder=str(mh_sigs), output_folder=str(mh_buckets), config=minhash_config),
    ], minhash_config.num_buckets, s3)
    stages.append(("minhash_buckets", s4, None))
    s5 = executor("minhash_cluster", [
        MinhashDedupCluster(input_folder=str(mh_buckets), output_folder=str(mh_remove), config=minhash_config),
    ], 1, s4)
    stages.append(("minhash_cluster", s5, None))
    s6 = executor("minhash_filter_parquet", [
        JsonlReader(str(exact_dir)),
        MinhashDedupFilter(input_folder=str(mh_remove)),
        ParquetWriter(str(output), adapter=parquet_row, schema=PARQUET_SCHEMA),
    ], tasks, s5)
    stages.append(("minhash_filter_parquet", s6, None))

    stage_seconds: dict[str, float] = {}
    started = time.perf_counter()
    with TreeMemory(os.getpid(), every=0.2) as memory:
        for name, stage, after in stages:
            t0 = time.perf_counter()
            stage.run()
            if after is not None:
                after()
            stage_seconds[name] = round(time.perf_counter() - t0, 3)
    seconds = time.perf_counter() - started

    import pyarrow.parquet as pq

    docs_out = sum(pq.ParquetFile(path).metadata.num_rows for path in output.rglob("*.parquet"))
    lid_stats = _step_stats(logs / "lid_exact_signature")
    exact_stats = _step_stats(logs / "exact_filter_minhash_signature")
    minhash_stats = _step_stats(logs / "minhash_filter_parquet")
    docs_in = _stat(lid_stats, "Language ID", "total")
    result = {
        "docs_in": docs_in,
        "docs_out": docs_out,
        "seconds": round(seconds, 3),
        "docs_per_s": round(docs_in / seconds, 1) if seconds else None,
        "stage_seconds": stage_seconds,
        "stage_docs": {
            "after_lid": _stat(lid_stats, "Language ID", "forwarded"),
            "after_exact_dedup": _stat(exact_stats, "exact-deduplication stage 3", "forwarded"),
            "after_minhash": _stat(minhash_stats, "MinHash stage 4", "forwarded"),
        },
        "bytes_written": sum(p.stat().st_size for p in [*data.rglob("*"), *output.rglob("*")] if p.is_file()),
        "output_bytes": sum(p.stat().st_size for p in output.rglob("*") if p.is_file()),
        "peak_rss_mb": round(memory.total_peak / 2**20, 1),
        "peak_process_rss_mb": round(max(memory.driver_peak, memory.worker_peak) / 2**20, 1),
        "workers": workers,
        "tasks": tasks,
        "lid_model": lid_model,
        "minhash": str(minhash_config),
    }
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", required=True, help="folder of JSON Lines documents")
    parser.add_argument("--work", required=True, help="folder for all outputs (deleted at start)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--tasks", type=int, default=None)
    parser.add_argument("--lid-model", default=None, help="local fastText LID model (default: datakit's lid.176.ftz)")
    args = parser.parse_args(argv)
    result = run_baseline(args.docs, args.work, workers=args.workers, tasks=args.tasks, lid_model=args.lid_model)
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
