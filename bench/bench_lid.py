"""LID stage throughput against raw batched fastText prediction on the same texts.

Every NTREX-128 line (about 250k, 120+ languages) as a translation answer in its language: the
time of `model.predict(texts, k=5)` in one call, against the lid stage (`LanguageId.run` over
batches of 2,000 records: prose cleaning, script shares, prediction, per-language thresholds,
scores). The target is the stage within 1.3x of the raw call.

    python bench/bench_lid.py --data-dir ../shared/corpus
"""

from __future__ import annotations

import argparse
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
    args = ap.parse_args()
    model_path = str(resolve_lid_model(None))
    lines = [(code, t) for code, ls in ntrex_lines(Path(args.data_dir)).items() for t in ls if t]
    texts = [t for _, t in lines]
    model = load_fasttext(model_path)
    started = time.perf_counter()
    model.predict([" ".join(t.split()) for t in texts], k=5)
    raw = time.perf_counter() - started
    stage = LanguageId(Lid(), model_path)
    records = [record(t, code) for code, t in lines]
    started = time.perf_counter()
    stats = StageStats("lid")
    for i in range(0, len(records), BATCH_ROWS):
        stage.run(records[i : i + BATCH_ROWS], stats)
    ours = time.perf_counter() - started
    print(f"{len(texts):,} texts: raw fasttext.predict {len(texts) / raw:,.0f} texts/s; lid stage {len(texts) / ours:,.0f} "
          f"records/s: {ours / raw:.2f}x the raw call (target <= 1.3x); rejected {sum(stats.rejected.values()):,}")


if __name__ == "__main__":
    main()
