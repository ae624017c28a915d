"""Reading by quota: a target size reads a deterministic fraction of the sources, fills the target,
counts every row it did not read, and writes the same bytes whatever the number of workers."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from contract import check_contract, tree_bytes

from datakit.build import BuildOptions, run_build
from datakit.quota import pilot_band, pilot_rows
from datakit.sources.base import BAND_SCALE, Partition

ROOT = Path(__file__).resolve().parents[1]
LANGS = "swh_Latn,yor_Latn,fra_Latn,hin_Deva,jpn_Jpan,deu_Latn"


def build(corpus, out, workers: int, target: int | None, engine: str = "dask"):
    return run_build(BuildOptions(recipe=str(ROOT / "pipelines/local.yaml"), data_dir=str(corpus), output=str(out), sample=400,
                                  workers=workers, langs=LANGS, engine=engine, overrides={"balance.target_size": target}))


@pytest.fixture(scope="module")
def by_quota(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("quota") / "out"
    return build(corpus, out, workers=2, target=600)


def test_positions_are_seeded_by_the_row_not_the_run():
    part = Partition("ntrex128", "swh_Latn", {"count": 10}, ("swh_Latn",))
    loc = {"file": "ntrex128/newstest2019-ref.swh-Latn.txt", "line": 7}
    assert part.position(1, loc) == Partition("ntrex128", "swh_Latn", {"count": 99}, ("swh_Latn",)).position(1, dict(loc))
    assert part.position(1, loc) != part.position(2, loc)
    positions = [part.position(1, {**loc, "line": n}) for n in range(4000)]
    assert all(0 <= p < BAND_SCALE for p in positions)
    assert 0.4 < sum(p < BAND_SCALE // 2 for p in positions) / len(positions) < 0.6  # spread over the band
    # A partition's rows hashed from one serialisation are the same positions, row by row, even
    # where the stand-in for the row number could be mistaken for other digits of the location.
    assert part.positions(1, {"file": loc["file"]}, "line", range(4000)).tolist() == positions
    from datakit.sources.base import _MARKER
    odd = {"file": f"data/{_MARKER}.jsonl"}
    assert part.positions(1, odd, "line", [3, 12]).tolist() == [part.position(1, {**odd, "line": n}) for n in (3, 12)]


def test_pilot_is_small_against_the_target_and_whole_for_unknown_sizes():
    assert pilot_rows(20_000, 600) < pilot_rows(3_200_000, 600)
    assert pilot_band(None, 50) == BAND_SCALE and pilot_band(30, 50) == BAND_SCALE
    assert pilot_band(10_000, 50) == -(-BAND_SCALE * 50 // 10_000)


def test_a_target_reads_a_fraction_and_fills_it(by_quota):
    stats = by_quota.stats
    reading = stats["reading"]["sources"]
    ntrex = reading["ntrex128"]
    assert 0 < ntrex["read"] < ntrex["available"] / 2, ntrex
    unread = sum(s["available"] - s["read"] for s in reading.values())
    read_stage = stats["stages"][0]
    assert read_stage["name"] == "read" and read_stage["unselected"] == unread
    assert read_stage["in"] == sum(s["available"] for s in reading.values())
    written = by_quota.manifest["rows"]
    assert written == 600 - stats["shortfall"].get("total", 0)
    assert stats["stages"][-1]["kept"] == written


def test_the_output_meets_the_contract(by_quota):
    rows = check_contract(by_quota.out)
    langs = {r["lang"] for r in rows}
    assert {"swh_Latn", "yor_Latn", "fra_Latn", "hin_Deva"} <= langs
    card = (by_quota.out / "README.md").read_text(encoding="utf-8")
    assert "ntrex128" in card


def test_workers_and_engines_do_not_change_a_byte_and_a_rerun_reads_nothing_new(by_quota, corpus, tmp_path):
    one = build(corpus, tmp_path / "one", workers=1, target=600, engine="datatrove")
    assert tree_bytes(one.out, "data") == tree_bytes(by_quota.out, "data")
    assert json.loads((one.out / "stats.json").read_text()) == by_quota.stats
    markers = sorted(p.name for p in (one.out / ".datakit" / "prepare").rglob("*.done.json"))
    again = build(corpus, tmp_path / "one", workers=1, target=600)
    assert sorted(p.name for p in (again.out / ".datakit" / "prepare").rglob("*.done.json")) == markers
    assert tree_bytes(again.out, "data") == tree_bytes(one.out, "data")
    assert sum(pq.read_metadata(f).num_rows for f in (again.out / "data").rglob("*.parquet")) == one.manifest["rows"]


def test_metadata_that_disagrees_with_the_data_adjusts_the_plan_and_says_so(corpus, tmp_path):
    """A JSON Lines file mostly blank lines: its line count promises 40x the rows it holds."""
    rows = json.loads((corpus / "alpaca-demo/data/alpaca_en_demo.json").read_text(encoding="utf-8"))[:50]
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "en.jsonl").write_text("".join(json.dumps(r) + "\n" + "\n" * 40 for r in rows), encoding="utf-8")
    recipe = tmp_path / "sparse.yaml"
    recipe.write_text(textwrap.dedent("""
        name: sparse
        sources:
          - {name: en, format: alpaca, path: data/en.jsonl, lang: eng_Latn, license: CC-BY-NC-4.0}
        filters: {lid: {enabled: false}}
        balance: {target_size: 30, mix: {zh: 0.0, en: 1.0, cross_lingual: 0.0}}
    """), encoding="utf-8")
    result = run_build(BuildOptions(recipe=str(recipe), data_dir=str(tmp_path), output=str(tmp_path / "out"), workers=1))
    (mismatch,) = result.stats["reading"]["metadata_mismatches"]
    assert mismatch.endswith("it holds 50") and "said 2,050 rows" in mismatch
    assert result.manifest["rows"] == 30
    assert "metadata disagreed with the data" in (tmp_path / "out" / "README.md").read_text(encoding="utf-8")


def test_a_hub_parquet_shard_gives_its_band_rows_as_datasets_streams_them(corpus, tmp_path):
    """A band of a Hub Parquet shard is read from the row groups that hold its rows (positions need
    only row numbers): the same rows, with the same locations, as streaming the shard through
    `datasets` and keeping the band's; the index kept by the first band serves the next."""
    import dataclasses

    import pyarrow as pa
    from hub_mirror import _ntrex_lines

    from datakit.recipe import Source
    from datakit.sources import hub
    from datakit.sources.base import Passed, ReadContext

    en, fr = _ntrex_lines(corpus, "eng_Latn", 1997), _ntrex_lines(corpus, "fra_Latn", 1997)
    table = pa.table({"translation": [{"en": e, "fr": f} for e, f in zip(en, fr, strict=True)], "n": list(range(len(en)))})
    repo = tmp_path / "mirror" / "org" / "pairs"
    for s, (lo, hi) in enumerate([(0, 1200), (1200, len(en))]):
        (repo / "en-fr").mkdir(parents=True, exist_ok=True)
        pq.write_table(table.slice(lo, hi - lo), repo / "en-fr" / f"train-{s:05d}-of-00002.parquet", row_group_size=300)
    (repo / "README.md").write_text("---\nconfigs:\n- config_name: en-fr\n  data_files:\n  - split: train\n    path: en-fr/train-*\n---\n")
    source = Source(name="pairs", format="bitext", hub="org/pairs", configs=["en-fr"], license="CC-BY-4.0")
    mirror = tmp_path / "mirror"
    ctx = ReadContext(None, mirror, None, None, ("eng_Latn", "zho_Hans"), seed=11, index_dir=str(tmp_path / "bands"))
    for shard in (0, 1):
        streamed = list(hub.iter_hub_rows(source, "en-fr", mirror, shard, 2, None))
        assert len(streamed) == (1200 if shard == 0 else len(en) - 1200)
        part = Partition("pairs", f"en-fr:{shard}", {"config": "en-fr", "shard": shard, "shards": 2}, ("eng_Latn", "fra_Latn"))
        for _ in range(2):  # computing the positions, then from the kept index
            got, passed = [], 0
            for lo, hi in [(0, 1 << 30), (1 << 30, 5 << 29), (5 << 29, 1 << 32)]:
                band = ctx.band(dataclasses.replace(part, band=(lo, hi)))
                band = dataclasses.replace(band, index=tmp_path / "bands" / f"{shard}.npz")
                for item in hub.iter_hub_rows(source, "en-fr", mirror, shard, 2, None, band):
                    if isinstance(item, Passed):
                        passed += item.count
                        assert item.beyond == sum(part.position(11, loc) >= hi for loc, _ in streamed)
                    else:
                        assert lo <= part.position(11, item[0]) < hi
                        got.append(item)
            assert sorted(got, key=lambda item: item[0]["row"]) == streamed
            assert passed == 2 * len(streamed)


