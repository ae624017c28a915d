"""The lid stage on real text: clean records kept, planted mislabels caught (by lid.176, and by the CLD2 second
opinion where lid.176 is weak), unsupported languages marked, each text read once."""

from __future__ import annotations

import pytest

from datakit.errors import DatakitError
from datakit.langid import Thresholds
from datakit.langid_cld2 import Cld2Id
from datakit.models import resolve_lid_model
from datakit.recipe import Lid
from datakit.record_stages.lid import LanguageId
from datakit.records import new_record, set_lid_checks
from datakit.stats import StageStats


@pytest.fixture(scope="module")
def stage():
    try:
        model = str(resolve_lid_model(None))
    except DatakitError as e:
        pytest.skip(f"the default language-ID model is not available here: {e}")
    return LanguageId(Lid(), model)


def ntrex(corpus, tag: str, n: int = 40) -> list[str]:
    path = corpus / "ntrex128/NTREX-128" / f"newstest2019-{'src' if tag == 'eng' else 'ref'}.{tag}.txt"
    return [line for line in path.read_text(encoding="utf-8").splitlines()[200 : 200 + n] if len(line) > 30]


def translation(text: str, lang: str):
    r = new_record(messages=[{"role": "user", "content": "Translate this."}, {"role": "assistant", "content": text}],
                   lang=lang, task="translation", source="t", license="x", src_lang="eng_Latn", tgt_lang=lang)
    set_lid_checks(r, [("answer", text, lang)])
    return r


def run(stage, records):
    stats = StageStats("lid")
    kept, rejected = stage.run(records, stats)
    return kept, {id(r.record): r.reason for r in rejected}, stats


def test_clean_text_of_known_languages_is_kept(stage, corpus):
    records = [translation(t, code) for tag, code in [("swa", "swh_Latn"), ("fra", "fra_Latn"), ("rus", "rus_Cyrl"),
                                                       ("jpn", "jpn_Jpan"), ("hin", "hin_Deva"), ("zho-CN", "zho_Hans")]
               for t in ntrex(corpus, tag)]
    kept, rejected, stats = run(stage, records)
    assert len(rejected) <= 0.01 * len(records)
    assert all(r["scores"]["lid"]["answer"][0] is not None for r in kept)
    assert stats.report["swh_Latn"]["checked"] == stats.report["swh_Latn"]["kept"] + stats.report["swh_Latn"]["rejected"]


def test_planted_languages_are_caught(stage, corpus):
    plants = [translation(t, "swh_Latn") for t in ntrex(corpus, "eng")]        # English labelled Swahili
    plants += [translation(t, "fra_Latn") for t in ntrex(corpus, "deu")]       # German labelled French
    plants += [translation(t, "eng_Latn") for t in ntrex(corpus, "zho-CN")]    # Chinese labelled English
    plants += [translation(t, "srp_Latn") for t in ntrex(corpus, "srp-Cyrl")]  # Cyrillic labelled Serbian (Latin)
    kept, rejected, _ = run(stage, plants)
    assert len(rejected) >= 0.98 * len(plants)
    reasons = set(rejected.values())
    assert reasons == {"lid_mismatch", "script_mismatch"}
    cyrillic = [r for r in plants if r["lang"] == "srp_Latn"]
    assert all(rejected[id(r)] == "script_mismatch" for r in cyrillic)


def test_confusable_languages_count_as_one(stage, corpus):
    records = [translation(t, "hrv_Latn") for t in ntrex(corpus, "bos")] + [translation(t, "zsm_Latn") for t in ntrex(corpus, "ind")]
    kept, rejected, _ = run(stage, records)
    assert len(rejected) <= 0.05 * len(records)


def test_languages_without_a_label_are_marked_not_rejected(stage, corpus):
    bemba = [translation(t, "bem_Latn") for t in ntrex(corpus, "bem")]  # neither lid.176 nor CLD2 knows Bemba
    kept, rejected, stats = run(stage, bemba)
    assert not stage.lid.supports("bem_Latn") and not stage.second.supports("bem_Latn")
    assert len(rejected) <= 0.05 * len(bemba)
    assert all(r["scores"]["lid"]["unsupported"] for r in kept)
    assert stats.report["bem_Latn"]["unsupported"] == len(bemba)
    # ... but a clearly different script still fails them.
    kept, rejected, _ = run(stage, [translation(t, "bem_Latn") for t in ntrex(corpus, "rus")])
    assert set(rejected.values()) == {"script_mismatch"}


