"""Planted faults: every bad row is a rejected record with its reason; nothing crashes, nothing is lost."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from contract import check_contract

from datakit.build import BuildOptions, run_build
from datakit.errors import SourceError

ROOT = Path(__file__).resolve().parents[1]

GOOD = {"instruction": "Name a primary colour.", "input": "", "output": "Red is a primary colour."}


def faulty_data(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    (data / "par").mkdir(parents=True)
    lines = [
        b"\xef\xbb\xbf" + json.dumps(GOOD).encode() + b"\r\n",                       # BOM + CRLF: fine
        b'{"instruction": "broken", "output": \n',                                    # malformed JSON
        b'{"instruction": "caf\xe9", "output": "latin-1 bytes"}\n',                    # invalid UTF-8
        json.dumps({"instruction": "No answer here"}).encode() + b"\n",              # missing field
        json.dumps({"instruction": ["a", "list"], "output": "x"}).encode() + b"\n",  # wrong type
        json.dumps({"instruction": "Empty answer", "output": "   "}).encode() + b"\n",  # empty text
        b'["not", "an", "object"]\n',                                                  # not an object
        json.dumps({"instruction": "Say hi.", "input": "to Ana", "output": "Hi, Ana!\u0007"}).encode() + b"\r\n",
    ]
    (data / "inst.jsonl").write_bytes(b"".join(lines))
    en = ["The cat sleeps.", "It is raining today.", "We bought fresh bread.", "The train is late."]
    zh = ["猫在睡觉。", "今天在下雨。", "我们买了新鲜的面包。", "火车晚点了。"]
    sw = ["Paka analala.", "Leo kunanyesha mvua.", "Tulinunua mkate mpya.", ""]     # an empty line
    yo = ["Ologbo n sun.", "Ojo n ro loni.", "A ra buredi tuntun."]                 # one line short
    for code, text in {"eng": en, "zho": zh, "swa": sw, "yor": yo, "qqq": en}.items():
        (data / "par" / f"text.{code}.txt").write_text("\n".join(text) + "\n", encoding="utf-8")
    return data


RECIPE = """
name: faults
seed: 7
sources:
  - name: inst
    format: alpaca
    path: inst.jsonl
    lang: en
    license: MIT
  - name: par
    format: bitext
    path: par
    files: 'text\\.(?P<lang>[a-z]+)\\.txt'
    license: CC-BY-4.0
