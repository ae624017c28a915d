"""JSON arrays of any size, read element by element with ijson: bounded memory, bad elements rejected, Hub arrays too."""

from __future__ import annotations

import gzip
import importlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import ijson
import pyarrow.parquet as pq
import pytest
from hub_mirror import build_mirror
from hub_server import run_online

from datakit.build import BuildOptions, run_build
from datakit.errors import SourceError
from datakit.recipe import load_recipe
from datakit.resources import pipeline_path
from datakit.sources import files, hub
from datakit.sources.base import RawError

ROOT = Path(__file__).resolve().parents[1]


def read(path: Path) -> list[tuple[dict, object] | RawError]:
    return list(files.iter_rows(path))


def values(items: list) -> list:
    return [item[1] for item in items if not isinstance(item, RawError)]


def errors(items: list) -> list[RawError]:
    return [item for item in items if isinstance(item, RawError)]


# The subprocess writes the array in pieces (never holding it) and then reads it: its baseline is
# taken after imports and generation, so only the reader's memory is measured.
MEMORY_PROBE = textwrap.dedent("""
    import json, resource, sys, time
    from pathlib import Path
    from datakit.sources import files

    path, target = Path(sys.argv[1]), int(sys.argv[2])
    turn = {"from": "human", "value": "Explain why the sky is blue, in simple words. " * 8}
    answer = {"from": "gpt", "value": "Sunlight scatters off air molecules; blue light scatters most. " * 20}
    with open(path, "wb") as f:
        f.write(b"[\\n")
        n, size = 0, 2
        while size < target:
            piece = (b",\\n" if n else b"") + json.dumps({"id": n, "conversations": [turn, answer]}).encode()
            f.write(piece)
            size, n = size + len(piece), n + 1
        f.write(b"\\n]\\n")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start, count, last = time.perf_counter(), 0, None
    for loc, value in files.iter_rows(path):
        count, last = count + 1, value["id"]
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"n": n, "count": count, "last": last, "grew_mb": (after - before) / 1024,
                      "mb_s": size / 1e6 / seconds, "size": size}))
""")


def test_a_json_array_of_hundreds_of_mb_is_read_in_bounded_memory(tmp_path):
    # 300 MB with ijson's C backend (about 2 s); the pure-Python backend is ~10x slower, so it gets 60 MB.
    target = 300_000_000 if ijson.backend == "yajl2_c" else 60_000_000
    out = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(tmp_path / "big.json"), str(target)],
                         capture_output=True, text=True, cwd=ROOT, timeout=120, check=True)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["size"] >= target and got["count"] == got["n"] and got["last"] == got["n"] - 1
    assert got["grew_mb"] < 300, got  # the whole file would be > 1 GB of Python objects


def test_elements_come_with_their_index_in_order(tmp_path):
    data = [{"i": i, "text": "x\n" * (i % 3), "w": 0.5} for i in range(2500)]
    p = tmp_path / "a.json"
    p.write_text(json.dumps(data, indent=2), encoding="utf-8")
    got = read(p)
    assert values(got) == data
    assert [loc["index"] for loc, _ in got] == list(range(2500))
    assert all(loc["file"] == str(p) for loc, _ in got)
    gz = tmp_path / "a.json.gz"
    gz.write_bytes(gzip.compress(b"\xef\xbb\xbf" + json.dumps(data).encode()))
    assert values(read(gz)) == data


def test_a_malformed_element_is_rejected_and_reading_goes_on(tmp_path):
    p = tmp_path / "broken.json"
    p.write_text('[\n {"a": 1},\n {"a": 2,, },\n {"a": "]"},\n {"b": }\n, {"a": 5}\n]', encoding="utf-8")
    got = read(p)
    assert values(got) == [{"a": 1}, {"a": "]"}, {"a": 5}]
    bad = errors(got)
    assert [(e.reason, e.loc["line"], e.loc["index"]) for e in bad] == [("malformed_json", 3, 1), ("malformed_json", 5, 3)]
    assert bad[0].raw == '{"a": 2,, }' and "line 3" in bad[0].detail
    assert [loc["index"] for loc, _ in (i for i in got if not isinstance(i, RawError))] == [0, 2, 4]


def test_invalid_utf8_in_one_element_rejects_only_that_element(tmp_path):
    p = tmp_path / "latin.json"
    p.write_bytes(b'[{"q": "ok"},\n{"q": "caf\xe9"},\n{"q": "fine"}]')
    got = read(p)
    assert values(got) == [{"q": "ok"}, {"q": "fine"}]
    (bad,) = errors(got)
    assert (bad.reason, bad.loc["line"], bad.loc["index"]) == ("invalid_utf8", 2, 1)
    assert "caf" in bad.raw


def test_a_truncated_array_ends_with_one_rejection_for_the_rest(tmp_path):
    p = tmp_path / "cut.json"
    p.write_text('[{"a": 1},\n{"a": 2},\n{"a": "long text that was cut', encoding="utf-8")
    got = read(p)
    assert values(got) == [{"a": 1}, {"a": 2}]
    (bad,) = errors(got)
    assert (bad.reason, bad.loc["line"], bad.loc["index"]) == ("truncated_json", 3, 2)
    assert bad.raw.startswith('{"a": "long text')
    p.write_text('[{"a": 1}, {"a": 2}', encoding="utf-8")  # closing bracket missing
    assert [e.reason for e in errors(read(p))] == ["truncated_json"]


def test_big_elements_met_while_recovering_go_back_to_ijson(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "CHECK_LIMIT", 16)
    p = tmp_path / "mixed.json"
    p.write_text('[{"a": 1}, {"bad": }, {"a": "a long enough element"}, {"b": 2}]', encoding="utf-8")
    got = read(p)
    assert values(got) == [{"a": 1}, {"a": "a long enough element"}, {"b": 2}]
    assert [(e.reason, e.loc["index"]) for e in errors(got)] == [("malformed_json", 1)]


