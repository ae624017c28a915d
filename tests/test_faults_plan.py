"""Faults a new user hits before a single row is read: the output folder, command-line values, file
layouts. Each is planted in a small copy of ../shared/corpus; nothing is lost without a warning,
nothing of the user's is deleted, and bad values stop with one line, never a traceback."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from contract import check_contract
from test_faults import faulty, run_cli  # noqa: F401  (faulty is a fixture)

from datakit.build import BuildOptions, run_build
from datakit.errors import DatakitError, SourceError

LINES = 12
NTREX = "ntrex128/NTREX-128"
FILES = {"eng": "newstest2019-src.eng.txt", "zho": "newstest2019-ref.zho-CN.txt", "fra": "newstest2019-ref.fra.txt",
         "deu": "newstest2019-ref.deu.txt"}


def ntrex_lines(corpus: Path, code: str, start: int = 0) -> list[str]:
    return (corpus / NTREX / FILES[code]).read_text(encoding="utf-8").splitlines()[start : start + LINES]


def mini_ntrex(corpus: Path, tmp_path: Path) -> tuple[Path, Path]:
    """The first lines of four NTREX files in NTREX's own layout, and a recipe reading them."""
    folder = tmp_path / "data" / "ntrex"
    folder.mkdir(parents=True)
    for code, name in FILES.items():
        (folder / name).write_text("\n".join(ntrex_lines(corpus, code)) + "\n", encoding="utf-8")
    recipe = tmp_path / "ntrex.yaml"
    recipe.write_text(textwrap.dedent(r"""
        name: ntrex-mini
        seed: 3
        sources:
          - name: ntrex
            format: bitext
            path: ntrex
            files: 'newstest2019-(?:src|ref)\.(?P<lang>[a-z]{3}(?:-[A-Z]+)?)\.txt'
            license: CC-BY-SA-4.0
    """), encoding="utf-8")
    return tmp_path / "data", recipe


def build(data: Path, recipe: Path, out: Path, **kw):
    return run_build(BuildOptions(recipe=str(recipe), data_dir=str(data), output=str(out), workers=1, **kw))


def warnings_of(out: Path) -> list[dict]:
    return json.loads((out / "stats.json").read_text())["warnings"]


# ------------------------------------------------------------------ the user's files


def test_overwrite_refuses_a_folder_datakit_did_not_write(faulty, tmp_path):  # noqa: F811
    data, recipe = faulty
    out = tmp_path / "mine"
    (out / "data").mkdir(parents=True)
    (out / "data" / "important.csv").write_text("a,b\n1,2\n")
    (out / "README.md").write_text("my notes")
    proc = run_cli("--recipe", str(recipe), "--data-dir", str(data), "--output", str(out), "--overwrite")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "not written by datakit" in proc.stderr and "--overwrite" in proc.stderr
    assert (out / "data" / "important.csv").read_text() == "a,b\n1,2\n" and (out / "README.md").read_text() == "my notes"
    assert sorted(p.name for p in out.rglob("*")) == ["README.md", "data", "important.csv"]


def test_overwrite_and_rebuilds_remove_only_what_datakit_wrote(faulty, tmp_path):  # noqa: F811
    data, recipe = faulty
    out = tmp_path / "out"
    build(data, recipe, out)
    first = {e["path"] for e in json.loads((out / "manifest.json").read_text())["files"]}
    assert any(p.startswith("rejected/") for p in first) and any(p.startswith("data/") for p in first)
    mine = [out / "data" / "important.csv", out / "rejected" / "my-notes.txt", out / "notes.txt", out / "report" / "mine.txt"]
    for p in mine:
        p.write_text(f"mine: {p.name}")
    build(data, recipe, out, overwrite=True, langs="sw")  # fewer languages: yor's shards go
    for p in mine:
        assert p.read_text() == f"mine: {p.name}"
    manifest = {e["path"] for e in json.loads((out / "manifest.json").read_text())["files"]}
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() and ".datakit" not in p.parts}
    assert on_disk == manifest | {"manifest.json"} | {p.relative_to(out).as_posix() for p in mine}
    assert first - manifest, "the narrower rebuild should have left out some of the first build's files"