def without_second_opinion():
    """The stage as it was before the second opinion: lid.176 and its calibration alone."""
    alone = LanguageId(Lid(), str(resolve_lid_model(None)))
    alone.second = None
    return alone


@pytest.mark.parametrize(("label", "tag"), [("swh_Latn", "zul"), ("hau_Latn", "yor"), ("smo_Latn", "ton")])
def test_second_opinion_catches_same_script_mislabels_fasttext_misses(stage, corpus, label, tag):
    # Zulu labelled Swahili, Yoruba labelled Hausa, Tongan labelled Samoan: lid.176 has no label for the
    # text's language (nor, for Hausa and Samoan, for the label's), and lets nearly all of them through.
    plants = [translation(t, label) for t in ntrex(corpus, tag)]
    same = [translation(t, label) for t in ntrex(corpus, tag)]
    _, alone, _ = run(without_second_opinion(), same)
    kept, rejected, _ = run(stage, plants)
    assert len(alone) <= 0.2 * len(plants)
    assert len(rejected) >= 0.95 * len(plants)
    assert set(rejected.values()) == {"lid_mismatch"}
    # a record only the second opinion rejects says what CLD2 read: another language, with its share of the text
    caught = [r for r, s in zip(plants, same, strict=True) if id(r) in rejected and id(s) not in alone]
    assert caught
    for r in caught:
        read, share, expected_share = r["scores"]["lid"][f"answer:{stage.second.name}"]
        assert read not in (None, label) and share >= 0.5 > expected_share


def test_second_opinion_keeps_clean_text_of_languages_only_it_knows(stage, corpus):
    records = [translation(t, code) for tag, code in [("hau", "hau_Latn"), ("yor", "yor_Latn"), ("smo", "smo_Latn"),
                                                       ("zul", "zul_Latn"), ("som", "som_Latn")] for t in ntrex(corpus, tag)]
    kept, rejected, stats = run(stage, records)
    assert len(rejected) <= 0.02 * len(records)
    assert not any(r["scores"]["lid"].get("unsupported") for r in kept)  # CLD2 has a label for each
    assert all(f"answer:{stage.second.name}" in r["scores"]["lid"] for r in records)  # asked: lid.176 reads them weakly


def test_second_opinion_is_asked_only_where_fasttext_is_not_sure(stage, corpus):
    records = [translation(t, code) for tag, code in [("fra", "fra_Latn"), ("deu", "deu_Latn"), ("rus", "rus_Cyrl"),
                                                       ("zho-CN", "zho_Hans")] for t in ntrex(corpus, tag, 100)]
    run(stage, records)
    asked = [r for r in records if f"answer:{stage.second.name}" in r["scores"]["lid"]]
    assert len(asked) <= 0.1 * len(records)
    assert all(r["scores"]["lid"]["answer"][2] < stage.rule(r["lang"]).second.consult for r in asked)


def test_repeated_texts_are_predicted_once_with_the_same_reading(stage, corpus):
    texts = ntrex(corpus, "fra", 20)
    seen: list[int] = []
    lid = stage.lid
    predict = lid._predict  # the one call of fastText per batch
    lid._predict = lambda batch: seen.append(len(batch)) or predict(batch)
    try:
        preds = stage.lid.predict(texts + texts[::-1], ["fra_Latn"] * (2 * len(texts)))
    finally:
        del lid._predict
    assert seen == [len(texts)]
    assert preds[: len(texts)] == preds[len(texts) :][::-1]
    assert preds[0] == stage.lid.predict(texts[:1], ["fra_Latn"])[0]


def test_decisions_are_the_same_on_a_second_run(stage, corpus):
    def build():
        return [translation(t, "swh_Latn") for t in ntrex(corpus, "zul")] + [translation(t, "fra_Latn") for t in ntrex(corpus, "fra")]

    first, second = build(), build()
    _, rejected_1, _ = run(stage, first)
    _, rejected_2, _ = run(stage, second)
    assert [r["scores"] for r in first] == [r["scores"] for r in second]
    assert [id(r) in rejected_1 for r in first] == [id(r) in rejected_2 for r in second]


