"""LLM synthesis through a real build, against a local OpenAI-compatible server with faults."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from contract import check_contract
from openai_server import OpenAIStub

from datakit.build import BuildOptions, run_build

KEY = "sk-test-SECRET-synthesis-42"
LANGS = ["swh_Latn", "yor_Latn", "hau_Latn"]

RECIPE = """
name: synth
seed: 11
sources:
  - name: alpaca-en
    format: alpaca
    path: alpaca-demo/data/alpaca_en_demo.json
    lang: eng_Latn
    license: unknown
construct:
  synthesis:
    enabled: true
    model: ntrex-mt
    languages: {langs}
    sources: [alpaca-en]
    per_language: {per_language}
    pool: 60
    prices: {{ntrex-mt: {{input: 100.0, output: 200.0}}}}
    budget_usd: {budget}
    concurrency: 3
filters:
  quality: {{enabled: false}}
"""


@pytest.fixture(scope="module")
def server(corpus):
    with OpenAIStub(corpus / "ntrex128/NTREX-128", slow_seconds=3.0) as s:
        yield s


@pytest.fixture
def stub(server, monkeypatch):
    server.clear()
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    return server


def recipe(tmp_path: Path, per_language: int = 6, budget: float = 100.0) -> Path:
    path = tmp_path / "synth.yaml"
    path.write_text(textwrap.dedent(RECIPE).format(langs=json.dumps(LANGS), per_language=per_language, budget=budget), encoding="utf-8")
    return path


def build(path: Path, corpus: Path, out: Path, cache: Path):
    return run_build(BuildOptions(recipe=str(path), data_dir=str(corpus), output=str(out), workers=1, cache_dir=str(cache)))


def rows_with(out: Path, folder: str, task: str) -> list[dict]:
    rows = []
    for f in sorted(out.glob(f"{folder}/**/*.parquet")):
        rows += [r for r in pq.read_table(f).to_pylist() if r["task"] == task or r["source"] == "synthesis"]
    return rows


def test_synthesis_answers_every_prompt_once_then_never_again(stub, corpus, tmp_path):
    for fault in ("429", "500", "malformed", "drop", "slow"):
        stub.inject(fault, times=1)
    path, cache = recipe(tmp_path), tmp_path / "cache"
    first = build(path, corpus, tmp_path / "out1", cache)
    rows = check_contract(tmp_path / "out1")
    made = [r for r in rows if r["task"] == "synthesised"]
    assert {r["lang"] for r in made} == set(LANGS) and len(made) >= 0.8 * 6 * len(LANGS)
    assert all(r["group"] == "cross_lingual" and json.loads(r["meta"])["generator_model"] == "ntrex-mt" for r in made)
    answered: dict[str, int] = {}
    for e in stub.events:
        if e.prompt is not None:
            answered[e.prompt] = answered.get(e.prompt, 0) + (e.answer in ("ok", "slow"))  # "slow": answered late
    assert len(answered) == 2 * 6 * len(LANGS)  # instruction and answer, per pair
    assert set(answered.values()) == {1}, "every prompt answered exactly once, faults retried"
    read = first.stats["stages"][0]
    assert read["in"] >= 6 * len(LANGS)

    before = len(stub.events)
    build(path, corpus, tmp_path / "out2", cache)  # a rebuild into a new folder
    assert len(stub.events) == before, "a rebuild sends nothing"
    synth = sorted(r["id"] for r in rows_with(tmp_path / "out2", "data", "synthesised"))
    assert synth == sorted(r["id"] for r in made)
    # Answered from the cache, the rebuild writes the very bytes of the build that paid for them.
    manifests = [json.loads((tmp_path / o / "manifest.json").read_text()) for o in ("out1", "out2")]
    data = [{f["path"]: f["sha256"] for f in m["files"] if f["path"].startswith("data/")} for m in manifests]
    assert data[0] == data[1]


def test_budget_is_never_exceeded_and_refused_requests_are_rejected_records(stub, corpus, tmp_path):
    budget = 0.5
    path = recipe(tmp_path, per_language=12, budget=budget)
    result = build(path, corpus, tmp_path / "out", tmp_path / "cache")
    check_contract(tmp_path / "out")
    spent = sum(p * 100.0 / 1e6 + c * 200.0 / 1e6 for p, c in stub.billed)
    assert spent <= budget
    read = next(s for s in result.stats["stages"] if s["name"] == "read")
    assert read["rejected"].get("budget_exceeded", 0) > 0
    refused = [r for r in rows_with(tmp_path / "out", "rejected", "x") if r["reason"] == "budget_exceeded"]
    assert refused and all(r["lang"] in LANGS for r in refused)


def test_the_key_is_in_no_file_written(stub, corpus, tmp_path):
    path, cache, out = recipe(tmp_path, per_language=3), tmp_path / "cache", tmp_path / "out"
    build(path, corpus, out, cache)
    for folder in (out, cache):
        for f in folder.rglob("*"):
            if f.is_file():
                assert KEY.encode() not in f.read_bytes(), f


JUDGE_RECIPE = """
name: judged
sources:
  - {name: alpaca-en, format: alpaca, path: alpaca-demo/data/alpaca_en_demo.json, lang: eng_Latn, license: unknown}