# ------------------------------------------------------------------ command-line values


@pytest.mark.parametrize(("flag", "value", "says"), [
    ("--sample", "0", "--sample must be a positive number"),
    ("--sample", "-5", "--sample must be a positive number"),
    ("--workers", "-3", "--workers must be at least 1"),
    ("--langs", ",", "--langs is empty"),
])
def test_cli_bad_values_stop_with_one_line(faulty, tmp_path, flag, value, says):  # noqa: F811
    data, recipe = faulty
    out = tmp_path / "out"
    proc = run_cli("--recipe", str(recipe), "--data-dir", str(data), "--output", str(out), f"{flag}={value}")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert says in proc.stderr and value in proc.stderr.replace(says, "")
    assert not (out / "data").exists()


def test_langs_without_data_are_named(faulty, tmp_path):  # noqa: F811
    data, recipe = faulty
    with pytest.raises(DatakitError, match=r"--langs: no source has data for fra_Latn"):
        build(data, recipe, tmp_path / "a", langs="fr")
    out = tmp_path / "b"
    build(data, recipe, out, langs="sw,fr")
    [w] = [w for w in warnings_of(out) if w["file"] == "--langs"]
    assert "fra_Latn" in w["detail"] and "swh_Latn" not in w["detail"]
    assert "fra_Latn" in (out / "README.md").read_text().split("## Warnings")[1]


# ------------------------------------------------------------------ layouts that contribute nothing


def test_empty_files_and_a_folder_in_place_of_a_file_are_named(corpus, tmp_path):
    data, recipe = mini_ntrex(corpus, tmp_path)
    folder = data / "ntrex"
    (folder / FILES["deu"]).unlink()
    (folder / FILES["deu"]).mkdir()                   # a folder where German's file should be
    (folder / "newstest2019-ref.ita.txt").write_bytes(b"")  # an empty file
    (data / "empty.json").write_bytes(b"\n")           # an empty JSON source
    with recipe.open("a", encoding="utf-8") as f:
        f.write("  - {name: empty, format: alpaca, path: empty.json, lang: en, license: MIT}\n")
    out = tmp_path / "out"
    build(data, recipe, out)
    check_contract(out)
    found = {(w["source"], w["file"], w["reason"]) for w in warnings_of(out)}
    assert {("ntrex", "newstest2019-ref.deu.txt", "folder_not_file"), ("ntrex", "newstest2019-ref.ita.txt", "empty_file"),
            ("empty", "empty.json", "empty_file"), ("empty", "empty.json", "no_records")} <= found
    card = (out / "README.md").read_text()
    assert "newstest2019-ref.deu.txt" in card and "newstest2019-ref.ita.txt" in card
    with pytest.raises(SourceError, match=r"--strict: source 'ntrex': newstest2019-ref.deu.txt: .*folder"):
        build(data, recipe, tmp_path / "strict", strict=True)