def test_not_an_array_is_one_line_naming_the_file(tmp_path):
    p = tmp_path / "obj.json"
    p.write_text('\n\n[', encoding="utf-8")
    assert [e.reason for e in errors(read(p))] == ["truncated_json"]
    p.write_bytes(b"\n\n\x00[1]")
    with pytest.raises(SourceError, match=r"obj.json: line 3: expected a JSON array"):
        files.iter_json_array(p).__next__()


RECIPE = """
name: arrays
seed: 7
sources:
  - name: inst
    format: alpaca
    path: inst.json
    lang: en
    license: MIT
"""


def test_a_build_rejects_bad_array_elements_and_strict_names_the_first(tmp_path):
    good = {"instruction": "Name a primary colour.", "input": "", "output": "Red is a primary colour."}
    data = tmp_path / "data"
    data.mkdir()
    body = b",\n".join([json.dumps(good).encode(), b'{"instruction": "broken",, "output": "x"}',
                        b'{"instruction": "caf\xe9", "output": "latin-1"}', json.dumps({**good, "output": "Blue."}).encode()])
    (data / "inst.json").write_bytes(b"[\n" + body + b"\n]\n")
    recipe = tmp_path / "arrays.yaml"
    recipe.write_text(textwrap.dedent(RECIPE), encoding="utf-8")
    out = tmp_path / "out"
    run_build(BuildOptions(recipe=str(recipe), data_dir=str(data), output=str(out), workers=1))
    rejected = [r for f in sorted((out / "rejected").rglob("*.parquet")) for r in pq.read_table(f).to_pylist()]
    read_stage = sorted((r["reason"], json.loads(r["meta"])["index"]) for r in rejected if r["stage"] == "read")
    assert read_stage == [("invalid_utf8", 2), ("malformed_json", 1)]
    with pytest.raises(SourceError, match=r"inst.json, line 3, index 1: malformed_json") as e:
        run_build(BuildOptions(recipe=str(recipe), data_dir=str(data), output=str(tmp_path / "strict"), workers=1, strict=True))
    assert "\n" not in str(e.value)


def test_hub_json_arrays_are_streamed_by_datakit_not_loaded_by_datasets(corpus, tmp_path, monkeypatch):
    json_builder = importlib.import_module("datasets.packaged_modules.json.json")

    mirror = build_mirror(tmp_path / "mirror", corpus, rows=4)
    recipe = load_recipe(pipeline_path("bayling2.yaml"))
    source = next(s for s in recipe.sources if s.hub == "teknium/OpenHermes-2.5")
    array = mirror / source.hub / "openhermes2_5.json"
    assert array.read_bytes().lstrip()[:1] == b"["  # one JSON array, like the real 1.9 GB file

    def refuse(*args, **kwargs):
        raise AssertionError("datasets' JSON builder read a JSON array")

    monkeypatch.setattr(json_builder.Json, "_generate_tables", refuse)
    assert hub.array_files(source, None, mirror) == [str(array)]
    assert hub.num_shards(source, None, mirror) == 1
    rows = list(hub.iter_hub_rows(source, None, mirror, 0, 1, None))
    assert [row for _, row in rows] == json.loads(array.read_text(encoding="utf-8"))
    assert rows[0][0] == {"hub": source.hub, "config": None, "split": "train", "shard": 0, "row": 0}
    assert len(list(hub.iter_hub_rows(source, None, mirror, 0, 1, 2))) == 2

    # A bad element is a rejection naming the file in the repository, not a failed source.
    array.write_bytes(array.read_bytes().replace(b'"from": "gpt"', b'"from": gpt', 1))
    hub._split_files.cache_clear()
    items = list(hub.iter_hub_rows(source, None, mirror, 0, 1, None))
    (bad,) = [i for i in items if isinstance(i, RawError)]
    assert bad.reason == "malformed_json" and bad.loc["file"] == "openhermes2_5.json" and bad.loc["index"] == 0
    assert len(items) == 4

    # JSON Lines behind a .json name (BELLE) keep streaming through datasets.
    belle = next(s for s in recipe.sources if s.hub == "BelleGroup/train_2M_CN")
    assert hub.array_files(belle, None, mirror) is None


HUB_PROBE = textwrap.dedent("""
    import json
    from hub_server import HubServer, dataset_on_hub

    with HubServer(token="t") as server:
        rows = [{"conversations": [{"from": "human", "value": f"q{i}"}, {"from": "gpt", "value": f"a{i}"}]} for i in range(5)]
        _, commit = dataset_on_hub(server, "teknium/OpenHermes-2.5", {"openhermes2_5.json": json.dumps(rows, indent=2)})
        from datakit.recipe import load_recipe
        from datakit.resources import pipeline_path
        from datakit.sources import hub
        source = next(s for s in load_recipe(pipeline_path("bayling2.yaml")).sources if s.hub == "teknium/OpenHermes-2.5")
        source = source.model_copy(update={"revision": commit})
        print(json.dumps({"files": hub.array_files(source, None, None), "commit": commit,
                          "rows": [row for _, row in hub.iter_hub_rows(source, None, None, 0, 1, None)], "expected": rows}))
""")


def test_hub_json_arrays_are_resolved_and_downloaded_from_the_hub_at_the_revision(tmp_path):
    got = run_online(HUB_PROBE, tmp_path / "hf", timeout=120)
    assert got["files"] == [f"hf://datasets/teknium/OpenHermes-2.5@{got['commit']}/openhermes2_5.json"]
    assert got["rows"] == got["expected"]
