"""Calibrate per-language LID thresholds on clean reference text.

For every language with clean text (NTREX-128 sentences, UDHR paragraphs), find the confidence
above which a prediction of another language would reject at most `--max-reject` of that clean
text. The result (`langdata/lid_thresholds.tsv` for the default model) is what the lid stage uses;
run it again for another model and give the file in the recipe (filters.lid.thresholds).

The second opinion (CLD2) is calibrated the same way, on the same text, into the file beside it
(`lid_thresholds.cld2.tsv`), with one more column: for which languages it is asked always (the
first model reads them weakly, or reads other languages as them) and for which only when the
first model is not sure. The character n-gram profiles of the languages neither model reads well
(datakit/lid_profile.py) get a floor each (`lid_thresholds.profile.tsv`), calibrated on the NTREX
lines they were not trained on.

    python -m datakit.calibrate_lid --data-dir ../shared/corpus [--model PATH] [--out FILE]
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np

from datakit import lid_profile
from datakit.langid import (
    NEVER,
    WEAK,
    LangId,
    Prediction,
    group_of,
    profile_file,
    second_opinion_file,
    top1_rate,
)
from datakit.langid_cld2 import Cld2Id
from datakit.models import resolve_lid_model
from datakit.recipe import load_recipe
from datakit.record_stages.lid import prose
from datakit.resources import pipeline_path
from datakit.sources import adapter_for
from datakit.sources.base import Parallel, RawRow, ReadContext

FLOOR = 0.3  # the general threshold for another language
SURE = 0.9  # see consult_levels (and WEAK)
# The second opinion's clean-text budget. It rejects only texts the first model did not (and, where the
# first has no label for the language, overrules its rejections when it reads the text as the language):
# on held-out NTREX lines both together reject under 1% of clean text (bench/eval_lid.py).
SECOND_MAX_REJECT = 0.01
# The profiles' budget: the share of held-out clean text of a language under its floor.
PROFILE_MAX_REJECT = 0.005


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


Predictions = dict[str, list[Prediction]]  # language -> its clean texts' predictions


def predict_all(lid: LangId | Cld2Id, texts: dict[str, list[str]]) -> Predictions:
    """Every language's clean text read by a model, against that language."""
    return {code: lid.predict([prose(t) for t in items], [code] * len(items)) for code, items in sorted(texts.items())}


def calibrate(lid: LangId | Cld2Id, texts: dict[str, list[str]], max_reject: float, preds: Predictions | None = None,
              first: Predictions | None = None) -> list[tuple]:
    """Per language: (code, texts, top-1 rate, threshold for any other language, floor for the expected
    language, {other language: its own threshold}).

    Clean text of a language L is sometimes read as a particular other language M (Afrikaans as Dutch,
    Galician as Portuguese): such an M gets a threshold of its own, above what clean L text reaches.
    A language that clean L text is never read as keeps the general threshold. The expected-language
    floor and the thresholds each reject at most max_reject / 2 of the clean text.

    A second opinion's floor (with `first`, the first model's predictions of the same text) is on the
    larger of the two models' P(expected language): a text is rejected when neither model reads it as
    the language. Two models err on different texts, so clean text rarely fails both.
    """
    preds = preds if preds is not None else predict_all(lid, texts)
    rows = []
    share = max_reject / 2
    for code, items in sorted(texts.items()):
        group = group_of(code.split("_")[0])
        others: dict[str, list[float]] = defaultdict(list)
        for p in preds[code]:
            if p.label and p.label.split("_")[0] not in group:
                others[p.label].append(p.prob - p.expected_prob)
        right = top1_rate(preds[code], code)
        pair = {}
        # The rejections clean text may suffer (share of it) are spread over the languages it is read as.
        allowed = share * len(items) / max(1, sum(len(v) for v in others.values()))
        for other, probs in sorted(others.items()):
            tau = FLOOR if allowed >= 1 else max(FLOOR, _above_all_but(np.array(probs), allowed))
            if tau > FLOOR:
                pair[other] = NEVER if tau > 0.99 else tau
        expected = np.array([p.expected_prob for p in preds[code]])
        if first is not None:
            expected = np.maximum(expected, [p.expected_prob for p in first[code]])
        low = float(np.quantile(expected, share)) if len(items) * share >= 1 else float(expected.min(initial=0.0))
        floor = max(0.0, round(low - 0.01, 3)) if lid.supports(code) else 0.0
        rows.append((code, len(items), right, FLOOR, floor, pair))
    return rows


def consult_levels(first: LangId, rows: list[tuple]) -> dict[str, float]:
    """When the second opinion is asked for each language: always (NEVER) where the first model reads the
    language weakly (top-1 under WEAK on its clean text) or has no label for it; elsewhere only when the
    first model's P(expected language) is under SURE. (Asking it for every text of the other languages
    too catches 3 more of 7,115 same-script plants in bench/eval_lid.py, at twice the calls.)"""
    return {code: NEVER if right < WEAK or not first.supports(code) else SURE for code, _, right, *_ in rows}


