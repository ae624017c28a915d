"""The lid stage on real text: clean records kept, planted mislabels caught, unsupported languages marked."""

from __future__ import annotations

import pytest

from datakit.errors import DatakitError
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
    zulu = [translation(t, "zul_Latn") for t in ntrex(corpus, "zul")]
    kept, rejected, stats = run(stage, zulu)
    assert not stage.lid.supports("zul_Latn")
    assert len(rejected) <= 0.05 * len(zulu)
    assert all(r["scores"]["lid"]["unsupported"] for r in kept)
    assert stats.report["zul_Latn"]["unsupported"] == len(zulu)
    # ... but a clearly different script still fails them.
    kept, rejected, _ = run(stage, [translation(t, "zul_Latn") for t in ntrex(corpus, "rus")])
    assert set(rejected.values()) == {"script_mismatch"}


def test_code_and_urls_are_not_read_as_language(stage):
    answer = "这个函数返回列表的和。\n```python\ndef total(items):\n    return sum(item.price for item in items if item.valid)\n```\n详见 https://docs.python.org/3/library/functions.html#sum 。"
    r = new_record(messages=[{"role": "user", "content": "写一个求和函数"}, {"role": "assistant", "content": answer}],
                   lang="zho_Hans", task="general", source="t", license="x")
    kept, rejected, _ = run(stage, [r])
    assert kept == [r]
