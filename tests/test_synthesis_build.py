"""LLM synthesis through a real build, against a local OpenAI-compatible server with faults."""

from __future__ import annotations

import json
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
