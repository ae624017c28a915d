"""The lid stage's shortcuts against the slow paths they stand for, on real text (NTREX-128 lines of every
language): texts kept as they are where `prose` would not change them, CLD2's readings read in one pass,
batched mismatches, the n-gram buckets of a batch, and the second opinion left out where fastText is
decisive."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import test_lid
from test_lid import translation

from datakit import lid_profile
from datakit.langid import in_group
from datakit.record_stages import lid as lid_stage
from datakit.record_stages.lid import prose, proses
from datakit.stats import StageStats

stage = test_lid.stage  # the same module-scoped stage fixture
WHITESPACE = [chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace()]


@pytest.fixture(scope="module")
def lines(corpus):
    return lid_profile.ntrex_lines(corpus)


@pytest.fixture(scope="module")
def sample(lines):
    """A few lines of every language, each expected as its own language or as another one."""
    codes = sorted(lines)
    texts = [prose(t) for code in codes for t in lines[code][11:17] if t]
    own = [code for code in codes for t in lines[code][11:17] if t]
    return texts, [c if i % 3 else own[-1 - i] for i, c in enumerate(own)]


def test_proses_is_prose_of_each_text(lines):
    # What proses keeps as it is must be what prose leaves alone: every whitespace character but the
    # space is not printable, so a printable text splits on spaces only.
    assert all(not c.isprintable() for c in WHITESPACE if c != " ")
    texts = [t for code in sorted(lines) for t in lines[code][:40]]
    texts += [f"a{c}b" for c in WHITESPACE] + [f"{c}ab" for c in WHITESPACE] + [f"ab{c}" for c in WHITESPACE]
    texts += ["", " ", "a  b", "see `x = 1` here", "```py\nx\n```", "mail me@x.org now", "http://x.org/a b", "www.x.org b",
              "\u200cزبان", "soft\u00adhyphen", "x\u3000y", "lone \ud800 surrogate"]
    assert proses(texts) == [prose(t) for t in texts]


def test_cld2_read_in_one_pass_is_its_reading_of_each_text(stage, sample):
    cld2 = stage.second
    texts, expected = sample
    texts += ["Ово је текст на српском језику, написан ћирилицом.", "Ovo je tekst na srpskom jeziku, napisan latinicom.",
              "ئەمە دەقێکی کوردییە بە ئەلفوبێی عەرەبی", "\x00\x01 control characters \x1f in a text"]
    expected += ["srp_Latn", "srp_Cyrl", "kmr_Latn", "fra_Latn"]
    one_by_one = [cld2._read(t, cld2.details(t), e) for t, e in zip(texts, expected, strict=True)]
    assert cld2.predict(texts, expected) == one_by_one
    assert {p.script for p in one_by_one} - {None}  # some readings needed the text's script


def mismatch_one(stage, pred, expected: str, general: bool, limits, expected_prob: float | None = None) -> bool:
    """The definition `mismatches` must match, for one prediction: another language (outside the
    expected one's group) more likely than the expected one by at least its limit (for general
    records, by at least `general_margin` too, and no floor), or P(expected) under the floor."""
    expected_prob = pred.expected_prob if expected_prob is None else expected_prob
    other = pred.label is not None and not in_group(pred.label, expected)
    margin = pred.prob - pred.expected_prob
    if general:
        return other and margin >= max(stage.config.general_margin, limits.for_label(pred.label))
    return (other and margin >= limits.for_label(pred.label)) or expected_prob < limits.floor


@pytest.mark.parametrize("general", [False, True])
def test_batched_mismatches_are_each_predictions_mismatch(stage, sample, general):
    texts, expected = sample
    flags = np.full(len(texts), general)
    for model, limits_of in ((stage.lid, lambda e: stage.rule(e).first), (stage.second, lambda e: stage.rule(e).second)):
        at = [i for i, e in enumerate(expected) if limits_of(e) is not None]
        exp = [expected[i] for i in at]
        readings = model.read([texts[i] for i in at], exp)
        limits = [limits_of(e) for e in exp]
        other_p = np.linspace(0.0, 1.0, len(at))  # the second opinion's floor is on a larger probability
        batched = stage.mismatches(readings, exp, flags[at], limits)
        assert batched.tolist() == [mismatch_one(stage, p, e, general, lim) for p, e, lim in zip(readings.predictions(), exp, limits, strict=True)]
        assert 0 < batched.sum() < len(at)
        batched = stage.mismatches(readings, exp, flags[at], limits, np.maximum(readings.expected_prob, other_p))
        assert batched.tolist() == [mismatch_one(stage, p, e, general, lim, max(p.expected_prob, o))
                                    for p, e, lim, o in zip(readings.predictions(), exp, limits, other_p.tolist(), strict=True)]


def test_ngram_buckets_of_a_batch_are_those_of_each_text(lines):
    texts = [t for code in sorted(lines) for t in lines[code][:3]] + ["", "a", "x\x00y", "\ud800 z"]
    buckets, ids = lid_profile.ngram_buckets(texts)
    mask = (1 << 64) - 1
    expected_buckets, expected_ids = [], []
    for n in range(1, lid_profile.MAX_N + 1):  # n-major, then text by text, then position: the batch's order
        for i, text in enumerate(texts):
            cps = [ord(c) for c in " " + " ".join(text.lower().replace("\x00", " ").split()) + " "]
            for start in range(len(cps) - n + 1):
                h = 0
                for c in cps[start : start + n]:
                    h = (h * int(lid_profile._BASE) + c) & mask
                expected_buckets.append((((h + n) & mask) * int(lid_profile._MIX) & mask) >> (64 - lid_profile.BITS))
                expected_ids.append(i)
    assert buckets.tolist() == expected_buckets
    assert ids.tolist() == expected_ids


def test_second_opinion_is_left_out_only_where_fasttext_is_decisive(stage, lines, monkeypatch):
    codes = ["fra_Latn", "glg_Latn", "por_Latn", "zul_Latn", "som_Latn", "plt_Latn", "nno_Latn", "srp_Cyrl"]
    def batch():
        # clean lines, and the same lines labelled as the next language (mislabels)
        return ([translation(t, c) for c in codes for t in lines[c][1:80:2] if t]
                + [translation(t, codes[(n + 1) % len(codes)]) for n, c in enumerate(codes) for t in lines[c][1:40:2] if t])
    key, decisive = f"answer:{stage.second.name}", lid_stage.FIRST_DECISIVE
    assert decisive is not None
    runs = []
    for setting in (decisive, None):
        monkeypatch.setattr(lid_stage, "FIRST_DECISIVE", setting)
        records = batch()
        _, rejected = stage.run(records, StageStats("lid"))
        runs.append((records, {id(r.record) for r in rejected}))
    (gated, gated_out), (always, always_out) = runs
    left_out = 0
    for g, a in zip(gated, always, strict=True):
        if key in a["scores"]["lid"] and key not in g["scores"]["lid"]:
            left_out += 1
            label, _, expected_prob = g["scores"]["lid"]["answer"]
            assert label == g["lang"] and expected_prob >= decisive and stage.rule(g["lang"]).first_knows
            assert {k: v for k, v in a["scores"]["lid"].items() if k != key} == g["scores"]["lid"]
        else:
            assert g["scores"] == a["scores"]
            assert (id(g) in gated_out) == (id(a) in always_out)
    assert left_out > 0.1 * len(gated)
