"""Precision and recall of the lid stage on planted mislabels in real text (NTREX-128).

Calibrates thresholds on the even lines of every NTREX language (the n-gram profiles of languages
neither model reads well, datakit/lid_profile.py, are trained on lines 0, 4, 8, ... and get their floors
from lines 2, 6, 10, ...), then on the odd (held-out) lines:
- clean: each line as a translation answer in its own language -> share wrongly rejected;
- planted: a line of language M labelled as language L (L and M in different confusable groups,
  and different scripts or not: both kinds are counted) -> share caught.
A confusable group (bos/hrv/srp_Latn, zsm/ind, ...) counts as one language.

    python bench/eval_lid.py --data-dir ../shared/corpus [--plants 20000]
"""

from __future__ import annotations

import argparse
import random
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

from datakit import lid_profile
from datakit.calibrate_lid import (
    PROFILE_MAX_REJECT,
    SECOND_MAX_REJECT,
    calibrate_profiles,
    calibrate_with_second,
    write_calibration,
)
from datakit.langid import LangId, group_of
from datakit.langid_cld2 import Cld2Id
from datakit.models import resolve_lid_model
from datakit.recipe import Lid
from datakit.record_stages.lid import LanguageId
from datakit.records import new_record, set_lid_checks
from datakit.stats import StageStats

ntrex_lines = lid_profile.ntrex_lines


def record(text: str, lang: str):
    r = new_record(messages=[{"role": "user", "content": "Translate."}, {"role": "assistant", "content": text}],
                   lang=lang, task="translation", source="eval", license="x", src_lang="eng_Latn", tgt_lang=lang)
    set_lid_checks(r, [("answer", text, lang)])
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "corpus"))
    ap.add_argument("--plants", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-second", action="store_true", help="fastText alone, without the second opinion (CLD2) or the profiles")
    ap.add_argument("--no-profile", action="store_true", help="without the n-gram profiles of languages no model reads well")
    args = ap.parse_args()
    model = str(resolve_lid_model(None))
    lines = ntrex_lines(Path(args.data_dir))
    calib = {c: ls[0::2] for c, ls in lines.items()}
    held = {c: ls[1::2] for c, ls in lines.items()}
    rows, second_rows = calibrate_with_second(LangId(model), None if args.no_second else Cld2Id(), calib, 0.005, SECOND_MAX_REJECT)
    profiles = None if args.no_second or args.no_profile else lid_profile.shipped()
    untrained = {c: [t for i, t in enumerate(ls) if t and i % 2 == 0 and i % lid_profile.TRAIN_EVERY != 0] for c, ls in lines.items()}
    profile_rows = calibrate_profiles(profiles, untrained, PROFILE_MAX_REJECT) if profiles else []
    path = str(Path(tempfile.mkdtemp()) / "thresholds.tsv")
    write_calibration(rows, second_rows, path, "calibrated on even NTREX lines", profile_rows)
    stage = LanguageId(Lid(thresholds=path), model)
    top1 = {row[0]: row[2] for row in rows}
    known = [c for c in held if stage.lid.supports(c)]  # by fastText (the categories below are fastText's, as before)
    known_any = [c for c in held if stage.rule(c).supported]  # by fastText or the second opinion

    def rejected(records) -> list[bool]:
        stats = StageStats("lid")
        kept, rej = stage.run(records, stats)
        ids = {id(r.record) for r in rej}
        return [id(r) in ids for r in records]

    false_rej: dict[str, list[bool]] = defaultdict(list)
    for code, ls in held.items():
        recs = [record(t, code) for t in ls if t]
        false_rej[code] = rejected(recs)
    rate = lambda codes: sum(sum(false_rej[c]) for c in codes) / sum(len(false_rej[c]) for c in codes)  # noqa: E731
    print(f"clean held-out lines wrongly rejected: {rate(known):.2%} of {sum(len(false_rej[c]) for c in known)} "
          f"in {len(known)} languages fastText knows; {rate(known_any):.2%} in the {len(known_any)} either model knows; "
          f"{rate(list(held)):.2%} over all {len(held)} languages")
    worst = sorted(known_any, key=lambda c: -sum(false_rej[c]) / len(false_rej[c]))[:8]
    print("  worst:", ", ".join(f"{c} {sum(false_rej[c]) / len(false_rej[c]):.1%}" for c in worst))

    rng = random.Random(args.seed)
    codes = sorted(held)
    plants, kinds = [], []
    while len(plants) < args.plants:
        label, actual = rng.choice(codes), rng.choice(codes)
        if group_of(label.split("_")[0]) & group_of(actual.split("_")[0]):
            continue
        text = rng.choice([t for t in held[actual] if t])
        plants.append(record(text, label))
        same_script = label.split("_")[1] == actual.split("_")[1]
        kinds.append(("same script" if same_script else "other script",
                      "label known" if stage.lid.supports(label) else "label unknown to model",
                      "text the model knows well" if top1[actual] >= 0.9 else "text the model reads poorly"))
    caught = rejected(plants)
    total = Counter(kinds)
    hit = Counter(k for k, c in zip(kinds, caught, strict=True) if c)
    same = [c for k, c in zip(kinds, caught, strict=True) if k[0] == "same script"]
    print(f"planted mislabels caught: {sum(caught) / len(caught):.2%} of {len(caught)}; "
          f"same script {sum(same) / len(same):.2%} of {len(same)}")
    for k in sorted(total):
        print(f"  {', '.join(k)}: {hit[k] / total[k]:.2%} of {total[k]}")


if __name__ == "__main__":
    main()
