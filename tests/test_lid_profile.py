"""Character n-gram profiles of the languages no language-ID model here knows (datakit/lid_profile.py), and
the vectorised readings the lid stage relies on (batched script counts, fastText's labels read as arrays):
the shipped profiles are what training gives, they tell held-out text of their language from other
languages' text, and the batched readings equal the one-text-at-a-time ones."""

from __future__ import annotations

import numpy as np
import pytest
import test_lid
from test_lid import translation

from datakit import lid_profile
from datakit.langid import Prediction, calibrated_thresholds, profile_file
from datakit.record_stages.lid import prose, script_share, script_shares
from datakit.scripts import (
    dominant_script,
    dominant_scripts,
    script_count_matrix,
    script_counts,
    scripts_agree,
)
from datakit.stats import StageStats

stage = test_lid.stage  # the same module-scoped stage fixture


@pytest.fixture(scope="module")
def lines(corpus):
    return lid_profile.ntrex_lines(corpus)


def held_out(lines, code: str) -> list[str]:
    """Odd NTREX lines: neither trained on nor used for the shipped floors' held-out share alone."""
    return [t for t in lines[code][1::2] if t]


def test_shipped_profiles_are_what_training_gives(lines, stage):
    texts = lid_profile.split(lines, train_part=True)
    codes, tables = lid_profile.train(texts, lid_profile.weak_languages(texts))
    shipped = lid_profile.shipped()
    assert codes == shipped.codes
    assert np.array_equal(tables.astype(np.float32) * np.float32(lid_profile.CLIP / 127), shipped.tables)
    # every language neither model has a label for has one
    assert {c for c in lines if not stage.lid.supports(c) and not stage.second.supports(c)} <= set(codes)
    assert set(codes) == set(calibrated_thresholds(profile_file("lid_thresholds.tsv")))


def test_training_never_sees_the_lines_eval_lid_scores(lines):
    # bench/eval_lid.py scores the odd lines; the profiles train on every TRAIN_EVERY-th (even) line only.
    assert lid_profile.TRAIN_EVERY % 2 == 0
    train = lid_profile.split(lines, train_part=True)
    held = lid_profile.split(lines, train_part=False)
    for code in ("bem_Latn", "fuc_Latn"):
        assert train[code] == [t for t in lines[code][:: lid_profile.TRAIN_EVERY] if t]
        assert len(train[code]) + len(held[code]) == sum(1 for t in lines[code] if t)


@pytest.mark.parametrize("code", ["bem_Latn", "ewe_Latn", "fuc_Latn", "tah_Latn"])
def test_a_profile_tells_its_language_from_others(lines, code):
    profiles = lid_profile.shipped()
    floor = calibrated_thresholds(profile_file("lid_thresholds.tsv"))[code].floor
    own = profiles.scores(held_out(lines, code), [code] * len(held_out(lines, code)))
    script = code.split("_")[1]
    others = [t for c in sorted(lines) if c != code and c.endswith(script) for t in held_out(lines, c)[:20]]
    theirs = profiles.scores(others, [code] * len(others))
    assert np.mean(np.array(own) < floor) <= 0.02
    assert np.mean(np.array(theirs) < floor) >= 0.9


def test_the_stage_rejects_text_that_does_not_read_like_a_language_no_model_knows(stage, lines):
    # Kinyarwanda and Samoan labelled Bemba and Pulaar: CLD2 reads the clean text of neither label language
    # as it, nor lid.176; the profiles do.
    plants = [translation(t, label) for label, actual in [("bem_Latn", "kin_Latn"), ("fuc_Latn", "smo_Latn")]
              for t in held_out(lines, actual)[:40]]
    clean = [translation(t, code) for code in ("bem_Latn", "fuc_Latn") for t in held_out(lines, code)[:40]]
    stats = StageStats("lid")
    _, rejected = stage.run(plants + clean, stats)
    caught = {id(r.record) for r in rejected}
    assert sum(id(r) in caught for r in plants) >= 0.95 * len(plants)
    assert sum(id(r) in caught for r in clean) <= 0.05 * len(clean)
    assert all(isinstance(r["scores"]["lid"]["answer:profile"], float) for r in plants + clean)


def test_batched_script_counts_equal_one_text_at_a_time(lines):
    texts = [t for code in sorted(lines) for t in lines[code][:15]] + ["", "123 !!", "これは日本語の文です", "한국어 漢字", "x\u0301y",
                                                                       "a lone surrogate \ud800 here"]
    counts, columns = script_count_matrix(texts)
    assert [{columns[j]: int(n) for j, n in enumerate(row) if n} for row in counts] == [dict(script_counts(t)) for t in texts]
    assert dominant_scripts(counts, columns) == [dominant_script(t) for t in texts]
    scripts = ["Latn", "Cyrl", "Hans", "Jpan", "Kore", "Arab"] * (len(texts) // 6 + 1)
    assert script_shares(texts, scripts[: len(texts)]) == [script_share(t, s) for t, s in zip(texts, scripts, strict=False)]


def read_one(lid, text: str, labs, ps, exp: str) -> Prediction:
    """The definition the stage's array reading must match, one text at a time: its top-k labels in
    order, the first that is the expected language's group or another language consistent with the
    text's dominant script (counted only once another language is named). Japanese prose has kana:
    Han text without any is Chinese, whatever lid.176 says."""
    members = lid._members(exp)
    probs = ps.tolist()
    exp_p = sum(p for lab, p in zip(labs, probs, strict=True) if lab in members)
    script, counted = None, False
    for lab, p in zip(labs, probs, strict=True):
        if lab in members:
            return Prediction(exp, p, exp_p, script)
        found = lid.parts.get(lab)
        if found is None:
            continue
        code, _, lab_script = found
        if not counted:
            script, counted = dominant_script(text), True
        if lab_script == "Jpan" and script != "Jpan":
            continue
        if script is None or scripts_agree(lab_script, script):
            return Prediction(code, p, exp_p, script)
    return Prediction(None, 0.0, exp_p, script)


def test_fasttext_labels_read_as_arrays_equal_the_reading_of_each_text(stage, lines):
    lid = stage.lid
    texts = [prose(t) for code in sorted(lines) for t in lines[code][3:9] if t]
    expected = [code for code in sorted(lines) for t in lines[code][3:9] if t][::-1]  # mostly other languages
    expected[: len(expected) // 2] = [code for code in sorted(lines) for t in lines[code][3:9] if t][: len(expected) // 2]
    labels, probs = lid.model.predict(texts, k=lid.k)
    one_by_one = [read_one(lid, t, lab, p, e) for t, lab, p, e in zip(texts, labels, probs, expected, strict=True)]
    assert lid.predict(texts, expected) == one_by_one


def test_a_text_with_a_nul_character_scores_as_with_a_space():
    # ngram_buckets joins the batch's texts with NUL: a NUL inside a text must not shift the others.
    profiles = lid_profile.shipped()
    texts = ["Abantu bonse bafyalwa abalubuka \x00 kabili", "Ubuntu bwa muntu \ud800", "kabili abantu"]
    assert profiles.scores(texts, ["bem_Latn"] * 3) == profiles.scores([t.replace("\x00", " ") for t in texts], ["bem_Latn"] * 3)