def calibrate_with_second(first: LangId, second: Cld2Id | None, texts: dict[str, list[str]], max_reject: float,
                          second_max_reject: float | None = None) -> tuple[list[tuple], list[tuple]]:
    """Rows for the first model and, each calibrated on its own clean-text budget (the same unless
    `second_max_reject` is given), for the second opinion (with `consult_levels` as a seventh column)."""
    first_preds = predict_all(first, texts)
    rows = calibrate(first, texts, max_reject, first_preds)
    if second is None:
        return rows, []
    consult = consult_levels(first, rows)
    return rows, [(*row, consult[row[0]]) for row in calibrate(second, texts, second_max_reject or max_reject, first=first_preds)]


def calibrate_profiles(profiles: lid_profile.Profiles, texts: dict[str, list[str]], max_reject: float) -> list[tuple]:
    """Per language with a profile: (code, texts, share scoring above 0, NEVER, floor, {}): the floor is a
    score at most `max_reject` of the language's clean text (text the profile was not trained on) is under."""
    rows = []
    for code, items in sorted(texts.items()):
        if not profiles.supports(code) or not items:
            continue
        scores = np.array(profiles.scores([prose(t) for t in items], [code] * len(items)))
        low = float(np.quantile(scores, max_reject)) if len(items) * max_reject >= 1 else float(scores.min())
        rows.append((code, len(items), float(np.mean(scores > 0)), NEVER, round(low - 0.01, 3), {}))
    return rows


def write_thresholds(rows: list[tuple], path: str, note: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write("# code\tclean texts\ttop-1 in group\tthreshold for another language\tfloor for the expected language"
                "\tthresholds for the other languages clean text is read as (1.01 = never)"
                + ("\tasked when the first model's P(expected) is under this (1.01 = always)" if rows and len(rows[0]) > 6 else "")
                + "\n")
        f.write(f"# {note}\n")
        for code, n, right, tau, floor, pair, *consult in rows:
            f.write(f"{code}\t{n}\t{right:.3f}\t{tau}\t{floor}\t{','.join(f'{k}={v}' for k, v in pair.items())}"
                    + "".join(f"\t{c}" for c in consult) + "\n")


def write_calibration(rows: list[tuple], second_rows: list[tuple], path: str, note: str, profile_rows: list[tuple] = ()) -> None:
    """The first model's thresholds at `path`, the second opinion's and the profiles' beside it (see
    langid.second_opinion_file, langid.profile_file)."""
    write_thresholds(rows, path, note)
    if second_rows:
        write_thresholds(second_rows, second_opinion_file(path), f"second opinion: CLD2 (pycld2); {note}")
    if profile_rows:
        write_thresholds(profile_rows, profile_file(path), "character n-gram profiles (datakit/lid_profile.py): the third column "
                         "is the share of held-out clean text scoring above 0, the fifth the floor (mean log-likelihood "
                         f"ratio) at most {PROFILE_MAX_REJECT:.1%} of it is under")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--model", default=None)
    ap.add_argument("--max-reject", type=float, default=0.005)
    ap.add_argument("--out", default=str(Path(__file__).parent / "langdata" / "lid_thresholds.tsv"))
    ap.add_argument("--second-max-reject", type=float, default=SECOND_MAX_REJECT)
    ap.add_argument("--no-second", action="store_true", help="calibrate no second opinion (CLD2) and no profiles")
    args = ap.parse_args(argv)
    lid = LangId(str(resolve_lid_model(args.model)))
    rows, second_rows = calibrate_with_second(lid, None if args.no_second else Cld2Id(), clean_texts(Path(args.data_dir)),
                                              args.max_reject, args.second_max_reject)
    profiles = None if args.no_second else lid_profile.shipped()
    profile_rows = calibrate_profiles(profiles, lid_profile.split(lid_profile.ntrex_lines(Path(args.data_dir)), train_part=False),
                                      PROFILE_MAX_REJECT) if profiles else []
    write_calibration(rows, second_rows, args.out, f"model: {args.model or 'default (lid.176.ftz)'}; at most "
                      f"{args.max_reject:.1%} of clean text rejected (the second opinion: {args.second_max_reject:.1%}); "
                      f"general threshold {FLOOR}", profile_rows)
    print(f"{len(rows)} languages calibrated; {sum(len(r[5]) for r in rows)} language pairs with a threshold of their own"
          + (f"; second opinion asked always for {sum(r[6] >= NEVER for r in second_rows)} languages" if second_rows else "")
          + (f"; profiles for {len(profile_rows)}" if profile_rows else ""))


if __name__ == "__main__":
    main()
