"""Reading line-aligned parallel files the short way gives what the long way gives: a range of lines
decoded at once (`line_range`) equals the lines `files.iter_lines` decodes one by one, on every
NTREX file and on files made to hold what that reader takes off or rejects (a BOM, CRLF, stray CRs,
bad UTF-8, a last line without LF, gzip); rows read in lockstep equal the rows the per-line reader
made (`_aligned_long_way`, the reader as it was before the short way), on real NTREX partitions
and line ranges; the counts and hub ranges kept per file follow the file when it changes."""

from __future__ import annotations

import dataclasses
import gzip
import itertools
import os
from pathlib import Path

import cachetools
import pytest

from datakit.recipe import load_recipe
from datakit.sources import adapter_for, files, parallel, rows
from datakit.sources.base import Parallel, Partition, RawError, RawRow, ReadContext
from datakit.sources.parallel import _read_aligned, forget_files, hub_range, line_count, line_range

ROOT = Path(__file__).resolve().parents[1]


def long_way(path: Path, start: int, count: int) -> list:
    return [item.text if isinstance(item, files.Line) else item
            for item in itertools.islice(files.iter_lines(path), start, start + count)]


@pytest.fixture(scope="module")
def ntrex_files(corpus) -> list[Path]:
    found = sorted(corpus.glob("ntrex128/NTREX-*/*.txt"))
    assert len(found) > 100
    return found


def test_line_ranges_of_every_ntrex_file_equal_the_lines_read_one_by_one(ntrex_files):
    for path in ntrex_files:
        n = files.count_lines(path)
        assert line_count(path) == n
        for start, count in ((0, n), (0, 7), (1, 3), (n - 5, 50), (n, 10)):
            assert line_range(path, start, count) == long_way(path, start, count), (path.name, start, count)


ODD_FILES = {
    "bom_crlf.txt": b"\xef\xbb\xbfone\r\ntwo\r\n\r\nfour\r\n",
    "stray_cr.txt": b"a\rb\nc\r\r\nd\r\n\re\n",
    "last_without_lf.txt": b"first\nlast\r",
    "last_cr_only.txt": b"x\n\r",
    "bad_utf8.txt": b"fine\nbad \xff byte\n\xef\xbb\xbfbom later\nok \xe2\x82\xac\n",
    "truncated.txt": b"\xe2\x82\nnext\n",
    "empty.txt": b"",
    "only_lf.txt": b"\n\n\n",
    "bom_only.txt": b"\xef\xbb\xbf",
}


