"""The report a data engineer audits a build with: every removal reason with records it removed,
what each stage found, kept examples per language, links to and from `python -m datakit.why`,
and the same bytes for the same build.

A small corpus of real Alpaca records (en, zh) with planted faults goes through the real build:
an unreadable element, empty answers, English answers in the Chinese file, case-only copies,
lightly edited copies, and Vicuna-80 questions hidden in instructions (the recipe and the word
edits are test_dedup_decontam_build's).
"""

from __future__ import annotations

import json
import random
import re
import textwrap
from collections import defaultdict
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from contract import tree_bytes
from test_dedup_decontam_build import RECIPE, edit_words  # the planted-fault recipe and word edits

from datakit.build import BuildOptions, run_build
from datakit.why import main as why_main
from datakit.write.anchors import KEPT_PAGE, language_anchor, reason_anchor

PLANTED = {("read", "not_an_object"), ("normalise", "empty_text"), ("lid", "lid_mismatch"), ("exact_dedup", "exact_duplicate"),
           ("near_dedup", "near_duplicate"), ("decontaminate", "decontaminated")}


def _distinct(corpus: Path, path: str, long_enough) -> list[dict]:
    rows = json.loads((corpus / path).read_text(encoding="utf-8"))
    return list({r["instruction"]: r for r in rows if long_enough(r["output"])}.values())


def write_corpus(corpus: Path, root: Path) -> None:
    rng = random.Random(7)
    en = _distinct(corpus, "alpaca-demo/data/alpaca_en_demo.json", lambda t: len(t.split()) > 60)[:80]
    zh = _distinct(corpus, "alpaca-demo/data/alpaca_zh_demo.json", lambda t: len(t) > 150)[:60]
    questions = [json.loads(line)["text"] for line in (corpus / "gpt4llm-eval/plots/data/vicuna_question_80.jsonl").read_text().splitlines()[:4]]
    en_rows = [
        *en[:60],
        "this element is a string, not an instruction",
        *({**r, "output": r["output"].upper()} for r in en[:6]),  # the same record but for case: exact duplicates
        *({**r, "output": edit_words(r["output"], rng)} for r in en[10:22]),  # near duplicates
        *({"instruction": f"Please help with this. {q} Answer in detail.", "input": "", "output": en[60 + i]["output"]}
          for i, q in enumerate(questions)),  # benchmark items hidden in training data
    ]
    zh_rows = [*zh[:50], *({**r, "output": "   "} for r in zh[50:53]),  # empty answers
               *({"instruction": r["instruction"], "input": "", "output": en[70 + i]["output"]} for i, r in enumerate(zh[53:58]))]  # English answers
    (root / "en.json").write_text(json.dumps(en_rows, ensure_ascii=False), encoding="utf-8")
    (root / "zh.json").write_text(json.dumps(zh_rows, ensure_ascii=False), encoding="utf-8")
    (root / "r.yaml").write_text(textwrap.dedent(RECIPE).format(corpus=corpus), encoding="utf-8")


def build(root: Path, out: Path):
    return run_build(BuildOptions(recipe=str(root / "r.yaml"), data_dir=str(root), output=str(out), workers=1))


@pytest.fixture(scope="module")
def audited(corpus, tmp_path_factory):
    root = tmp_path_factory.mktemp("audit")
    write_corpus(corpus, root)
    return build(root, root / "first" / "out"), root


def rejected_by_reason(out: Path) -> dict[tuple[str, str], list[dict]]:
    rows = defaultdict(list)
    for path in sorted((out / "rejected").glob("*/*.parquet")):
        for row in pq.read_table(path).to_pylist():
            rows[(row["stage"], row["reason"])].append(row)
    return rows


def sections(page: str) -> dict[str, str]:
    """The page's sections by their id."""
    return {m.group(1): m.group(2) for m in re.finditer(r'<section id="([^"]+)">(.*?)</section>', page, re.S)}


def test_every_reason_is_named_with_records_it_removed(audited):
    result, _ = audited
    out = result.out
    page = (out / "report" / "report.html").read_text(encoding="utf-8")
    found = sections(page)
    removed = rejected_by_reason(out)
    reasons = {(s["name"], r) for s in result.stats["stages"] for r, n in s["rejected"].items() if n}
    assert reasons >= PLANTED  # the faults planted are caught, so the report has them to show
    for stage, reason in reasons:
        section = found[reason_anchor(stage, reason)]
        assert f"{stage}: {reason}" in section
        shown = [row for row in removed[(stage, reason)] if row["id"] in section]
        assert shown, f"no record removed by {stage}: {reason} is shown"
        assert f"python -m datakit.why out {shown[0]['id']}" in section
        assert json.loads(shown[0]["meta"]).get("file", "") in section  # where it came from


def test_what_the_stage_found_is_shown(audited):
    result, _ = audited
    out = result.out
    found = sections((out / "report" / "report.html").read_text(encoding="utf-8"))
    removed = rejected_by_reason(out)
    lid = found[reason_anchor("lid", "lid_mismatch")]
    for row in removed[("lid", "lid_mismatch")]:
        if row["id"] in lid:  # the label the model read and its probability
            label, prob, _ = json.loads(row["scores"])["lid"]["answer"]
            assert f"read as {label} (p={prob:.3f})" in lid
    for stage, reason in (("exact_dedup", "exact_duplicate"), ("near_dedup", "near_duplicate")):
        section = found[reason_anchor(stage, reason)]
        originals = [m for row in removed[(stage, reason)] if row["id"] in section
                     for m in (json.loads(row["meta"]).get("duplicate_of") or json.loads(row["meta"]).get("near_duplicate_of"),)]
        assert originals and all(f"duplicate of <code>{m}</code>" in section for m in originals)
    assert "not_an_object" in found[reason_anchor("read", "not_an_object")]


def test_kept_examples_per_language_and_the_mix_without_target(audited):
    result, _ = audited
    out = result.out
    kept = sections((out / "report" / KEPT_PAGE).read_text(encoding="utf-8"))
    for path in sorted((out / "data").glob("*/*.parquet")):
        ids = pq.read_table(path, columns=["id"]).column("id").to_pylist()
        assert any(i in kept[language_anchor(path.parent.name)] for i in ids)
    page = (out / "report" / "report.html").read_text(encoding="utf-8")
    card = (out / "README.md").read_text(encoding="utf-8")
    for text in (page, card):
        assert "No target size was set" in text
    assert "target share" not in card


def test_why_points_to_the_report(audited, capsys):
    result, _ = audited
    row = rejected_by_reason(result.out)[("lid", "lid_mismatch")][0]
    assert why_main([str(result.out), row["id"]]) == 0
    printed = capsys.readouterr().out
    assert f"report.html#{reason_anchor('lid', 'lid_mismatch')}" in printed


def test_same_build_same_report_bytes(audited):
    result, root = audited
    again = build(root, root / "second" / "out")
    first, second = tree_bytes(result.out, "report"), tree_bytes(again.out, "report")
    assert sorted(first) == sorted(second) and len(first) >= 6
    assert [p for p in first if first[p] != second[p]] == []