def test_a_short_language_file_is_named_and_a_short_hub_file_stops_the_build(corpus, tmp_path):
    data, recipe = mini_ntrex(corpus, tmp_path)
    fra = data / "ntrex" / FILES["fra"]
    fra.write_text("\n".join(ntrex_lines(corpus, "fra")[:-1]) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    result = build(data, recipe, out)
    [w] = [w for w in warnings_of(out) if w["reason"] == "misaligned"]
    assert w["file"] == f"ntrex/{FILES['fra']}" and f"{LINES - 1} lines" in w["detail"] and FILES["eng"] in w["detail"]
    assert result.stats["stages"][0]["rejected"]["misaligned"] == LINES - 1  # nothing lost: every French row rejected
    assert {r["lang"] for r in check_contract(out)} >= {"deu_Latn"}

    fra.write_text("\n".join(ntrex_lines(corpus, "fra")) + "\n", encoding="utf-8")
    zho = data / "ntrex" / FILES["zho"]
    zho.write_text("\n".join(ntrex_lines(corpus, "zho")[1:]) + "\n", encoding="utf-8")
    with pytest.raises(SourceError, match=rf"hub file ntrex/{FILES['zho']} \({LINES - 1} lines\) does not line up"):
        build(data, recipe, tmp_path / "out2")


# ------------------------------------------------------------------ one file per language pair (OPUS Moses)


def test_pairwise_files_are_refused_unless_the_recipe_names_the_pair(corpus, tmp_path):
    """fra-eng and deu-eng with different English lines: paired by file name, never with each other's English."""
    folder = tmp_path / "data" / "moses"
    folder.mkdir(parents=True)
    pairs = {"fra": 0, "deu": LINES}  # each pair its own stretch of NTREX, so a wrong English line shows
    expected: dict[str, str] = {}
    for code, start in pairs.items():
        eng, other = ntrex_lines(corpus, "eng", start), ntrex_lines(corpus, code, start)
        (folder / f"corpus.{code}-eng.eng").write_text("\n".join(eng) + "\n", encoding="utf-8")
        (folder / f"corpus.{code}-eng.{code}").write_text("\n".join(other) + "\n", encoding="utf-8")
        expected.update(zip(other, eng, strict=True))
    recipe = tmp_path / "moses.yaml"
    entry = "{name: moses, format: bitext, path: moses, files: '%s', license: CC-BY-4.0}"
    recipe.write_text("name: moses\nsources:\n  - " + entry % r"corpus\.[a-z]+-[a-z]+\.(?P<lang>[a-z]+)" + "\n", encoding="utf-8")
    with pytest.raises(SourceError, match=r"eng_Latn has 2 files .*corpus\.deu-eng\.eng, moses/corpus\.fra-eng\.eng.*\(\?P<pair>"):
        build(tmp_path / "data", recipe, tmp_path / "refused")

    recipe.write_text("name: moses\nsources:\n  - " + entry % r"corpus\.(?P<pair>[a-z]+-[a-z]+)\.(?P<lang>[a-z]+)" + "\n", encoding="utf-8")
    out = tmp_path / "out"
    build(tmp_path / "data", recipe, out)
    rows = [r for r in check_contract(out) if r["task"] == "translation"]
    assert {r["lang"] for r in rows} == {"fra_Latn", "deu_Latn"}
    english = {e: x for x, e in expected.items()}
    for r in rows:
        user, answer = r["messages"][-2]["content"], r["messages"][-1]["content"]
        source = english[answer] if r["tgt_lang"] == "eng_Latn" else expected[answer]
        assert source in user, (r["src_lang"], r["tgt_lang"], answer)


# ------------------------------------------------------------------ wrong JSON types (XQuAD)


def test_xquad_with_wrong_types_rejects_those_questions(corpus, tmp_path):
    folder = tmp_path / "data" / "xquad"
    folder.mkdir(parents=True)
    for code in ("en", "zh", "de"):
        doc = json.loads((corpus / "xquad" / f"xquad.{code}.json").read_text(encoding="utf-8"))
        doc["data"] = doc["data"][:1]
        para = doc["data"][0]["paragraphs"]
        if code == "de":
            para[0]["qas"][0]["question"] = 42                  # a number as question
            para[0]["qas"][1]["answers"][0]["text"] = 7         # a number as answer text
            para[1]["context"] = ["a", "list"]                  # a list as context
        (folder / f"xquad.{code}.json").write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    recipe = tmp_path / "xquad.yaml"
    recipe.write_text("name: xquad\nsources:\n  - {name: xquad, format: squad, path: xquad, "
                      "files: 'xquad\\.(?P<lang>[a-z]{2})\\.json', license: CC-BY-SA-4.0}\n", encoding="utf-8")
    out = tmp_path / "out"
    build(tmp_path / "data", recipe, out, langs="de")
    check_contract(out)
    bad = [r for f in sorted((out / "rejected" / "read").glob("*.parquet")) for r in pq.read_table(f).to_pylist()]
    details = sorted(json.loads(r["meta"])["detail"] for r in bad if r["reason"] == "wrong_type")
    assert any("question is int" in d for d in details) and any("answer text is int" in d for d in details)
    assert any("context is list" in d for d in details)
    assert all(d.startswith("data[0].paragraphs[") for d in details)
