"""The lid stage's batch-at-once shortcuts give what the plain per-record reading gives: a record's scores and
verdict do not depend on the batch around it, the vectorised rounding is the builtin `round`, and the
cyclic collector the stage pauses for a batch is running again after it."""

from __future__ import annotations

import gc

import numpy as np
import pytest
import test_lid
from test_lid import ntrex, run, translation

from datakit.record_stages.lid import round3
from datakit.records import new_record, set_lid_checks

stage = test_lid.stage  # the same module-scoped stage fixture


def mixed_batch(corpus) -> list:
    """Records of every shape the stage reads: one field or two, general records with code and links,
    mislabels, texts too short to read, languages neither model knows, a text that recurs."""
    french, zulu, bemba, serbian = ntrex(corpus, "fra", 12), ntrex(corpus, "zul", 12), ntrex(corpus, "bem", 12), ntrex(corpus, "srp-Cyrl", 12)
    records = [translation(t, "fra_Latn") for t in french[:4]]
    records += [translation(t, "swh_Latn") for t in zulu[:4]]          # Zulu labelled Swahili
    records += [translation(t, "bem_Latn") for t in bemba[:4]]         # a language neither model has a label for
    records += [translation(t, "srp_Latn") for t in serbian[:3]]       # Cyrillic labelled Serbian in Latin script
    records += [translation(t[:12], "fra_Latn") for t in french[4:6]]  # too short for the models
    for fr, zu in zip(french[6:10], zulu[6:10], strict=True):          # both sides checked, the French side recurring
        r = new_record(messages=[{"role": "user", "content": fr}, {"role": "assistant", "content": zu}],
                       lang="zul_Latn", task="translation", source="t", license="x", src_lang="fra_Latn", tgt_lang="zul_Latn")
        set_lid_checks(r, [("prompt", fr, "fra_Latn"), ("answer", zu, "zul_Latn")])
        records.append(r)
    for t in french[10:12] + zulu[10:12]:                              # general records: the answer, code and links left out
        answer = f"{t}\n```python\nprint('hello world')\n```\nSee https://example.org/a and `x = 1`."
        records.append(new_record(messages=[{"role": "user", "content": "?"}, {"role": "assistant", "content": answer}],
                                  lang="fra_Latn", task="general", source="t", license="x"))
    return records


def test_a_records_reading_does_not_depend_on_its_batch(stage, corpus):
    batch, alone = mixed_batch(corpus), mixed_batch(corpus)
    _, rejected, stats = run(stage, batch)
    verdicts = []
    for r in alone:
        _, rejected_alone, _ = run(stage, [r])
        verdicts.append(rejected_alone.get(id(r)))
    assert [r["scores"] for r in batch] == [r["scores"] for r in alone]
    assert [rejected.get(id(r)) for r in batch] == verdicts
    assert {"lid_mismatch", "script_mismatch", None} <= set(verdicts)  # the batch holds every outcome
    assert any(f"answer:{stage.second.name}" in r["scores"]["lid"] for r in batch)  # and the second opinion's readings
    assert sum(stats.report[lang]["checked"] for lang in {r["lang"] for r in batch}) == len(batch)


def test_vectorised_rounding_is_the_builtin_round(stage, corpus):
    # Real probabilities (the models' readings), and numbers at and around every half of the third decimal,
    # where a product's rounding error could tip a vectorised rounding the other way.
    texts = ntrex(corpus, "fra", 200) + ntrex(corpus, "zul", 200)
    preds = stage.lid.predict(texts, ["fra_Latn"] * len(texts)) + stage.second.predict(texts, ["fra_Latn"] * len(texts))
    values = [v for p in preds for v in (p.prob, p.expected_prob)]
    halves = [k / 2000 for k in range(-2001, 2001)]
    values += halves + [np.nextafter(h, s) for h in halves for s in (-1.0, 2.0)] + [h + d for h in halves for d in (1e-13, -1e-13, 1e-9)]
    values += np.random.default_rng(0).normal(0.0, 3.0, 20000).tolist() + [0.0, -0.0]
    values = [float(v) for v in values]
    assert [repr(v) for v in round3(values)] == [repr(round(v, 3)) for v in values]
    assert round3([]) == []


@pytest.mark.parametrize("enabled", [True, False])
def test_the_collector_is_as_it_was_after_a_batch(stage, corpus, enabled):
    was = gc.isenabled()
    try:
        (gc.enable if enabled else gc.disable)()
        run(stage, [translation(t, "fra_Latn") for t in ntrex(corpus, "fra", 5)])
        assert gc.isenabled() is enabled
    finally:
        (gc.enable if was else gc.disable)()
