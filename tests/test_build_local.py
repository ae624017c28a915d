"""The local recipe over the real corpus, sampled: the contract, determinism, resume."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import datasets
from contract import check_contract, tree_bytes

from datakit.build import BuildOptions, run_build

ROOT = Path(__file__).resolve().parents[1]


def test_sample_build_meets_the_contract(local_sample_build, corpus):
    out = local_sample_build.out
    rows = check_contract(out)
    langs = {r["lang"] for r in rows}
    assert len(langs) > 100
    assert {r["group"] for r in rows} == {"zh", "en", "cross_lingual"}
    # NTREX gives all four hub directions for its languages; UDHR whole articles.
    ntrex = [r for r in rows if r["source"] == "ntrex128" and r["task"] == "translation"]
    directions = Counter((r["src_lang"] in ("eng_Latn", "zho_Hans"), r["tgt_lang"]) for r in ntrex if r["lang"] == "swh_Latn")
    assert set(directions) == {(False, "eng_Latn"), (False, "zho_Hans"), (True, "swh_Latn")}
    assert Counter(r["src_lang"] for r in ntrex if r["lang"] == "swh_Latn") == {"swh_Latn": 16, "eng_Latn": 8, "zho_Hans": 8}
    assert len({r["lang"] for r in ntrex}) >= 115
    udhr = [r for r in rows if r["source"] == "udhr"]
    assert all(json.loads(r["meta"])["unit"] == "document" for r in udhr)
    # Translation answers are the reference text, in the target language's own file.
    sample = next(r for r in ntrex if r["tgt_lang"] == "swh_Latn")
    line = json.loads(sample["meta"])["line"]
    ref = corpus / "ntrex128/NTREX-128/newstest2019-ref.swa.txt"
    assert sample["messages"][-1]["content"] == ref.read_text(encoding="utf-8").splitlines()[line - 1].strip()


def test_load_dataset_reads_the_folder_and_a_language_config(local_sample_build):
    out = str(local_sample_build.out)
    ds = datasets.load_dataset(out)
    assert sum(split.num_rows for split in ds.values()) == local_sample_build.manifest["rows"]
    sw = datasets.load_dataset(out, "swh_Latn")
    assert set(sw["train"]["lang"]) == {"swh_Latn"}
    card = (local_sample_build.out / "README.md").read_text(encoding="utf-8")
    assert card.startswith("---\n") and "config_name: swh_Latn" in card


def test_worker_count_does_not_change_a_byte(local_sample_build, corpus, tmp_path):
    out = tmp_path / "two-workers"
    run_build(BuildOptions(recipe=str(ROOT / "pipelines" / "local.yaml"), data_dir=str(corpus), output=str(out), sample=8, workers=2))
    one = tree_bytes(local_sample_build.out, "data", "rejected")
    two = tree_bytes(out, "data", "rejected")
    assert one.keys() == two.keys()
    assert [k for k in one if one[k] != two[k]] == []
    assert (local_sample_build.out / "stats.json").read_bytes() == (out / "stats.json").read_bytes()


def test_rerun_reuses_finished_tasks_and_a_changed_setting_reruns_only_later_stages(corpus, tmp_path):
    out = tmp_path / "out"
    opts = dict(recipe=str(ROOT / "pipelines" / "local.yaml"), data_dir=str(corpus), output=str(out), sample=3, workers=1, langs="sw,yo")
    first = run_build(BuildOptions(**opts))
    markers = {p: p.stat().st_mtime_ns for p in (out / ".datakit" / "prepare").rglob("*.done.json")}
    data = tree_bytes(out, "data")
    again = run_build(BuildOptions(**opts))
    assert {p: p.stat().st_mtime_ns for p in (out / ".datakit" / "prepare").rglob("*.done.json")} == markers
    assert tree_bytes(out, "data") == data and again.manifest["rows"] == first.manifest["rows"]
    # A balance setting changes the output but not the prepared records.
    smaller = run_build(BuildOptions(**opts, overrides={"balance.target_size": 40}))
    assert {p: p.stat().st_mtime_ns for p in (out / ".datakit" / "prepare").rglob("*.done.json")} == markers
    assert smaller.manifest["rows"] == 40
    check_contract(out)


def test_langs_restricts_to_the_selection_plus_hubs(corpus, tmp_path):
    out = tmp_path / "out"
    result = run_build(BuildOptions(recipe=str(ROOT / "pipelines" / "local.yaml"), data_dir=str(corpus), output=str(out),
                                    sample=2, workers=1, langs="swh_Latn,african"))
    rows = check_contract(out)
    from datakit.languages import resolve_langs

    assert {r["lang"] for r in rows} <= resolve_langs("swh_Latn,african")
    assert {"swh_Latn", "yor_Latn", "eng_Latn", "zho_Hans"} <= {r["lang"] for r in rows}
    assert result.manifest["build"]["langs"] == sorted(resolve_langs("swh_Latn,african"))
