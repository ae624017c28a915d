"""Quality heuristics on real answers: clean ones kept, planted defects rejected with their reason."""

from __future__ import annotations

import json

from datakit.recipe import Quality as QualityConfig
from datakit.record_stages.quality import Quality, numbers
from datakit.records import new_record, set_content
from datakit.stats import StageStats


def general(answer: str, lang: str = "eng_Latn", task: str = "general"):
    return new_record(messages=[{"role": "user", "content": "Tell me."}, {"role": "assistant", "content": answer}],
                      lang=lang, task=task, source="t", license="x")


def translation(src: str, tgt: str, task: str = "translation"):
    r = new_record(messages=[{"role": "user", "content": f"Translate:\n{src}"}, {"role": "assistant", "content": tgt}],
                   lang="swh_Latn", task=task, source="t", license="x", src_lang="eng_Latn", tgt_lang="swh_Latn")
    set_content(r, [src, tgt])
    return r


def verdicts(records, **config):
    stage = Quality(QualityConfig(**config))
    stats = StageStats("quality")
    kept, rejected = stage.run(records, stats)
    return [next((r.reason for r in rejected if r.record is rec), None) for rec in records]


def test_clean_real_answers_are_kept(corpus):
    data = json.loads((corpus / "alpaca-demo/data/alpaca_en_demo.json").read_text(encoding="utf-8"))[:300]
    results = verdicts([general(r["output"]) for r in data])
    assert results.count(None) >= 0.97 * len(results)


def test_planted_defects_get_their_reason():
    loop = " ".join(["The answer is that we should always keep going forward."] * 40)
    cases = {
        "repetitive": general(loop),
        "refusal": general("As an AI language model, I cannot have opinions about that."),
        "mojibake": general("The cafÃ© was closed, donâ€™t go there."),
        "unbalanced_code_fence": general("Here is the code:\n```python\nprint('hi')\n"),
        "url_spam": general(" ".join(f"https://spam{i}.example.com/buy" for i in range(8))),
        "length_ratio": translation("A short sentence about the weather in Nairobi today.", "Hali ya hewa " * 30),
        "untranslated": translation("The committee will meet again next week.", "The committee will meet again next week."),
        "numbers_mismatch": translation("Prices rose by 12 percent in 2019.", "Bei zilipanda kwa asilimia 15 mwaka 2018.", "synthesised"),
    }
    cases["refusal_zh"] = general("作为一个人工智能语言模型，我无法回答这个问题。", "zho_Hans")
    got = dict(zip(cases, verdicts(list(cases.values())), strict=True))
    assert got == {**{k: k for k in cases if k != "refusal_zh"}, "refusal_zh": "refusal"}


def test_capitals_of_a_real_language_are_not_mojibake(corpus):
    # UDHR in Ewe: the preamble's heading in capitals has "GÃ LE" and "ƑÃ ƉEM", which ftfy, over the
    # whole document, would decode as a mangled "à"; the text is what the translators wrote.
    from datakit.sources.parallel import udhr_articles

    preamble = udhr_articles(corpus / "udhr/data/udhr/udhr_ewe.xml")[0]
    assert "GÃ LE" in preamble
    assert verdicts([general(preamble, "ewe_Latn")]) == [None]
    assert verdicts([general("Bonjour.\nLe cafÃ© était fermé.", "fra_Latn")]) == ["mojibake"]


def test_numbers_are_scored_for_human_translations_not_rejected():
    r = translation("Prices rose by 12 percent in 2019.", "Bei zilipanda kwa asilimia kumi na mbili mwaka 2019.")
    assert verdicts([r]) == [None]
    assert r["scores"]["quality"]["numbers_kept"] == 0.5
    assert numbers("7,000 tons and ٣ boats, 1.5 million") == {"7000", "3", "15"}