filters:
  judge: {enabled: true, model: ntrex-mt, threshold: 3, concurrency: 3, prices: {ntrex-mt: {input: 1.0, output: 1.0}}}
"""


def test_llm_judge_scores_records_and_rejects_low_and_unreadable_judgements(stub, corpus, tmp_path):
    recipe = tmp_path / "judged.yaml"
    recipe.write_text(textwrap.dedent(JUDGE_RECIPE), encoding="utf-8")
    stub.judge_reply = '{"score": 4, "reason": "fine"}'
    stub.inject("500", times=2)
    out = tmp_path / "out"
    result = run_build(BuildOptions(recipe=str(recipe), data_dir=str(corpus), output=str(out), workers=1,
                                    cache_dir=str(tmp_path / "cache"), sample=30))
    rows = check_contract(out)
    judge = next(s for s in result.stats["stages"] if s["name"] == "judge")
    assert judge["in"] > 0 and judge["kept"] == len(rows) and not judge["rejected"]
    assert all(json.loads(r["scores"])["judge"]["score"] == 4 for r in rows)
    # A stricter judge on the same records: the cache answers, and every judgement is below it.
    strict = recipe.read_text().replace("threshold: 3", "threshold: 5")
    recipe.write_text(strict, encoding="utf-8")
    before = len(stub.events)
    result = run_build(BuildOptions(recipe=str(recipe), data_dir=str(corpus), output=str(tmp_path / "out2"), workers=1,
                                    cache_dir=str(tmp_path / "cache"), sample=30))
    assert len(stub.events) == before, "the judge's answers come from the cache"
    judge = next(s for s in result.stats["stages"] if s["name"] == "judge")
    assert judge["kept"] == 0 and judge["rejected"] == {"judge_low_score": judge["in"]}


def test_an_unreadable_judgement_is_a_rejection_never_a_guess(stub, corpus, tmp_path):
    recipe = tmp_path / "judged.yaml"
    recipe.write_text(textwrap.dedent(JUDGE_RECIPE), encoding="utf-8")
    stub.judge_reply = "I'd say it is pretty good, maybe a four."
    try:
        result = run_build(BuildOptions(recipe=str(recipe), data_dir=str(corpus), output=str(tmp_path / "out"), workers=1,
                                        cache_dir=str(tmp_path / "cache"), sample=10))
    finally:
        stub.judge_reply = '{"score": 4, "reason": "fluent and correct"}'
    judge = next(s for s in result.stats["stages"] if s["name"] == "judge")
    assert judge["rejected"] == {"judge_unparseable": judge["in"]} and judge["in"] > 0


NATIVE_RECIPE = """
name: native
seed: 5
sources:
  - name: ntrex128
    format: bitext
    path: ntrex128
    files: 'NTREX-128/newstest2019-(?:src|ref)\\.(?P<lang>eng|zho-CN|swa|fra)\\.txt'
    unit: sentence
    license: CC-BY-SA-4.0