def test_second_opinion_follows_the_thresholds_setting(tmp_path):
    model = str(resolve_lid_model(None))
    assert LanguageId(Lid(thresholds="none"), model).second is None
    first = tmp_path / "mine.tsv"
    first.write_text("fra_Latn\t10\t1.0\t0.4\t0.2\t\n", encoding="utf-8")
    assert LanguageId(Lid(thresholds=str(first)), model).second is None  # no calibration of its own beside the file
    (tmp_path / "mine.cld2.tsv").write_text("fra_Latn\t10\t1.0\t0.5\t0.3\teng_Latn=0.9\t0.8\n", encoding="utf-8")
    stage = LanguageId(Lid(thresholds=str(first)), model)
    assert stage.rule("fra_Latn").second == Thresholds(0.5, 0.3, (("eng_Latn", 0.9),), 0.8)
    assert stage.rule("fra_Latn").first == Thresholds(0.4, 0.2)


def test_cld2_names_the_language_in_the_texts_own_script(corpus):
    cld2 = Cld2Id()
    serbian = ntrex(corpus, "srp-Latn", 10)
    assert {p.label for p in cld2.predict(serbian, ["srp_Latn"] * len(serbian))} == {"srp_Latn"}
    sorani = ntrex(corpus, "ckb-Arab", 10)
    assert {p.label for p in cld2.predict(sorani, ["eng_Latn"] * len(sorani))} == {"ckb_Arab"}
    assert cld2.predict(["\x00 control characters \ud800 and a lone surrogate"], ["eng_Latn"])[0].label in ("eng_Latn", None)


def test_code_and_urls_are_not_read_as_language(stage):
    answer = "这个函数返回列表的和。\n```python\ndef total(items):\n    return sum(item.price for item in items if item.valid)\n```\n详见 https://docs.python.org/3/library/functions.html#sum 。"
    r = new_record(messages=[{"role": "user", "content": "写一个求和函数"}, {"role": "assistant", "content": answer}],
                   lang="zho_Hans", task="general", source="t", license="x")
    kept, rejected, _ = run(stage, [r])
    assert kept == [r]


def test_calibration_writes_the_second_opinion_beside_the_first(corpus, tmp_path):
    from datakit.calibrate_lid import SURE, calibrate_with_second, write_calibration
    from datakit.langid import NEVER, LangId, read_thresholds

    lines = {code: ntrex(corpus, tag, 200) for tag, code in [("fra", "fra_Latn"), ("zul", "zul_Latn"), ("glg", "glg_Latn")]}
    rows, second_rows = calibrate_with_second(LangId(str(resolve_lid_model(None))), Cld2Id(), lines, 0.005, 0.01)
    path = tmp_path / "t.tsv"
    write_calibration(rows, second_rows, str(path), "test")
    first, second = read_thresholds(path.read_text(encoding="utf-8")), read_thresholds((tmp_path / "t.cld2.tsv").read_text(encoding="utf-8"))
    assert set(first) == set(second) == set(lines)
    assert first["fra_Latn"].consult == NEVER  # the first model's file has no such column
    # asked always where lid.176 has no label (Zulu) or reads the language weakly (Galician); for French only when unsure
    assert second["zul_Latn"].consult == NEVER and second["glg_Latn"].consult == NEVER
    assert second["fra_Latn"].consult == SURE


def test_one_text_outside_a_batch_gets_the_same_verdict(stage, corpus):
    # An LLM answer being validated (construct/llm_step): the same two opinions as in a batch.
    zulu, french, russian = ntrex(corpus, "zul", 5)[0], ntrex(corpus, "fra", 5)[0], ntrex(corpus, "rus", 5)[0]
    assert stage.text_mismatch(zulu, "swh_Latn") == "lid_mismatch"
    assert stage.text_mismatch(french, "fra_Latn") is None
    assert stage.text_mismatch(russian, "fra_Latn") == "script_mismatch"
    _, rejected, _ = run(stage, [translation(zulu, "swh_Latn")])
    assert list(rejected.values()) == ["lid_mismatch"]