"""


@pytest.fixture
def faulty(tmp_path):
    data = faulty_data(tmp_path)
    recipe = tmp_path / "faults.yaml"
    recipe.write_text(textwrap.dedent(RECIPE), encoding="utf-8")
    return data, recipe


def rejected(out: Path) -> list[dict]:
    rows = []
    for f in sorted((out / "rejected").rglob("*.parquet")):
        rows += pq.read_table(f).to_pylist()
    return rows


def test_every_fault_is_a_rejected_record_with_file_line_and_reason(faulty, tmp_path):
    data, recipe = faulty
    out = tmp_path / "out"
    result = run_build(BuildOptions(recipe=str(recipe), data_dir=str(data), output=str(out), workers=1))
    rows = check_contract(out)
    reasons = {(r["stage"], r["reason"], json.loads(r["meta"]).get("line")) for r in rejected(out) if r["source"] == "inst"}
    assert reasons == {("read", "malformed_json", 2), ("read", "invalid_utf8", 3), ("read", "missing_field", 4),
                       ("read", "wrong_type", 5), ("normalise", "empty_text", 6), ("read", "not_an_object", 7)}
    general = sorted(r["messages"][0]["content"] for r in rows if r["source"] == "inst")
    assert general == ["Name a primary colour.", "Say hi.\n\nto Ana"]
    assert all("\r" not in m["content"] and "\ufeff" not in m["content"] and "\u0007" not in m["content"] for r in rows for m in r["messages"])

    par = [r for r in rejected(out) if r["source"] == "par"]
    by_reason = {}
    for r in par:
        by_reason.setdefault(r["reason"], []).append(json.loads(r["meta"]))
    assert {m["line"] for m in by_reason["misaligned"]} == {1, 2, 3}          # yor: every line, never shifted pairs
    assert "text.eng.txt has 4 lines" in by_reason["misaligned"][0]["detail"]
    assert {m["line"] for m in by_reason["unknown_language"]} == {1, 2, 3, 4}  # qqq
    assert len(by_reason["empty_text"]) == 4                                    # swa line 4, four directions
    assert {r["lang"] for r in rows if r["source"] == "par"} == {"swh_Latn", "zho_Hans", "eng_Latn"}
    read = result.stats["stages"][0]
    assert read["in"] == 8 + 4 + 4 + 3 + 4  # inst lines, en-zh pair, swa, yor, qqq


def test_strict_stops_at_the_first_bad_row_naming_it(faulty, tmp_path):
    data, recipe = faulty
    (data / "par" / "text.yor.txt").unlink()  # misaligned: --strict refuses it while planning (tests/test_faults_plan.py)
    with pytest.raises(SourceError, match=r"inst.jsonl, line 2: malformed_json"):
        run_build(BuildOptions(recipe=str(recipe), data_dir=str(data), output=str(tmp_path / "out"), workers=1, strict=True))


def run_cli(*args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    import os

    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "datakit.build", *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)


def test_cli_broken_recipe_names_the_key_without_a_traceback(tmp_path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text(textwrap.dedent(RECIPE).replace("    license: MIT", "    license: MIT\n    colour: red"), encoding="utf-8")
    proc = run_cli("--recipe", str(recipe), "--output", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert "sources[0] (inst).colour: unknown key" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_missing_source_file_is_named(faulty, tmp_path):
    data, recipe = faulty
    (data / "inst.jsonl").unlink()
    proc = run_cli("--recipe", str(recipe), "--data-dir", str(data), "--output", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert "source 'inst'" in proc.stderr and "inst.jsonl" in proc.stderr and "Traceback" not in proc.stderr


def test_cli_full_recipe_offline_stops_at_once_naming_the_source(tmp_path):
    proc = run_cli("--langs", "all", "--output", str(tmp_path / "out"), env_extra={"HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 2
    assert "source 'belle-2m'" in proc.stderr and "BelleGroup/train_2M_CN" in proc.stderr and "--mirror" in proc.stderr
    assert not (tmp_path / "out" / "data").exists()


def test_cli_help_lists_the_language_groups():
    proc = run_cli("--help")
    assert proc.returncode == 0
    for group in ("african", "flores200", "hubs"):
        assert group in proc.stdout


def test_output_folder_of_someone_else_is_not_touched(faulty, tmp_path):
    data, recipe = faulty
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    proc = run_cli("--recipe", str(recipe), "--data-dir", str(data), "--output", str(out))
    assert proc.returncode == 2 and "not empty" in proc.stderr
    assert (out / "notes.txt").read_text() == "keep me"


def test_a_new_parallel_layout_is_added_by_recipe_only(corpus, tmp_path):
    """A layout ../shared does not have: one TSV per language pair, columns named by language code."""
    eng = (corpus / "ntrex128/NTREX-128/newstest2019-src.eng.txt").read_text(encoding="utf-8").splitlines()[:20]
    fra = (corpus / "ntrex128/NTREX-128/newstest2019-ref.fra.txt").read_text(encoding="utf-8").splitlines()[:20]
    zho = (corpus / "ntrex128/NTREX-128/newstest2019-ref.zho-CN.txt").read_text(encoding="utf-8").splitlines()[:20]
    (tmp_path / "pairs").mkdir()
    (tmp_path / "pairs" / "en-fr.tsv").write_text("".join(f"{a}\t{b}\n" for a, b in zip(eng, fra, strict=True)), encoding="utf-8")
    (tmp_path / "pairs" / "fr-zh.tsv").write_text("".join(f"{a}\t{b}\n" for a, b in zip(fra, zho, strict=True)), encoding="utf-8")
    recipe = tmp_path / "pairs.yaml"
    recipe.write_text(textwrap.dedent("""
        name: tsv-pairs
        sources:
          - {name: en-fr, format: bitext, path: pairs/en-fr.tsv, columns: [en, fr], header: false, license: CC-BY-SA-4.0}
          - {name: fr-zh, format: bitext, path: pairs/fr-zh.tsv, columns: [fr, zh], header: false, license: CC-BY-SA-4.0}
    """), encoding="utf-8")
    run_build(BuildOptions(recipe=str(recipe), data_dir=str(tmp_path), output=str(tmp_path / "out"), workers=1))
    rows = check_contract(tmp_path / "out")
    pairs = {(r["src_lang"], r["tgt_lang"]) for r in rows}
    assert {("eng_Latn", "fra_Latn"), ("fra_Latn", "eng_Latn"), ("fra_Latn", "zho_Hans"), ("zho_Hans", "fra_Latn")} <= pairs
    assert all(r["lang"] == "fra_Latn" for r in rows)