def test_aligned_text_files_give_their_band_rows_and_pass_over_the_rest(corpus):
    """A band of an aligned-files partition (NTREX: one file per language, line n of each is one
    row) yields only the rows whose position is in the band, the same rows as reading everything
    and keeping the band's, and the others as one `Passed` that says how many lie beyond."""
    import dataclasses

    from datakit.recipe import load_recipe
    from datakit.sources import adapter_for
    from datakit.sources.base import FULL_BAND, Passed, RawError, RawRow, ReadContext

    source = next(s for s in load_recipe(ROOT / "pipelines/local.yaml").sources if s.name == "ntrex128")
    ctx = ReadContext(corpus, None, None, frozenset({"swh_Latn"}), ("eng_Latn", "zho_Hans"), seed=11)
    adapter = adapter_for(source)
    (part,) = [p for p in adapter.partitions(source, ctx) if p.langs[-1] == "swh_Latn"]
    whole = [item for item in adapter.read(source, part, ctx) if isinstance(item, RawRow | RawError)]
    assert len(whole) == part.expected_rows > 1000
    got, passed = [], 0
    for lo, hi in [(0, 1 << 30), (1 << 30, 5 << 29), (5 << 29, FULL_BAND[1])]:
        banded = dataclasses.replace(part, band=(lo, hi))
        for item in adapter.read(source, banded, ctx):
            if isinstance(item, Passed):
                passed += item.count
                assert item.beyond == sum(part.position(11, row.loc) >= hi for row in whole)
            else:
                assert lo <= part.position(11, item.loc) < hi
                got.append(item)
    assert sorted(got, key=lambda item: item.loc["line"]) == whole
    assert passed == 2 * len(whole)
