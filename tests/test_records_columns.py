"""Construction's and the keep step's shortcuts give what the long way gives, on real NTREX records:
Arrow columns built per batch equal the rows `to_row` makes, a frame cut once renders like the
template, work files do not depend on how records were batched, and the seeded draws are the
same in every process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pytest
import regex

from datakit import workfile
from datakit.construct import Rejected, build
from datakit.construct import templates as T
from datakit.construct.builders import _blank
from datakit.construct.interactive import _WORD, stands_alone
from datakit.corpus_steps.exact_dedup import dedup_key
from datakit.corpus_steps.near_dedup import minhash_params
from datakit.recipe import load_recipe
from datakit.records import content_texts, record_id, seeded_rng, to_row, to_table
from datakit.schema import record_schema, rejected_schema
from datakit.sources import adapter_for
from datakit.sources.base import RawRow, ReadContext
from datakit.store import StageDir, open_piece, read_piece, take_rows
from datakit.text import normalise_text
from datakit.workfile import TaskWriters, read_keys

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def records(corpus):
    """Translation and interactive records of the first 3 NTREX lines of every language, as
    construction makes them (hidden fields, dict meta), plus the candidates it rejected."""
    recipe = load_recipe(ROOT / "pipelines" / "local.yaml")
    source = next(s for s in recipe.sources if s.name == "ntrex128")
    ctx = ReadContext(corpus, None, 3, None, tuple(recipe.pivots))
    adapter = adapter_for(source)
    built = [b for part in adapter.partitions(source, ctx) for item in adapter.read(source, part, ctx)
             if isinstance(item, RawRow) for b in build(item, source, recipe)]
    kept = [b for b in built if not isinstance(b, Rejected)]
    for i, r in enumerate(kept):  # as the stages leave them: some scores, ids filled in for some
        r["scores"] = {"quality": {"length_ratio": round(1 + i / 1000, 3)}} if i % 3 else {}
        if i % 2:
            r["id"] = record_id(r)
    return kept


def test_columns_per_batch_equal_the_rows(records):
    assert len({r["lang"] for r in records}) > 100 and any(r["task"] == "interactive_translation" for r in records)
    expected = pa.Table.from_pylist([to_row(r) for r in records], schema=record_schema())
    assert to_table(records, record_schema()).equals(expected)
    reasons = [f"reason{i % 4}" for i in range(len(records))]
    with_extra = to_table(records, rejected_schema(), {"stage": ["quality"] * len(records), "reason": reasons})
    assert with_extra.select([f.name for f in record_schema()]).cast(record_schema()).equals(expected)
    assert with_extra.column("reason").to_pylist() == reasons


def test_a_cut_frame_renders_like_the_template(records):
    pairs = sorted({(r["src_lang"], r["tgt_lang"]) for r in records})
    texts = ["Ein Satz.", "", "a {text} with braces", "第二句。"]
    for template in T.TRANSLATION:
        for src, tgt in pairs[:: max(1, len(pairs) // 40)]:
            for text in texts:
                want = template.render(**T.frame_names(src, tgt, template.lang), text=text)
                assert T.frame_text(template, src, tgt, template.lang, text) == want


def test_blank_check_agrees_with_normalising(records):
    """Construction answers "is this text empty once normalised" without normalising most texts:
    the answer must be the long way's, on every real text and on texts made of what normalising
    drops (controls, the BOM, separators, spaces of every kind, a lone combining mark)."""
    texts = {t for r in records for t in content_texts(r)}
    drops = ["\x00", "\x07", "\x85", "\ufeff", "\u2028", "\u2029", "\u00a0", "\u3000", "\u2000", "\r\n", "\t", " "]
    texts |= {a + b for a in drops for b in drops} | {d + "\u0301" for d in drops} | {d + "x" for d in drops} | {""}
    assert len(texts) > 400 and any(not normalise_text(t, "NFC") for t in texts)
    assert [t for t in texts if _blank(t) != (not normalise_text(t, "NFC"))] == []


def test_whole_word_check_agrees_with_the_pattern(records):
    """An interactive request for words is checked without a pattern per word: it must find what
    `(?<!\\p{L})word(?!\\p{L})` finds, for every word of the real references, in the references
    they come from and in their neighbours (where many occur only inside longer words)."""
    answers = [r["messages"][1]["content"] for r in records if r["task"] == "translation"][:400]
    checked = found = 0
    for i, answer in enumerate(answers):
        for other in (answer, answers[i - 1], answer.lower()):
            for word in set(_WORD.findall(answer)):
                want = regex.search(rf"(?<!\p{{L}}){regex.escape(word)}(?!\p{{L}})", other) is not None
                assert stands_alone(word, other) == want, (word, other)
                checked, found = checked + 1, found + want
    assert checked > 3000 and 0 < found < checked


def _write(batches: list[list[dict]], folder: Path) -> TaskWriters:
    writers = TaskWriters(StageDir(folder, "prepare", "fp"), "task", minhash_params(0.8, 64))
    for batch in batches:
        writers.keep([dict(r) for r in batch])
    writers.close()
    return writers


def test_work_files_depend_on_the_records_not_the_batches(records, tmp_path, monkeypatch):
    monkeypatch.setattr(workfile, "ROW_GROUP", 5)  # a dozen records a language: several row groups each
    monkeypatch.setattr(workfile, "SPLIT_ROWS", 150)  # batches split by language every other batch
    whole = _write([records], tmp_path / "whole")
    batched = _write([records[i : i + 97] for i in range(0, len(records), 97)], tmp_path / "batched")
    assert whole.kept_paths.keys() == batched.kept_paths.keys() and len(whole.kept_paths) > 100
    assert whole.rows == batched.rows and sum(whole.rows.values()) == len(records)
    # One work file; each language's rows a piece of it: the same rows in the same row groups
    # however the records were batched (where its full row groups fall in the file may differ).
    assert len({open_piece(ref)[0].metadata.num_rows for ref in whole.kept_paths.values()}) == 1
    assert open_piece(next(iter(whole.kept_paths.values())))[0].metadata.num_rows == len(records)
    for lang, ref in whole.kept_paths.items():
        table = read_piece(ref)
        assert table.equals(read_piece(batched.kept_paths[lang])), lang
        want = [r for r in records if r["lang"] == lang]
        assert table.column("id").to_pylist() == [r["id"] or record_id(r) for r in want]
        assert table.column("_dkey").to_pylist() == [dedup_key(r) for r in want]
        picked = [len(want) - 1, 0, len(want) // 2]  # rows of a piece by number, across its parts
        assert take_rows(ref, picked, ["id"]).column("id").to_pylist() == [table.column("id")[i].as_py() for i in picked]
        for writers in (whole, batched):  # full row groups of 5 as they came, then the rest in shared row groups
            pf, parts = open_piece(writers.kept_paths[lang])
            full = [(g, first, end) for g, first, end in parts if end - first == 5 == pf.metadata.row_group(g).num_rows]
            assert len(full) >= len(want) // 5 and sum(end - first for _, first, end in parts) == len(want)
    # Every language's last rows share row groups: a file of a hundred languages is not a hundred small row groups.
    meta = open_piece(next(iter(whole.kept_paths.values())))[0].metadata
    assert meta.num_row_groups == sum(n // 5 for n in whole.rows.values()) + -(-sum(n % 5 for n in whole.rows.values()) // 5)
    keys = read_keys([whole.kept_paths[lang] for lang in sorted(whole.kept_paths)])
    assert keys.num_rows == len(records)
    assert keys.column("id").to_pylist() == [r["id"] or record_id(r) for lang in sorted(whole.kept_paths) for r in records if r["lang"] == lang]


def test_seeded_draws_are_the_same_in_another_process():
    key = [7, "ntrex128", {"file": "newstest2019-ref.swa.txt", "line": 447}, "swh_Latn", "eng_Latn"]
    code = ("import json; from datakit.records import seeded_rng\n"
            f"d = seeded_rng(*json.loads({json.dumps(key)!r}))\n"
            "items = list(range(30)); d.shuffle(items)\n"
            "print(json.dumps([[d.randrange(1000) for _ in range(20)], d.random(), items]))")
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": "123"})
    d = seeded_rng(*key)
    items = list(range(30))
    d.shuffle(items)
    assert json.loads(other.stdout) == [[d.randrange(1000) for _ in range(20)], d.random(), items]
    assert sorted(items) == list(range(30)) and items != list(range(30))


def test_seeded_draws_spread_evenly_and_differ_by_key():
    firsts = Counter(seeded_rng(7, "ntrex128", {"line": i}, "x").randrange(6) for i in range(6000))
    assert set(firsts) == set(range(6)) and max(firsts.values()) - min(firsts.values()) < 200  # ~1000 each
    # Long streams (past one digest's eight draws) stay in range and uniform in [0, 1).
    d = seeded_rng(7, "long")
    values = [d.random() for _ in range(4000)]
    assert 0 <= min(values) < 0.01 and 0.99 < max(values) < 1 and abs(sum(values) / len(values) - 0.5) < 0.02
    assert seeded_rng(7, "a").randrange(1 << 30) != seeded_rng(8, "a").randrange(1 << 30)
    with pytest.raises(ValueError):
        seeded_rng(7, "a").randrange(0)
