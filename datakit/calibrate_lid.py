"""Calibrate per-language LID thresholds on clean reference text.

For every language with clean text (NTREX-128 sentences, UDHR paragraphs), find the confidence
above which a prediction of another language would reject at most `--max-reject` of that clean
text. The result (`langdata/lid_thresholds.tsv` for the default model) is what the lid stage uses;
run it again for another model and give the file in the recipe (filters.lid.thresholds).

    python -m datakit.calibrate_lid --data-dir ../shared/corpus [--model PATH] [--out FILE]
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np

from datakit.langid import LangId, group_of
from datakit.models import resolve_lid_model
from datakit.recipe import load_recipe
from datakit.record_stages.lid import prose
from datakit.resources import pipeline_path
from datakit.sources import adapter_for
from datakit.sources.base import Parallel, RawRow, ReadContext

FLOOR, NEVER = 0.3, 1.01


def clean_texts(data_dir: Path) -> dict[str, list[str]]:
    """Reference text per language from the local recipe's parallel sources (NTREX sentences, UDHR articles)."""
    recipe = load_recipe(pipeline_path("local.yaml"))
    ctx = ReadContext(data_dir, None, None, None, tuple(recipe.pivots))
    texts: dict[str, dict[str, None]] = defaultdict(dict)  # ordered sets: pivot text recurs in every partition
    for source in recipe.sources:
        if source.format not in ("bitext", "udhr_xml"):
            continue
        adapter = adapter_for(source)
        for part in adapter.partitions(source, ctx):
            for item in adapter.read(source, part, ctx):
                if isinstance(item, RawRow) and isinstance(item.example, Parallel):
                    for code, text in item.example.texts.items():
                        if text.strip():
                            texts[code][text] = None  # whole units, as the lid stage sees them
    return {code: list(paras) for code, paras in texts.items()}


def _above_all_but(values: np.ndarray, share: float) -> float:
    """A value that at most `share` of `values` reach: a quantile, or the maximum when too few to estimate one."""
    if len(values) == 0:
        return 0.0
    q = float(np.quantile(values, 1 - share)) if len(values) * share >= 1 else float(values.max())
    return round(q + 0.01, 3)


def calibrate(lid: LangId, texts: dict[str, list[str]], max_reject: float) -> list[tuple]:
    """Per language: (code, texts, top-1 rate, threshold for any other language, floor for the expected
    language, {other language: its own threshold}).

    Clean text of a language L is sometimes read as a particular other language M (Afrikaans as Dutch,
    Galician as Portuguese): such an M gets a threshold of its own, above what clean L text reaches.
    A language that clean L text is never read as keeps the general threshold. The expected-language
    floor and the thresholds each reject at most max_reject / 2 of the clean text.
    """
    rows = []
    share = max_reject / 2
    for code, items in sorted(texts.items()):
        preds = lid.predict([prose(t) for t in items], [code] * len(items))
        group = group_of(code.split("_")[0])
        others: dict[str, list[float]] = defaultdict(list)
        for p in preds:
            if p.label and p.label.split("_")[0] not in group:
                others[p.label].append(p.prob - p.expected_prob)
        right = float(np.mean([p.label is not None and p.label.split("_")[0] in group for p in preds]))
        pair = {}
        # The rejections clean text may suffer (share of it) are spread over the languages it is read as.
        allowed = share * len(items) / max(1, sum(len(v) for v in others.values()))
        for other, probs in sorted(others.items()):
            tau = FLOOR if allowed >= 1 else max(FLOOR, _above_all_but(np.array(probs), allowed))
            if tau > FLOOR:
                pair[other] = NEVER if tau > 0.99 else tau
        expected = np.array([p.expected_prob for p in preds])
        low = float(np.quantile(expected, share)) if len(items) * share >= 1 else float(expected.min(initial=0.0))
        floor = max(0.0, round(low - 0.01, 3)) if lid.supports(code) else 0.0
        rows.append((code, len(items), right, FLOOR, floor, pair))
    return rows


def write_thresholds(rows: list[tuple], path: str, note: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write("# code\tclean texts\ttop-1 in group\tthreshold for another language\tfloor for the expected language"
                "\tthresholds for the other languages clean text is read as (1.01 = never)\n")
        f.write(f"# {note}\n")
        for code, n, right, tau, floor, pair in rows:
            f.write(f"{code}\t{n}\t{right:.3f}\t{tau}\t{floor}\t{','.join(f'{k}={v}' for k, v in pair.items())}\n")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--model", default=None)
    ap.add_argument("--max-reject", type=float, default=0.005)
    ap.add_argument("--out", default=str(Path(__file__).parent / "langdata" / "lid_thresholds.tsv"))
    args = ap.parse_args(argv)
    lid = LangId(str(resolve_lid_model(args.model)))
    rows = calibrate(lid, clean_texts(Path(args.data_dir)), args.max_reject)
    write_thresholds(rows, args.out, f"model: {args.model or 'default (lid.176.ftz)'}; at most {args.max_reject:.1%} of clean "
                     f"text rejected; general threshold {FLOOR}")
    print(f"{len(rows)} languages calibrated; {sum(len(r[5]) for r in rows)} language pairs with a threshold of their own")


if __name__ == "__main__":
    main()
