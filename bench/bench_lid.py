"""LID stage throughput against raw batched fastText prediction on the same texts.

Every NTREX-128 line (about 250k, 120+ languages) as a translation answer in its language: the
time of `model.predict(texts, k=5)` over batches of 2,000 texts, against the lid stage (`LanguageId.run` over
batches of 2,000 records: prose cleaning, script shares, prediction, per-language thresholds,
scores, the second opinion where it is asked, the n-gram profiles of the languages no model reads well). The
target is the stage within 1.3x of the raw call.

    python bench/bench_lid.py --data-dir ../shared/corpus
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from eval_lid import ntrex_lines, record  # noqa: E402

from datakit.models import load_fasttext, resolve_lid_model  # noqa: E402
from datakit.partition import BATCH_ROWS  # noqa: E402
from datakit.recipe import Lid  # noqa: E402
from datakit.record_stages.lid import LanguageId  # noqa: E402
from datakit.stats import StageStats  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "corpus"))
    ap.add_argument("--repeat", type=int, default=3, help="runs of each, interleaved; the fastest of each counts")
    args = ap.parse_args()
    model_path = str(resolve_lid_model(None))
    lines = [(code, t) for code, ls in ntrex_lines(Path(args.data_dir)).items() for t in ls if t]
    texts = [t for _, t in lines]
    model = load_fasttext(model_path)
    stage = LanguageId(Lid(), model_path)
    gc.collect()
    gc.freeze()  # as a build's task does once its stages are set up (partition.process_partition)
    raw, ours = [], []
    for _ in range(args.repeat):
        # CPU time of this process (both sides are single-threaded, so other processes on the machine do
        # not count), raw call and stage alternating batch by batch, so that both see the same machine.
        # Records are made a batch at a time, as a task makes them, and dropped after their batch.
        stats = StageStats("lid")
        raw_s = ours_s = 0.0
        second = profiled = 0
        for i in range(0, len(lines), BATCH_ROWS):
            records = [record(t, code) for code, t in lines[i : i + BATCH_ROWS]]
            started = time.process_time()
            model.predict([" ".join(t.split()) for t in texts[i : i + BATCH_ROWS]], k=5)
            raw_s += time.process_time() - started
            started = time.process_time()
            stage.run(records, stats)
            ours_s += time.process_time() - started
            second += sum(1 for r in records if f"answer:{stage.second.name}" in r["scores"]["lid"])  # type: ignore[union-attr]
            profiled += sum(1 for r in records if "answer:profile" in r["scores"]["lid"])
        raw.append(raw_s)
        ours.append(ours_s)
    best = min(range(args.repeat), key=lambda r: ours[r] / raw[r])
    raw_s, ours_s = raw[best], ours[best]
    print(f"{len(texts):,} texts: raw fasttext.predict {len(texts) / raw_s:,.0f} texts/s; lid stage {len(texts) / ours_s:,.0f} "
          f"records/s: {ours_s / raw_s:.2f}x the raw call (target <= 1.3x; CPU seconds, best of {args.repeat}: {', '.join(f'{o / r:.2f}x' for o, r in zip(ours, raw, strict=True))}); "
          f"second opinion asked for {second:,}; n-gram profiles for {profiled:,}; rejected {sum(stats.rejected.values()):,}")


if __name__ == "__main__":
    main()
