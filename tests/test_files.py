import json

import pytest

from datakit.errors import SourceError
from datakit.sources import files
from datakit.sources.base import RawError


def test_lines_handle_bom_crlf_stray_cr_and_bad_utf8(tmp_path):
    p = tmp_path / "t.txt"
    p.write_bytes(b"\xef\xbb\xbffirst\r\nsec\rond\n\xff\xfe bad\nlast")
    items = list(files.iter_lines(p))
    assert [i.text for i in items if isinstance(i, files.Line)] == ["first", "sec\rond", "last"]
    errors = [i for i in items if isinstance(i, RawError)]
    assert len(errors) == 1 and errors[0].reason == "invalid_utf8" and errors[0].loc["line"] == 3
    assert files.count_lines(p) == 4


def test_json_array_streams_every_element_with_its_index(tmp_path):
    data = [{"i": i, "text": "x\n" * (i % 3)} for i in range(2500)]
    p = tmp_path / "a.json"
    p.write_text(json.dumps(data, indent=2), encoding="utf-8")
    got = list(files.iter_json_array(p))
    assert [v for _, v in got] == data
    assert [loc["index"] for loc, _ in got] == list(range(2500))


def test_a_broken_json_array_element_is_a_rejection_naming_file_and_line(tmp_path):
    p = tmp_path / "broken.json"
    p.write_text('[\n {"a": 1},\n {"a": 2,, }\n]', encoding="utf-8")
    items = list(files.iter_json_array(p))
    assert items[0] == ({"file": str(p), "index": 0}, {"a": 1})
    assert isinstance(items[1], RawError) and items[1].reason == "malformed_json"
    assert items[1].loc == {"file": str(p), "line": 3, "index": 1} and len(items) == 2


def test_a_file_that_is_not_an_array_is_an_error_naming_file_and_line(tmp_path):
    p = tmp_path / "odd.json"
    p.write_text('\n\n"just a string"', encoding="utf-8")
    with pytest.raises(SourceError, match=r"odd.json: line 3: expected a JSON array"):
        list(files.iter_json_array(p))


def test_json_lines_behind_a_json_name_are_read_as_lines(tmp_path):
    p = tmp_path / "belle.json"
    p.write_text('{"q": 1}\n{"q": 2\n\n{"q": 3}\n', encoding="utf-8")
    items = list(files.iter_rows(p))
    assert [v for item in items if not isinstance(item, RawError) for v in [item[1]]] == [{"q": 1}, {"q": 3}]
    bad = [i for i in items if isinstance(i, RawError)]
    assert bad[0].reason == "malformed_json" and bad[0].loc["line"] == 2


def test_tsv_rows_with_the_wrong_field_count_are_rejected(tmp_path):
    p = tmp_path / "q.tsv"
    p.write_text("question one\t5\nno answer here\nthree\t7\textra\n", encoding="utf-8")
    items = list(files.iter_rows(p, columns=["question", "answer"], header=False))
    assert items[0][1] == {"question": "question one", "answer": "5"}
    assert [i.reason for i in items[1:]] == ["wrong_field_count", "wrong_field_count"]


def test_line_offsets_split_a_file_into_exact_line_ranges(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text("".join(f'{{"n": {i}}}\n' for i in range(1, 26)), encoding="utf-8")
    marks = files.line_marks(p, 10)[0]
    assert [line for _, line in marks] == [1, 11, 21]
    got = []
    for start_byte, start_line in marks:
        got += [v["n"] for _, v in files.iter_json_lines(p, start_byte, start_line, 10)]
    assert got == list(range(1, 26))


def _bands_read(path, bands, index, start_byte=0, start_line=1, limit=None):
    """Rows each band gives, and what it passed over: (rows, unread count, rows after the band)."""
    from datakit.sources.base import Partition, Passed, RowBand, Unread

    part = Partition("s", "k")
    out = []
    for lo, hi in bands:
        band = RowBand(lo, hi, part, 3, index=index)
        rows, unread, beyond = [], 0, 0
        for item in files.iter_json_lines(path, start_byte, start_line, limit, band):
            if isinstance(item, Passed):
                unread, beyond = unread + item.count, beyond + item.beyond
            elif isinstance(item, Unread):
                unread += 1
                beyond += part.position(3, item.loc) >= hi
            elif not isinstance(item, RawError):
                rows.append(item)
            elif lo <= part.position(3, item.loc) < hi:  # a scan hands every unreadable line on; the task keeps its band's
                rows.append((item.loc, item.reason, item.raw))
            else:
                unread, beyond = unread + 1, beyond + (part.position(3, item.loc) >= hi)
        out.append((rows, unread, beyond))
    return out


@pytest.mark.parametrize("chunk", [37, 1 << 22])  # lines cut across the chunks the index is found in, or not
def test_later_bands_read_from_the_index_exactly_what_a_scan_reads(tmp_path, monkeypatch, chunk):
    """The first band keeps the rows' positions in its index file; the later bands seek to their own
    rows: the same rows, errors and counts as scanning the file for every band."""
    lines = [json.dumps({"i": i, "t": "é" * (i % 4)}, ensure_ascii=False).encode() for i in range(3000)]
    lines[0] = b"\xef\xbb\xbf" + lines[0]
    lines[10], lines[20], lines[30], lines[40] = b"", b"   \t", b"\xff\xfe not utf-8", b'{"broken": '
    lines[50] = "\u3000".encode()  # blank only once decoded: no row, as when scanning
    lines[60] = "\u00e9".encode()  # no ASCII either, but a row
    lines[70] = b' \t{"i": 70}'  # starts with white space: looked at closely, a row
    monkeypatch.setattr(files, "SPAN_CHUNK", chunk)
    p = tmp_path / "rows.jsonl"
    p.write_bytes(b"\r\n".join(lines[:1500]) + b"\n" + b"\n".join(lines[1500:]))
    bands = [(0, 1 << 29), (1 << 29, 3 << 30), (3 << 30, 1 << 32)]
    index = tmp_path / "idx" / "rows.npz"
    scanned = _bands_read(p, bands, None)
    assert sum(len(rows) for rows, _, _ in scanned) == 2997  # 3000 lines, three of them blank
    assert _bands_read(p, bands, index) == scanned and index.exists()
    assert _bands_read(p, bands, index) == scanned  # from the kept index
    # a line range of the file (a task's share) keeps an index of its own lines
    marks = files.line_marks(p, 1000)[0]
    start_byte, start_line = marks[1]
    part_index = tmp_path / "idx" / "part.npz"
    assert _bands_read(p, bands, part_index, start_byte, start_line, 1000) == _bands_read(p, bands, None, start_byte, start_line, 1000)
