"""Constructed records checked against the corpus files they came from (the local sample build)."""

from __future__ import annotations

import json
import re
from collections import defaultdict

import pytest
from contract import rows_of

from datakit.languages import display_name, normalize
from datakit.sources.parallel import LIST_MARKER, file_language, udhr_articles
from datakit.text import dedup_text

LIST_LINE = re.compile(LIST_MARKER.pattern, re.M)


@pytest.fixture(scope="module")
def rows(local_sample_build):
    return rows_of(sorted(local_sample_build.out.rglob("data/*/*.parquet")))


@pytest.fixture(scope="module")
def references(corpus):
    """(code, region or None) -> lines of the NTREX file."""
    refs = {}
    for path in sorted(corpus.glob("ntrex128/NTREX-*/newstest2019-*.txt")):
        if "ref-2" in path.name:
            continue
        lang = file_language(path.name.split(".")[-2], path)
        key = (lang.code, lang.region if lang.region not in ("CN", "TW") else None)
        if key not in refs or "src" in path.name:
            refs[key] = path.read_text(encoding="utf-8").splitlines()
    return refs


def test_translations_in_all_four_hub_directions_for_almost_every_ntrex_language(rows):
    directions = defaultdict(set)
    for r in rows:
        if r["source"] == "ntrex128" and r["task"] == "translation":
            directions[r["lang"]].add((r["src_lang"], r["tgt_lang"]))
    complete = [lang for lang, d in directions.items() if lang not in ("eng_Latn", "zho_Hans") and
                {(lang, "eng_Latn"), ("eng_Latn", lang), (lang, "zho_Hans"), ("zho_Hans", lang)} <= d]
    assert len(complete) >= 115


def test_chinese_instructions_name_the_language_in_chinese(rows):
    from datakit.construct.templates import TRANSLATION

    by_id = {t.id: t for t in TRANSLATION}
    zh = [r for r in rows if r["task"] == "translation" and json.loads(r["meta"]).get("instruction_lang") == "zho_Hans"]
    assert zh
    for r in zh:
        template = by_id[json.loads(r["meta"])["template"]]
        for field, code in (("{src}", r["src_lang"]), ("{tgt}", r["tgt_lang"])):
            if field in template.text:
                assert display_name(code, "zho_Hans") in r["messages"][0]["content"]
    assert any("斯瓦希里语" in r["messages"][0]["content"] for r in zh if "swh_Latn" in (r["src_lang"], r["tgt_lang"]))


def test_interactive_revisions_hold_against_the_references(rows, references):
    interactive = [r for r in rows if r["task"] == "interactive_translation"]
    assert len(interactive) >= 100
    kinds = set()
    for r in interactive:
        meta = json.loads(r["meta"])
        line = meta["line"] - 1
        answers = [m["content"] for m in r["messages"] if m["role"] == "assistant"]
        requests = [m["content"] for m in r["messages"] if m["role"] == "user"][1:]
        assert len(answers) == len(meta["revisions"]) + 1 >= 2
        for rev, request, answer in zip(meta["revisions"], requests, answers[1:], strict=True):
            kinds.add(rev["kind"])
            if rev["kind"] == "another_language":
                assert answer == references[(rev["lang"], None)][line].strip()
            elif rev["kind"] == "regional_variant":
                assert answer == references[(r["tgt_lang"], rev["variant"])][line].strip()
            elif rev["kind"] == "include_words":
                assert all(re.search(rf"(?<!\w){re.escape(w)}(?!\w)", answer) and w in request for w in rev["words"])
            else:
                assert rev["term"] in answer and rev["term"] in request
        # Each revision changes the words of the answer before it, and asks for what that answer lacked.
        for rev, before, after in zip(meta["revisions"], answers, answers[1:], strict=False):
            assert dedup_text(before) != dedup_text(after)
            for wanted in rev.get("words", []) + ([rev["term"]] if "term" in rev else []):
                assert wanted.casefold().replace("’", "'") not in before.casefold().replace("’", "'")
    assert {"another_language", "regional_variant", "include_words"} <= kinds


def test_qa_answers_match_the_references(rows, corpus):
    mgsm = {}
    for path in (corpus / "mgsm/mgsm").glob("mgsm_*.tsv"):
        code = normalize(path.stem.split("_")[1]).code
        mgsm[code] = [line.split("\t")[1] for line in path.read_text(encoding="utf-8").splitlines()]
    xquad = {}
    for path in corpus.glob("xquad/xquad.*.json"):
        code = normalize(path.name.split(".")[1]).code
        doc = json.loads(path.read_text(encoding="utf-8"))
        xquad[code] = {qa["id"]: qa["answers"][0]["text"] for a in doc["data"] for p in a["paragraphs"] for qa in p["qas"]}
    checked = 0
    for r in rows:
        if r["task"] != "cross_lingual_qa":
            continue
        meta = json.loads(r["meta"])
        answer = r["messages"][-1]["content"]
        answer_lang = r["tgt_lang"] or r["lang"]
        if r["source"] == "mgsm":
            assert mgsm[r["lang"]][meta["line"] - 1] in answer
        else:
            assert answer == xquad[answer_lang][meta["id"]].strip()
        checked += 1
    assert checked > 50


def test_udhr_list_markers_are_on_neither_side(rows, corpus):
    # Breton writes each recital as "–O vezañ ..."; the English and Chinese files have no markers.
    breton = udhr_articles(corpus / "udhr/data/udhr/udhr_bre.xml")
    assert breton[0].startswith("O vezañ") and not LIST_LINE.search(breton[0])
    udhr = [r for r in rows if r["source"] == "udhr" and r["task"] == "translation"]
    assert udhr
    for r in udhr:
        assert not LIST_LINE.search(r["messages"][0]["content"]) and not LIST_LINE.search(r["messages"][-1]["content"])