@pytest.mark.parametrize("name", sorted(ODD_FILES))
def test_line_ranges_of_odd_files_equal_the_lines_read_one_by_one(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(ODD_FILES[name])
    gz = tmp_path / (name + ".gz")
    gz.write_bytes(gzip.compress(ODD_FILES[name]))
    for p in (path, gz):
        n = files.count_lines(p)
        for start in range(n + 1):
            for count in range(n - start + 2):
                assert line_range(p, start, count) == long_way(p, start, count), (p.name, start, count)
        assert hub_range(p, 0, n) == tuple(long_way(p, 0, n))


def _aligned_long_way(source, partition: Partition, ctx: ReadContext, unit: str):
    """The lockstep reader before the short way: every file's lines decoded one by one, every
    file counted afresh."""
    p = partition.params
    focus = partition.langs[-1]
    texts = {code: Path(path) for code, path in p["texts"].items()}
    variant_files = {(code, label): Path(path) for code, vs in p.get("variants", {}).items() for label, path in vs.items()}
    every = {**{(c, None): f for c, f in texts.items()}, **variant_files}
    counts = {key: files.count_lines(f) for key, f in every.items()}
    reference = counts[(focus, None)]
    misaligned = {key for key, n in counts.items() if n != reference}
    start, count = p["start"], p["count"]
    streams = {key: itertools.islice(files.iter_lines(f), start, start + count) for key, f in every.items()}
    for i in range(count):
        loc = {"file": rows.relative(texts[focus], ctx), "line": start + i + 1}
        got = {key: next(stream, None) for key, stream in streams.items()}
        focus_item = got[(focus, None)]
        raw = focus_item.text if isinstance(focus_item, files.Line) else getattr(focus_item, "raw", "")
        bad_core = sorted(key for key in misaligned if key[1] is None)
        if bad_core:
            key = bad_core[0]
            yield RawError(loc, "misaligned", raw, focus,
                           f"{rows.relative(every[key], ctx)} has {counts[key]} lines, {rows.relative(texts[focus], ctx)} has {reference}")
            continue
        errors = [item for key, item in got.items() if key[1] is None and isinstance(item, RawError)]
        if errors:
            err = errors[0]
            yield RawError(loc, err.reason, err.raw, focus, f"{err.loc.get('file', '')}: {err.detail}".strip(": "))
            continue
        row_texts = {code: got[(code, None)].text for code in texts}
        variants: dict[str, dict[str, str]] = {}
        for (code, label), item in got.items():
            if label is not None and (code, label) not in misaligned and isinstance(item, files.Line):
                variants.setdefault(code, {})[label] = item.text
        yield RawRow(loc, Parallel(focus, row_texts, unit, variants))


def _items(reader, source, partition, ctx) -> list:
    return [dataclasses.asdict(item) for item in reader(source, partition, ctx, unit=source.unit)]


@pytest.fixture(scope="module")
def ntrex(corpus):
    recipe = load_recipe(ROOT / "pipelines" / "local.yaml")
    source = next(s for s in recipe.sources if s.name == "ntrex128")
    ctx = ReadContext(corpus, None, None, None, tuple(recipe.pivots), rows_per_task=700)
    return source, ctx, adapter_for(source).partitions(source, ctx)


def test_rows_read_in_lockstep_equal_the_rows_read_line_by_line(ntrex):
    source, ctx, parts = ntrex
    with_variants = [p for p in parts if p.params.get("variants")]
    assert with_variants and any(p.params["start"] > 0 for p in parts)
    chosen = [p for p in parts if p.langs[-1] in ("eng_Latn", "por_Latn", "spa_Latn", "fra_Latn", "swh_Latn", "zul_Latn")]
    assert len(chosen) >= 12
    for partition in chosen:
        assert _items(_read_aligned, source, partition, ctx) == _items(_aligned_long_way, source, partition, ctx), partition.key


def test_misaligned_and_unreadable_lines_come_out_as_the_line_by_line_reader_says(tmp_path, ntrex):
    source, ctx, _ = ntrex
    lines = [f"line {i} ünïcödé" for i in range(12)]
    paths = {}
    for code, body in {"eng_Latn": lines, "zho_Hans": [f"行 {i}" for i in range(12)], "swh_Latn": lines}.items():
        paths[code] = tmp_path / f"{code}.txt"
        paths[code].write_bytes("\r\n".join(body).encode() + b"\r\n")
    paths["bad"] = tmp_path / "bad.txt"
    paths["bad"].write_bytes(b"\n".join(x.encode() for x in lines[:4]) + b"\n\xff\xfe\n" + b"\n".join(x.encode() for x in lines[5:]) + b"\n")
    paths["short"] = tmp_path / "short.txt"
    paths["short"].write_text("\n".join(lines[:-1]) + "\n", encoding="utf-8")
    local = dataclasses.replace(ctx, data_dir=tmp_path)
    cases = [
        {"swh_Latn": paths["bad"]},  # one line of bad UTF-8 in the focus file
        {"swh_Latn": paths["swh_Latn"], "eng_Latn": paths["bad"]},  # ... in a hub file
        {"swh_Latn": paths["short"]},  # the focus file a line short: every row misaligned
        {"swh_Latn": paths["swh_Latn"], "zho_Hans": paths["short"]},  # a hub file a line short
    ]
    for swap in cases:
        texts = {c: str(swap.get(c, paths[c])) for c in ("eng_Latn", "swh_Latn", "zho_Hans")}
        variants = {"eng_Latn": {"GB": str(paths["short"]), "US": str(paths["swh_Latn"])}}
        for start, count in ((0, 11), (3, 5)):
            partition = Partition(source.name, "swh_Latn", {"texts": texts, "variants": variants, "start": start, "count": count}, ("swh_Latn",))
            got = _items(_read_aligned, source, partition, local)
            assert got == _items(_aligned_long_way, source, partition, local), (swap, start)
            assert len(got) == count


def test_counts_and_hub_ranges_follow_a_file_that_changes(tmp_path):
    path = tmp_path / "hub.txt"
    path.write_text("a\nb\n", encoding="utf-8")
    assert (line_count(path), hub_range(path, 0, 5)) == (2, ("a", "b"))
    path.write_text("a\nb\nc\n", encoding="utf-8")
    os.utime(path, ns=(1, 1))  # whatever its time, a new size is a new file
    assert (line_count(path), hub_range(path, 0, 5)) == (3, ("a", "b", "c"))
    forget_files()
    assert (line_count(path), hub_range(path, 0, 5)) == (3, ("a", "b", "c"))


def test_hub_ranges_kept_stay_within_their_bytes(tmp_path, monkeypatch):
    """The ranges a worker keeps are bounded in bytes, not in number: the ranges read last are kept
    up to the budget, a range larger than all of it is read and returned but not kept, and every
    range read is the file's lines whether it was kept or not."""
    path = tmp_path / "hub.txt"
    path.write_text("".join(f"line {i} {'x' * (i % 40)}\n" for i in range(3000)), encoding="utf-8")
    one_range = parallel._range_bytes(tuple(line_range(path, 0, 100)))
    budget = 3 * one_range + one_range // 2  # room for three ranges of 100 lines, not four
    monkeypatch.setattr(parallel._hub_range, "cache", cachetools.LRUCache(maxsize=budget, getsizeof=parallel._range_bytes))
    kept = parallel._hub_range.cache
    for start in range(0, 1000, 100):
        assert hub_range(path, start, 100) == tuple(long_way(path, start, 100))
        assert kept.currsize <= budget
    assert len(kept) == 3  # the last three ranges read
    assert hub_range(path, 900, 100) is hub_range(path, 900, 100)  # a kept range is shared, not read again
    whole = hub_range(path, 0, 3000)  # larger than the whole budget
    assert whole == tuple(long_way(path, 0, 3000))
    assert len(kept) == 3 and kept.currsize <= budget