def test_personal_data_is_redacted_or_rejected_as_configured():
    text = "Write to jane.doe@example.org or call +1 415-555-0134 for details."
    r = general(text)
    assert verdicts([r]) == [None]
    assert r["messages"][-1]["content"] == "Write to [EMAIL] or call [PHONE] for details."
    assert verdicts([general(text)], pii="reject") == ["pii"]
    assert verdicts([general("In 2019, 3,500 people came; the score was 38 - 17.")], pii="reject") == [None]


def _ntrex_line(corpus, name: str, line: int) -> str:
    return (corpus / "ntrex128/NTREX-128" / name).read_text(encoding="utf-8").splitlines()[line - 1].strip()


def test_translations_keep_public_text_on_both_sides_or_redact_both(corpus):
    # NTREX line 447: a police phone number in a news story, in the English source and the Swahili reference.
    src, tgt = _ntrex_line(corpus, "newstest2019-src.eng.txt", 447), _ntrex_line(corpus, "newstest2019-ref.swa.txt", 447)
    assert "859-292-3680" in src and "859-292-3680" in tgt

    kept = translation(src, tgt)
    assert verdicts([kept]) == [None]  # default: public text as it is, prompt and answer alike
    assert [m["content"] for m in kept["messages"]] == [f"Translate:\n{src}", tgt]

    redacted = translation(src, tgt)
    assert verdicts([redacted], pii_translations="redact") == [None]
    assert all("859-292-3680" not in m["content"] and "[PHONE]" in m["content"] for m in redacted["messages"])
    assert verdicts([translation(src, tgt)], pii_translations="reject") == ["pii"]

    # Interactive translation and cross-lingual QA render a source in the prompt too.
    for task in ("interactive_translation", "cross_lingual_qa"):
        r = translation(src, tgt, task)
        verdicts([r])
        assert all("859-292-3680" in m["content"] for m in r["messages"])


def test_general_records_keep_todays_policy_answers_only(corpus):
    src = _ntrex_line(corpus, "newstest2019-src.eng.txt", 447)
    r = new_record(messages=[{"role": "user", "content": f"Who should I call? {src}"}, {"role": "assistant", "content": src}],
                   lang="eng_Latn", task="general", source="t", license="x")
    assert verdicts([r]) == [None]
    assert "859-292-3680" in r["messages"][0]["content"] and "[PHONE]" in r["messages"][1]["content"]
    assert r["scores"]["quality"]["pii"] == 1
    untouched = general(src)
    assert verdicts([untouched], pii="keep", pii_translations="redact") == [None]
    assert untouched["messages"][-1]["content"] == src


def test_mojibake_asks_ftfy_only_where_it_could_change_a_line(corpus):
    # The shortcut (ASCII text, or no match of ftfy's badness pattern in the whole text nor its
    # anchored "Ã " at a line's start) must answer as asking ftfy line by line does, on real text
    # in every NTREX and UDHR language and on planted mojibake, a line-initial "Ã " included.
    import ftfy

    from datakit.record_stages.quality import mojibake
    from datakit.sources.parallel import udhr_articles

    texts = ["\n".join(path.read_text(encoding="utf-8").splitlines()[:30])
             for path in sorted((corpus / "ntrex128/NTREX-128").glob("newstest2019-*.txt"))]
    texts += ["\n".join(list(udhr_articles(path).values())[:3]) for path in sorted((corpus / "udhr/data/udhr").glob("udhr_*.xml"))[:200]]
    planted = ["Bonjour.\nLe cafÃ© était fermé.", "Fin.\nÃ la carte", "Ã la carte", "1.\nÂ vous", "donâ€™t", "TAKPEKPEGÃ LE GBEƑÃ"]
    answers = [mojibake(t) for t in texts + planted]
    assert answers == [any(ftfy.fix_encoding(line) != line for line in t.split("\n")) for t in texts + planted]
    assert sum(answers[len(texts):]) >= 3 and len(texts) > 300
