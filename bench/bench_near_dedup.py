"""Near dedup: datakit's datatrove steps next to datatrove's own MinHash blocks, same input, same cores.

Input: NTREX-128 (128 languages), two consecutive sentences a document (about 128k), plus planted near
duplicates (5% of the documents, one word changed, or two characters in unspaced scripts),
shuffled and split into `--tasks` files. Both pipelines run on `LocalPipelineExecutor` with the
same tasks and workers:

- datakit: DedupSignatures -> DedupClusters -> DedupFilter (exact and near duplicates in one go,
  threshold 0.8, 128 permutations; `datakit.datatrove_steps.dedup`)
- datatrove: MinhashDedupSignature -> MinhashDedupBuckets -> MinhashDedupCluster ->
  MinhashDedupFilter with `MinhashConfig()` as documented (5-gram shingles, 14 x 8 hashes), the
  offline word tokenizer of bench/datatrove_baseline.py in place of spaCy.

Prints wall time and documents/s of each, the ratio, and for each: planted duplicates caught and
other documents removed (similar texts that NTREX itself holds, and any false positives;
documents identical in the data are not counted). With `--repeat N` the two pipelines run N times
each, alternating (datakit, datatrove, datakit, ...), and the best time of each is compared: on a
shared machine a burst of someone else's work then slows one run of a side, not the ratio.

    python bench/bench_near_dedup.py --data-dir ../shared/corpus [--workers 2] [--tasks 4] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from datatrove.executor import LocalPipelineExecutor  # noqa: E402
from datatrove.pipeline.dedup.minhash import (  # noqa: E402
    MinhashConfig,
    MinhashDedupBuckets,
    MinhashDedupCluster,
    MinhashDedupFilter,
    MinhashDedupSignature,
)
from datatrove.pipeline.readers import JsonlReader  # noqa: E402
from datatrove.pipeline.writers import JsonlWriter  # noqa: E402
from datatrove_baseline import OfflineWordTokenizer  # noqa: E402

from datakit.datatrove_steps.dedup import DedupClusters, DedupFilter, DedupSignatures  # noqa: E402


def make_input(data_dir: Path, folder: Path, tasks: int, share: float = 0.05) -> tuple[int, set[str], set[str]]:
    """Documents (one file per task), the ids of planted duplicates, and of lines that repeat in the data."""
    rng = random.Random(0)
    docs, seen, repeated = [], {}, set()
    for path in sorted((data_dir / "ntrex128/NTREX-128").glob("newstest2019-ref.*.txt")):
        code = path.name.split(".")[1]
        lines = path.read_text(encoding="utf-8").splitlines()
        for i in range(0, len(lines) - 1, 2):  # two sentences a document: a one-word edit stays above 0.8 Jaccard
            line = " ".join(x for x in lines[i : i + 2] if x.strip())
            if line:
                doc_id = f"a-{code}-{i:04d}"
                docs.append({"id": doc_id, "text": line, "metadata": {"language": code}})
                key = " ".join(line.lower().split())
                if key in seen:
                    repeated |= {doc_id, seen[key]}
                seen.setdefault(key, doc_id)
    planted = set()
    for doc in rng.sample(docs, int(share * len(docs))):
        text = doc["text"]
        words = text.split(" ")
        if len(words) >= 12:
            i = rng.randrange(len(words))
            words[i] = words[i][::-1] + "x"
            text = " ".join(words)
        elif len(text) >= 30:
            i = rng.randrange(len(text) - 3)
            text = text[:i] + "一二" + text[i + 2 :]
        else:
            continue
        planted.add("b" + doc["id"][1:])
        docs.append({"id": "b" + doc["id"][1:], "text": text, "metadata": doc["metadata"]})
    rng.shuffle(docs)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for t in range(tasks):
        with open(folder / f"{t:03d}.jsonl", "w", encoding="utf-8") as f:
            for d in docs[t::tasks]:
                f.write(json.dumps({"id": d["id"], "text": d["text"], **d["metadata"]}, ensure_ascii=False) + "\n")
    return len(docs), planted, repeated


def removed_ids(folder: Path) -> set[str]:
    return {json.loads(line)["id"] for f in folder.glob("*.jsonl") for line in f.read_text(encoding="utf-8").splitlines()}


def run(stages: list[tuple[list, int]], logs: Path, workers: int) -> float:
    executor = None
    for i, (pipeline, tasks) in enumerate(stages):
        executor = LocalPipelineExecutor(pipeline, tasks=tasks, workers=min(workers, tasks), logging_dir=str(logs / str(i)),
                                         depends=executor)
    started = time.perf_counter()
    executor.run()
    return time.perf_counter() - started


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "corpus"))
    ap.add_argument("--work", default="/tmp/datakit-near-bench")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--tasks", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=1, help="runs of each pipeline, alternating; the best of each is compared")
    args = ap.parse_args()
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    n, planted, repeated = make_input(Path(args.data_dir), work / "input", args.tasks)

    def reader():
        return JsonlReader(str(work / "input"))

    dk, dt, config = work / "datakit", work / "datatrove", MinhashConfig()

    def ours() -> float:
        shutil.rmtree(dk, ignore_errors=True)
        return run([([reader(), DedupSignatures(str(dk / "dedup"), scope_key="language")], args.tasks),
                    ([DedupClusters(str(dk / "dedup"))], 1),
                    ([reader(), DedupFilter(str(dk / "dedup"), exclusion_writer=JsonlWriter(str(dk / "removed"), compression=None))],
                     args.tasks)],
                   dk / "logs", args.workers)

    def theirs() -> float:
        shutil.rmtree(dt, ignore_errors=True)
        return run([([reader(), MinhashDedupSignature(str(dt / "sigs"), config=config, language=OfflineWordTokenizer())], args.tasks),
                    ([MinhashDedupBuckets(str(dt / "sigs"), str(dt / "buckets"), config=config)], config.num_buckets),
                    ([MinhashDedupCluster(str(dt / "buckets"), str(dt / "remove"), config=config)], 1),
                    ([reader(), MinhashDedupFilter(str(dt / "remove"), exclusion_writer=JsonlWriter(str(dt / "removed"), compression=None))],
                     args.tasks)],
                   dt / "logs", args.workers)

    times: dict[str, list[float]] = {"datakit": [], "datatrove": []}
    for _ in range(args.repeat):
        times["datakit"].append(ours())
        times["datatrove"].append(theirs())
    if args.repeat > 1:
        print("rounds (datakit s, datatrove s, ratio): "
              + ", ".join(f"({a:.1f}, {b:.1f}, {b / a:.2f}x)" for a, b in zip(times["datakit"], times["datatrove"], strict=True)))
    ours_s, theirs_s = min(times["datakit"]), min(times["datatrove"])
    print(f"{n:,} documents ({len(planted):,} planted near duplicates), {args.tasks} tasks, {args.workers} workers")
    for name, seconds, folder in (("datakit steps", ours_s, dk), ("datatrove minhash", theirs_s, dt)):
        gone = removed_ids(folder / "removed")
        # A planted pair is caught when exactly one of its two documents is removed (either may stay).
        caught = sum(((b in gone) + (("a" + b[1:]) in gone)) == 1 for b in planted)
        twins = {"a" + b[1:] for b in planted}
        distinct = len({i for i in gone if i.startswith("a") and i not in twins and i not in repeated})
        print(f"  {name:<18} {seconds:7.1f} s  {n / seconds:9,.0f} docs/s  planted pairs caught {caught / len(planted):.1%}  "
              f"other documents removed {distinct}")
    print(f"  datakit / datatrove: {theirs_s / ours_s:.2f}x the documents per second"
          + (f" (best of {args.repeat} runs each, alternating)" if args.repeat > 1 else ""))


if __name__ == "__main__":
    main()
