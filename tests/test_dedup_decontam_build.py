"""Near duplicates and benchmark items planted into real instructions, through a real build."""

from __future__ import annotations

import json
import random
import textwrap
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from contract import check_contract

from datakit.build import BuildOptions, run_build
from datakit.why import find

RECIPE = """
name: planted
seed: 3
sources:
  - name: en
    format: alpaca
    path: en.json
    lang: eng_Latn
    license: x
  - name: zh
    format: alpaca
    path: zh.json
    lang: zho_Hans
    license: x
filters:
  decontaminate:
    sets:
      - name: bayling80
        path: {corpus}/bayling80/data/BayLing-80
      - name: vicuna80
        path: {corpus}/gpt4llm-eval/plots/data/vicuna_question_80.jsonl
"""


def edit_words(text: str, rng: random.Random) -> str:
    words = text.split()
    for _ in range(max(1, len(words) // 40)):
        i = rng.randrange(len(words))
        words[i] = words[i].upper() if rng.random() < 0.5 else words[i] + "s"
    return " ".join(words)


def edit_chars(text: str, rng: random.Random) -> str:
    chars = list(text)
    for _ in range(max(1, len(chars) // 60)):
        chars[rng.randrange(len(chars))] = "的"
    return "".join(chars)


@pytest.fixture(scope="module")
def planted(corpus, tmp_path_factory):
    rng = random.Random(5)
    root = tmp_path_factory.mktemp("planted")
    def distinct(path: str, long_enough) -> list[dict]:  # the demo sets repeat a few records themselves
        rows = json.loads((corpus / path).read_text(encoding="utf-8"))
        return list({r["instruction"]: r for r in rows if long_enough(r["output"])}.values())

    en = distinct("alpaca-demo/data/alpaca_en_demo.json", lambda t: len(t.split()) > 60)[:160]
    zh = distinct("alpaca-demo/data/alpaca_zh_demo.json", lambda t: len(t) > 150)[:120]
    plants = {"en": [], "zh": []}
    for r in en[:40]:  # the same instruction, the answer slightly edited
        plants["en"].append({**r, "output": edit_words(r["output"], rng)})
    for r in zh[:30]:
        plants["zh"].append({**r, "output": edit_chars(r["output"], rng)})
    bench = [json.loads(line)["text"] for line in (corpus / "gpt4llm-eval/plots/data/vicuna_question_80.jsonl").read_text().splitlines()[:10]]
    bench_zh = [json.loads(line)["text"] for line in (corpus / "bayling80/data/BayLing-80/BayLing-80.singleturn.zh.jsonl").read_text(encoding="utf-8").splitlines()[:5]]
    hidden = [{"instruction": f"Please help with this. {q} Answer in detail.", "input": "", "output": en[100 + i]["output"]} for i, q in enumerate(bench)]
    hidden_zh = [{"instruction": f"请回答：{q}", "input": "", "output": zh[100 + i]["output"]} for i, q in enumerate(bench_zh)]
    (root / "en.json").write_text(json.dumps(en + plants["en"] + hidden, ensure_ascii=False), encoding="utf-8")
    (root / "zh.json").write_text(json.dumps(zh + plants["zh"] + hidden_zh, ensure_ascii=False), encoding="utf-8")
    (root / "r.yaml").write_text(textwrap.dedent(RECIPE).format(corpus=corpus), encoding="utf-8")
    out = root / "out"
    result = run_build(BuildOptions(recipe=str(root / "r.yaml"), data_dir=str(root), output=str(out), workers=1))
    return out, result, en, zh, plants, hidden + hidden_zh


def rejected(out: Path, stage: str) -> list[dict]:
    rows = []
    for f in sorted((out / "rejected" / stage).glob("*.parquet")):
        rows += pq.read_table(f).to_pylist()
    return rows


def test_near_duplicates_are_caught_and_distinct_records_kept(planted):
    out, result, en, zh, plants, _ = planted
    rows = check_contract(out)
    near = rejected(out, "near_dedup")
    removed = near + rejected(out, "exact_dedup")  # some edits only change case: the exact stage folds those
    planted_instructions = [o["instruction"] for o in en[:40] + zh[:30]]
    caught = [i for i in planted_instructions if any(r["messages"][0]["content"].startswith(i) for r in removed)]
    assert len(caught) >= 0.95 * len(planted_instructions)
    # One of each planted pair is gone, and no distinct record.
    assert len(removed) == len(caught)
    kept_instructions = {r["messages"][0]["content"] for r in rows}
    assert all(any(k.startswith(i) for k in kept_instructions) for i in caught)
    meta = json.loads(near[0]["meta"])
    assert meta["near_duplicate_of"] in {r["id"] for r in rows} and 0.8 <= meta["similarity"] <= 1


def test_benchmark_items_hidden_in_training_data_are_removed(planted):
    out, result, en, zh, plants, hidden = planted
    removed = rejected(out, "decontaminate")
    assert len(removed) == len(hidden)
    benchmarks = {m["benchmark"] for r in removed for m in json.loads(r["meta"])["contaminated_by"]}
    assert benchmarks == {"vicuna80", "bayling80"}
    stage = next(s for s in result.stats["stages"] if s["name"] == "decontaminate")
    assert stage["rejected"] == {"decontaminated": len(hidden)}


def test_why_explains_a_removed_record_by_id_and_by_text(planted):
    out, *_ = planted
    record = rejected(out, "decontaminate")[0]
    by_id = find(out, record["id"])
    assert [(h["stage"], h["reason"]) for h in by_id] == [("decontaminate", "decontaminated")]
    text = record["messages"][0]["content"][20:60]
    assert any(h["id"] == record["id"] for h in find(out, text))


def test_a_benchmark_item_inside_parallel_text_is_found_in_every_direction(corpus):
    """Translation records are checked on their two texts (their frame is ours): a Vicuna-80
    question that a parallel corpus carries is removed from X->en, en->X, X->zh and zh->X alike."""
    from datakit.construct import build
    from datakit.recipe import load_recipe
    from datakit.record_stages.decontaminate import Decontaminate, build_index
    from datakit.sources.base import Parallel, RawRow
    from datakit.stats import StageStats

    recipe = load_recipe(Path(__file__).resolve().parents[1] / "pipelines/local.yaml")
    stage = Decontaminate(build_index(recipe.filters.decontaminate, corpus, None))
    source = next(s for s in recipe.sources if s.name == "ntrex128")
    question = json.loads((corpus / "gpt4llm-eval/plots/data/vicuna_question_80.jsonl").read_text().splitlines()[3])["text"]
    ntrex = corpus / "ntrex128/NTREX-128"
    lines = {code: (ntrex / f"newstest2019-{name}.txt").read_text(encoding="utf-8").splitlines()[:2]
             for code, name in (("eng_Latn", "src.eng"), ("zho_Hans", "ref.zho-CN"), ("swh_Latn", "ref.swa"))}
    rows = [RawRow({"line": i}, Parallel("swh_Latn", {c: ls[i] for c, ls in lines.items()})) for i in range(2)]
    rows[0].example.texts["eng_Latn"] = f"{rows[0].example.texts['eng_Latn']} {question}"
    verdicts = []
    for row in rows:
        records = [r for r in build(row, source, recipe) if r["task"] == "translation"]
        assert len(records) == 4
        verdicts.append({(r["src_lang"], r["tgt_lang"]): stage.apply(r, StageStats("decontaminate")) for r in records})
    hub_english = {k for k in verdicts[0] if "eng_Latn" in k}
    assert {k for k, v in verdicts[0].items() if v == "decontaminated"} == hub_english  # the English side holds it
    assert set(verdicts[1].values()) == {None}  # clean lines stay