construct:
  native_templates:
    enabled: true
    model: ntrex-mt
    languages: [swh_Latn, fra_Latn]
    share: 0.5
    concurrency: 3
filters:
  quality: {enabled: false}
"""


def test_translation_instructions_in_x_come_from_checked_llm_templates(stub, corpus, tmp_path):
    from datakit.construct.templates import TRANSLATION
    from datakit.languages import display_name

    path = tmp_path / "native.yaml"
    path.write_text(textwrap.dedent(NATIVE_RECIPE), encoding="utf-8")
    english = [t for t in TRANSLATION if t.lang == "eng_Latn"]
    echoed, broken = english[7], english[2]  # one answered with the English back, one without its {text}
    stub.inject("english", times=1, match=echoed.text)
    stub.inject("500", times=2)
    stub.inject("lost_placeholder", times=1, match=broken.text)

    def run(out: str):
        return run_build(BuildOptions(recipe=str(path), data_dir=str(corpus), output=str(tmp_path / out), workers=1,
                                      cache_dir=str(tmp_path / "cache"), sample=120))

    first = run("out1")
    rows = check_contract(tmp_path / "out1")
    report = first.stats["native_templates"]
    left_out = {reason: n for lang in report.values() for reason, n in lang["left_out"].items()}
    assert left_out.get("untranslated", 0) >= 1 and left_out.get("bad_format", 0) >= 1
    assert sum(v["accepted"] for v in report.values()) + sum(left_out.values()) == 2 * len(english)
    assert f"{sum(v['accepted'] for v in report.values())} templates accepted" in (tmp_path / "out1/README.md").read_text(encoding="utf-8")

    saved = json.loads(next((tmp_path / "out1/.datakit/native_templates").glob("*/templates.json")).read_text(encoding="utf-8"))
    accepted = {t["id"]: t for t in saved["accepted"]}
    rejected_ids = {t["id"] for t in saved["rejected"]}
    for t in saved["accepted"]:  # every accepted frame keeps its English template's placeholders
        source = next(e for e in english if e.id == t["from"])
        assert sorted(re.findall(r"\{\w+\}", t["text"])) == sorted(re.findall(r"\{\w+\}", source.text))

    translations = [r for r in rows if r["task"] == "translation" and r["lang"] in ("swh_Latn", "fra_Latn")]
    framed_in_x = [r for r in translations if json.loads(r["meta"])["instruction_lang"] == r["lang"]]
    assert 0.3 * len(translations) <= len(framed_in_x) <= 0.7 * len(translations)  # share 0.5, drawn per record
    for r in framed_in_x:
        meta = json.loads(r["meta"])
        assert meta["template"] in accepted and meta["template"] not in rejected_ids
        template = accepted[meta["template"]]
        user = r["messages"][0]["content"]
        names = {"src": display_name(r["src_lang"], r["lang"]), "tgt": display_name(r["tgt_lang"], r["lang"])}
        before, after = template["text"].split("{text}")
        assert user.startswith(before.format(**names).strip()) and user.endswith(after.format(**names).strip())
    assert any(display_name("eng_Latn", "swh_Latn") in r["messages"][0]["content"] for r in framed_in_x if r["lang"] == "swh_Latn")
    # Other languages keep their zh/en frames.
    others = [r for r in rows if r["task"] == "translation" and r["lang"] not in ("swh_Latn", "fra_Latn")]
    assert others and all(json.loads(r["meta"])["instruction_lang"] in ("eng_Latn", "zho_Hans") for r in others)

    before = len(stub.events)
    run("out2")  # a rebuild into a new folder asks nothing and frames every record the same way
    assert len(stub.events) == before
    manifest = [json.loads((tmp_path / o / "manifest.json").read_text()) for o in ("out1", "out2")]
    data = [{f["path"]: f["sha256"] for f in m["files"] if f["path"].startswith("data/")} for m in manifest]
    assert data[0] == data[1]
