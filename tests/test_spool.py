"""Reading by quota from JSON arrays, which cannot be read from their middle: the first band reads
the file whole and keeps its rows in a spool; later bands read the spool. Every band's rows are the
rows a whole read gives in that band, value for value (NaN, lone surrogates, big integers,
unreadable elements and their RawErrors included), and once the spool is kept the file is not
parsed again, unless it changed."""

from __future__ import annotations

import dataclasses
import json
import os
import textwrap
from pathlib import Path

import pytest
from hub_server import run_online

from datakit.recipe import Source
from datakit.sources import files, hub
from datakit.sources.base import BAND_SCALE, Partition, Passed, RawError, ReadContext

BANDS = [(0, BAND_SCALE // 4), (BAND_SCALE // 4, BAND_SCALE // 2 + 7), (BAND_SCALE // 2 + 7, BAND_SCALE)]


def _elements(n: int) -> str:
    """A JSON array of ShareGPT rows, with the values a spool must give back exactly."""
    parts = []
    for i in range(n):
        row = {"conversations": [{"from": "human", "value": f"问题 {i} ünïcode"}, {"from": "gpt", "value": f"answer {i}", "weight": 1.0}],
               "score": 0.1 * i, "tiny": 1e-7 * i, "big": 2**70 + i, "source": None}
        parts.append(json.dumps(row, ensure_ascii=False))
    parts[5] = '{"conversations": [{"from": "human", "value": oops}]}'  # unreadable: a bare word
    parts[9] = '{"conversations": [], "score": NaN}'  # json reads it (ijson does not)
    parts[12] = '{"conversations": [{"from": "human", "value": "lone \\ud800 surrogate"}]}'
    return "[\n" + ",\n".join(parts) + "\n]\n"


def _same(item) -> str:
    """An item as comparable text (NaN != NaN as a float)."""
    if isinstance(item, RawError):
        return json.dumps(["error", item.loc, item.reason, item.raw, item.lang, item.detail], ensure_ascii=False)
    return json.dumps(list(item), ensure_ascii=False, allow_nan=True)


def _loc(item) -> dict:
    return item.loc if isinstance(item, RawError) else item[0]


def _by_band(read, part: Partition, band_of, seed: int, whole: list) -> tuple[list[list], int]:
    """Each band's rows as a task keeps them (by position), and the rows passed over in all."""
    got, passed = [], 0
    for lo, hi in BANDS:
        mine = []
        for item in read(band_of(lo, hi)):
            if isinstance(item, Passed):
                passed += item.count
                assert item.beyond == sum(part.position(seed, _loc(w)) >= hi for w in whole)
            elif lo <= part.position(seed, _loc(item)) < hi:
                mine.append(_same(item))
        got.append(mine)
    return got, passed


@pytest.fixture
def mirror(tmp_path):
    repo = tmp_path / "mirror" / "org" / "chats"
    repo.mkdir(parents=True)
    (repo / "chats.json").write_text(_elements(300), encoding="utf-8")
    return tmp_path / "mirror"


def test_a_hub_json_array_is_parsed_once_and_banded_from_its_spool(mirror, tmp_path, monkeypatch):
    source = Source(name="chats", format="messages", lang="eng_Latn", hub="org/chats", license="MIT")
    whole = list(hub.iter_hub_rows(source, None, mirror, 0, 1, None))
    assert len(whole) == 300 and sum(isinstance(w, RawError) for w in whole) == 1
    seed = 5
    part = Partition("chats", "default:0", {"config": None, "shard": 0, "shards": 1}, ("eng_Latn",))
    ctx = ReadContext(None, mirror, None, None, ("eng_Latn", "zho_Hans"), seed=seed, index_dir=str(tmp_path / "bands"))

    def band_of(lo, hi):
        return dataclasses.replace(ctx.band(dataclasses.replace(part, band=(lo, hi))), index=tmp_path / "bands" / "chats.npz")

    def read(band):
        return hub.iter_hub_rows(source, None, mirror, 0, 1, None, band)

    expected = [[_same(w) for w in whole if lo <= part.position(seed, _loc(w)) < hi] for lo, hi in BANDS]
    assert all(expected)
    parsed = []
    real = files.iter_json_array
    monkeypatch.setattr(files, "iter_json_array", lambda path, where=None: parsed.append(path) or real(path, where))
    got, passed = _by_band(read, part, band_of, seed, whole)
    assert got == expected
    assert len(parsed) == 1  # the first band parsed the file; the others read the spool
    assert passed == 300 - len(expected[1]) + 300 - len(expected[2])  # the first band handed on every row

    got, passed = _by_band(read, part, band_of, seed, whole)  # every band from the spool
    assert got == expected and len(parsed) == 1 and passed == 2 * 300

    data = mirror / "org" / "chats" / "chats.json"
    data.write_text(_elements(300).replace("answer 3", "answer three"), encoding="utf-8")
    os.utime(data, ns=(1, 1))
    changed = list(hub.iter_hub_rows(source, None, mirror, 0, 1, None))
    parsed.clear()
    got, _ = _by_band(read, part, band_of, seed, changed)
    assert len(parsed) == 1  # a file that changed is parsed again (its first band), not read from the old spool
    assert got == [[_same(w) for w in changed if lo <= part.position(seed, _loc(w)) < hi] for lo, hi in BANDS]
    assert any("answer three" in row for band in got for row in band)


def test_a_local_json_array_too(tmp_path):
    path = tmp_path / "chats.json"
    path.write_text(_elements(120), encoding="utf-8")
    whole = list(files.iter_rows(path))
    part = Partition("local", "chats", {"files": [str(path)]}, ("eng_Latn",))
    ctx = ReadContext(tmp_path, None, None, None, ("eng_Latn", "zho_Hans"), seed=3, index_dir=str(tmp_path / "bands"))

    def band_of(lo, hi):
        band = ctx.band(dataclasses.replace(part, band=(lo, hi)))
        return dataclasses.replace(band, index=Path(tmp_path / "bands" / "local.npz"))

    expected = [[_same(w) for w in whole if lo <= part.position(3, _loc(w)) < hi] for lo, hi in BANDS]
    for _ in range(2):
        got, _ = _by_band(lambda band: files.iter_rows(path, band=band), part, band_of, 3, whole)
        assert got == expected
    assert (tmp_path / "bands" / "local.spool.parquet").is_file()


def test_a_read_stopped_early_leaves_no_spool(tmp_path):
    path = tmp_path / "chats.json"
    path.write_text(_elements(50), encoding="utf-8")
    part = Partition("local", "chats", {"files": [str(path)]}, ("eng_Latn",))
    ctx = ReadContext(tmp_path, None, None, None, ("eng_Latn", "zho_Hans"), seed=3, index_dir=str(tmp_path / "bands"))
    band = dataclasses.replace(ctx.band(dataclasses.replace(part, band=(0, BAND_SCALE // 2))), index=tmp_path / "bands" / "x.npz")
    rows = files.iter_rows(path, band=band)
    next(rows), next(rows)
    rows.close()
    assert not list((tmp_path / "bands").iterdir())


HUB_BANDS = textwrap.dedent("""
    import dataclasses, json, os, shutil, tempfile
    from pathlib import Path
    from hub_server import HubServer, dataset_on_hub
    from test_spool import BANDS, _elements, _loc, _same

    with HubServer(token="t") as server:
        api, commit = dataset_on_hub(server, "org/chats", {"chats.json": _elements(80)})
        from datakit.recipe import Source
        from datakit.sources import files, hub
        from datakit.sources.base import Partition, Passed, ReadContext
        source = Source(name="chats", format="messages", lang="eng_Latn", hub="org/chats", license="MIT", revision=commit)
        whole = list(hub.iter_hub_rows(source, None, None, 0, 1, None))
        part = Partition("chats", "default:0", {"config": None, "shard": 0, "shards": 1}, ("eng_Latn",))
        bands = Path(tempfile.mkdtemp())
        ctx = ReadContext(None, None, None, None, ("eng_Latn", "zho_Hans"), seed=5, index_dir=str(bands))
        parsed = []
        real = files.iter_json_array
        files.iter_json_array = lambda path, where=None: parsed.append(str(path)) or real(path, where)
        got = []
        for i, (lo, hi) in enumerate(BANDS):
            if i == 1:  # the later bands run where the Hub cache never held the file
                shutil.rmtree(Path(os.environ["HF_HOME"]) / "hub")
            band = dataclasses.replace(ctx.band(dataclasses.replace(part, band=(lo, hi))), index=bands / "chats.npz")
            got.append([_same(r) for r in hub.iter_hub_rows(source, None, None, 0, 1, None, band)
                        if not isinstance(r, Passed) and lo <= part.position(5, _loc(r)) < hi])
        expected = [[_same(w) for w in whole if lo <= part.position(5, _loc(w)) < hi] for lo, hi in BANDS]
        fetched = sorted(p.name for p in (Path(os.environ["HF_HOME"]) / "hub").rglob("chats.json"))
        at_branch = "hf://datasets/org/chats@main/chats.json"  # a URL at a branch: stamped by what the Hub says of it
        stamps = [hub._content_stamp(at_branch, False)]
        api.upload_file(path_or_fileobj=_elements(81).encode(), path_in_repo="chats.json", repo_id="org/chats", repo_type="dataset")
        stamps.append(hub._content_stamp(at_branch, False))
        print(json.dumps({"same": got == expected, "rows": sum(map(len, got)), "parsed": len(parsed), "fetched": fetched,
                          "names": hub.array_files(source, None, None), "commit": commit, "stamps": stamps}))
""")


def test_later_hub_bands_use_the_spool_without_fetching_the_file(tmp_path):
    """On a cluster, a later band may run on a machine that never fetched the array: the spool of a
    Hub file at a commit is checked against its URL, so the 1.9 GB file is not fetched again just
    to be stamped. Against a server that speaks the Hub's protocol (subprocess: the test session
    runs with HF_HUB_OFFLINE=1, which huggingface_hub reads at import)."""
    got = run_online(HUB_BANDS, tmp_path / "hf")
    assert got["same"] and got["rows"] == 80
    assert got["parsed"] == 1  # the first band parsed the file; the later ones read their rows from the spool
    assert got["fetched"] == []  # and did not fetch the file into the emptied cache
    assert got["names"] == [f"hf://datasets/org/chats@{got['commit']}/chats.json"]  # `datasets` names the commit
    before, after = got["stamps"]  # a file at a branch is stamped by its ETag and size, so a new commit is told apart
    assert before != after and before[0] == after[0] and all(before[1:]) and all(after[1:])
