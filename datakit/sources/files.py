"""Reading local files row by row, without ever loading a file whole.

Lines are split on LF in binary, so a stray CR inside a line cannot shift a parallel file out of
alignment; each line is decoded on its own, so one line of bad UTF-8 is one rejected row, not a
crashed build. A byte-order mark and CRLF line ends are taken off. JSON arrays are parsed
element by element; JSON Lines files that carry a `.json` name (BELLE's) are recognised by their
first character.
"""

from __future__ import annotations

import csv
import functools
import gzip
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import ijson
import numpy as np
import pyarrow.parquet as pq

from datakit.errors import SourceError
from datakit.hashing import file_stamp
from datakit.sources import spool
from datakit.sources.base import RawError, RowBand, Unread

BOM = b"\xef\xbb\xbf"
ROW_SUFFIXES = (".jsonl", ".json", ".ndjson", ".parquet", ".csv", ".tsv")


def open_binary(path: Path) -> BinaryIO:
    try:
        return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")  # noqa: SIM115
    except OSError as e:
        raise SourceError(f"{path}: cannot open ({e.strerror or e})") from None


def data_suffix(path: Path) -> str:
    """`.jsonl` for `x.jsonl.gz` too."""
    suffixes = path.suffixes
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return suffixes[-1].lower() if suffixes else ""


@dataclass
class Line:
    number: int
    text: str


def raw_lines(path: Path, start_byte: int = 0, start_line: int = 1, limit: int | None = None) -> Iterator[tuple[int, int, bytes]]:
    """(line number, byte offset, bytes without BOM and line end) of a file's lines (1-based numbers)."""
    with open_binary(path) as f:
        if start_byte:
            f.seek(start_byte)
        offset = start_byte
        for number, raw in enumerate(f, start_line):
            if limit is not None and number - start_line >= limit:
                return
            at, offset = offset, offset + len(raw)
            yield number, at, _strip_line(raw, number)


def _strip_line(raw: bytes, number: int) -> bytes:
    if number == 1 and raw.startswith(BOM):
        raw = raw[len(BOM) :]
    if raw.endswith(b"\n"):
        raw = raw[:-1]
    if raw.endswith(b"\r"):
        raw = raw[:-1]
    return raw


def iter_lines(path: Path, start_byte: int = 0, start_line: int = 1, limit: int | None = None) -> Iterator[Line | RawError]:
    """Lines of a text file (1-based numbers), each decoded on its own."""
    for number, _, raw in raw_lines(path, start_byte, start_line, limit):
        yield _decode_line(path, number, raw)


def _decode_line(path: Path, number: int, raw: bytes) -> Line | RawError:
    try:
        return Line(number, raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        return RawError({"file": str(path), "line": number}, "invalid_utf8", raw.decode("utf-8", "replace"),
                        detail=f"invalid UTF-8 at byte {e.start} of the line")


def count_lines(path: Path) -> int:
    """Number of lines (a last line without LF counts)."""
    n, last = 0, b"\n"
    with open_binary(path) as f:
        while chunk := f.read(1 << 22):
            n += chunk.count(b"\n")
            last = chunk[-1:]
    return n + (last != b"\n")


def line_marks(path: Path, every: int) -> tuple[list[tuple[int, int]], int]:
    """(byte offset, line number) at the start of every `every`-th line (where line-range tasks
    start), and the number of lines as `count_lines` counts them: one pass over the file, the LFs
    found with numpy (a Python loop over every line was most of planning a large JSON Lines source)."""
    starts, line, pos, last = [np.zeros(1, dtype=np.int64)], 1, 0, b"\n"
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            after = np.flatnonzero(np.frombuffer(chunk, dtype=np.uint8) == 10) + 1  # where the next line starts
            numbers = line + 1 + np.arange(len(after))  # the line each of them starts
            starts.append(pos + after[(numbers - 1) % every == 0])
            line += len(after)
            pos += len(chunk)
            last = chunk[-1:]
    offsets = np.concatenate(starts).tolist()
    if len(offsets) > 1 and offsets[-1] >= pos:  # a mark at the very end starts no line
        offsets.pop()
    marks = [(offset, 1 + k * every) for k, offset in enumerate(offsets)]
    return marks, line - 1 + (last != b"\n")


# ---------------------------------------------------------------- rows as dicts


def _first_char(path: Path) -> bytes:
    with open_binary(path) as f:
        head = f.read(4096).lstrip(BOM).lstrip()
    return head[:1]


def iter_json_lines(path: Path, start_byte: int = 0, start_line: int = 1, limit: int | None = None,
                    band: RowBand | None = None) -> Iterator[tuple[dict, Any] | RawError | Unread]:
    """Rows of a JSON Lines file; a row outside the `band` is not parsed (an `Unread`). With an index
    file for the band, the rows' positions are computed once (the first band) and later bands seek
    to their own rows and pass over the others as one `Passed`."""
    if band is not None and band.index is not None and path.suffix != ".gz":
        yield from _json_lines_by_index(path, start_byte, start_line, limit, band)
        return
    for item in iter_lines(path, start_byte, start_line, limit):
        if isinstance(item, RawError):
            yield item
            continue
        if not item.text.strip():
            continue
        loc = {"file": str(path), "line": item.number}
        if band is not None and band.outside(loc):
            yield Unread(loc)
            continue
        yield _json_row(loc, item.text)


def _json_row(loc: dict[str, Any], text: str) -> tuple[dict, Any] | RawError:
    try:
        return (loc, json.loads(text))
    except json.JSONDecodeError as e:
        return RawError(loc, "malformed_json", text, detail=f"{e.msg} at column {e.colno}")


def _json_lines_by_index(path: Path, start_byte: int, start_line: int, limit: int | None,
                         band: RowBand) -> Iterator[tuple[dict, Any] | RawError | Unread]:
    lines, offsets, positions = _line_positions(path, start_byte, start_line, limit, band)
    inside, passed = band.split(positions)
    with open(path, "rb") as f:
        for number, offset in zip(lines[inside].tolist(), offsets[inside].tolist(), strict=True):
            f.seek(offset)
            item = _decode_line(path, number, _strip_line(f.readline(), number))
            yield item if isinstance(item, RawError) else _json_row({"file": str(path), "line": number}, item.text)
    yield passed


def _line_positions(path: Path, start_byte: int, start_line: int, limit: int | None,
                    band: RowBand) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(line number, byte offset, band position) of every row of the line range (blank lines are
    no rows), read from the band's index file or computed by one pass and kept there."""

    def scan() -> dict[str, np.ndarray]:
        starts, ends, sure = _line_spans(path, start_byte, limit)
        numbers = np.arange(start_line, start_line + len(starts), dtype=np.int64)
        rows = sure.copy()
        with open(path, "rb") as f:  # a line that does not start with a visible ASCII byte: a row only if not blank once decoded
            for i in np.flatnonzero(~sure).tolist():
                f.seek(int(starts[i]))
                item = _decode_line(path, int(numbers[i]), _strip_line(f.read(int(ends[i] - starts[i])), int(numbers[i])))
                rows[i] = not isinstance(item, Line) or bool(item.text.strip())
        lines = numbers[rows]
        return {"lines": lines, "offsets": starts[rows], "positions": band.positions({"file": str(path)}, "line", lines.tolist())}

    found = kept_index(band.index, scan)
    return found["lines"], found["offsets"], found["positions"]


SPAN_CHUNK = 1 << 22  # bytes looked at at once while finding lines
# ASCII bytes that are not white space to str.strip(): a line that starts with one is never blank.
_VISIBLE = np.array([0x21 <= b <= 0x7F or (b < 0x20 and b not in (9, 10, 11, 12, 13, 28, 29, 30, 31)) for b in range(256)])


def _line_spans(path: Path, start_byte: int, limit: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where each line from `start_byte` starts and ends (before its LF), and whether it surely is
    no blank line (its first byte is visible ASCII, as a JSON line's `{`), for at most `limit`
    lines: found with numpy over chunks of the file, not line by line in Python. Only the LFs and
    each line's first byte are looked at: counting visible bytes over every byte took 30x longer
    than finding the LFs, and only the rare line that starts otherwise needs a closer look."""
    ends, firsts = [], []
    at, lines, after_last, line_starts_here = start_byte, 0, start_byte, True
    with open(path, "rb") as f:
        f.seek(start_byte)
        while (limit is None or lines < limit) and (chunk := f.read(SPAN_CHUNK)):
            data = np.frombuffer(chunk, dtype=np.uint8)
            newlines = np.flatnonzero(data == 10)
            begins = newlines[newlines + 1 < len(data)] + 1  # lines that begin inside this chunk after an LF
            firsts.append(data[np.r_[0, begins] if line_starts_here else begins])
            ends.append(newlines + at)
            if len(newlines):
                after_last = at + int(newlines[-1]) + 1
            line_starts_here = bool(data[-1] == 10)
            at += len(chunk)
            lines += len(newlines)
        if (limit is None or lines < limit) and after_last < at:  # a last line without LF
            ends.append(np.array([at]))
    end = np.concatenate(ends).astype(np.int64) if ends else np.zeros(0, dtype=np.int64)
    first = np.concatenate(firsts) if firsts else np.zeros(0, dtype=np.uint8)
    if limit is not None:
        end = end[:limit]
    start = np.r_[start_byte, end[:-1] + 1].astype(np.int64)[: len(end)]
    sure = _VISIBLE[first[: len(end)]] & (end > start)
    return start, end, sure


def kept_index(index: Path | None, compute: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Arrays about a partition's rows (their band positions, where they are), read from the index
    file a band task kept, or computed and kept there for the next band (written whole or not at
    all, so a killed task leaves nothing half-written)."""
    if index is not None:
        try:
            with np.load(index) as saved:
                return {name: saved[name] for name in saved.files}
        except (FileNotFoundError, OSError, ValueError):
            pass
    found = compute()
    if index is not None:
        index.parent.mkdir(parents=True, exist_ok=True)
        tmp = index.with_name(f"{index.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            np.savez(f, **found)
        os.replace(tmp, index)
    return found


def _ijson_items() -> Any:
    """ijson's `items`, from its C backend (yajl2_c) where it was built, else the pure-Python one.

    The C backend is about ten times faster; the Python backend gives the same values, so a machine
    without the compiled extension still reads every file, only more slowly.
    """
    global _ITEMS
    if _ITEMS is None:
        try:
            _ITEMS = functools.partial(ijson.get_backend("yajl2_c").items, buf_size=READ_CHUNK)
        except ImportError:  # the Python backend holds several buffers per read: keep them small
            _ITEMS = functools.partial(ijson.get_backend("python").items, buf_size=64 << 10)
    return _ITEMS


_ITEMS: Any = None
READ_CHUNK = 1 << 20          # bytes ijson asks for at a time
RAW_KEEP = 1 << 16            # bytes of an unreadable element kept for its rejection record
CHECK_LIMIT = 64 << 20        # larger elements met while recovering are handed back to ijson


class _FromOffset:
    """A byte stream that ijson reads as `[` followed by the file from `offset` on.

    Restarting ijson after an unreadable element needs a stream that looks like an array whose
    first element is the next good one; seeking the file there costs nothing, copying it would.
    """

    def __init__(self, f: BinaryIO, offset: int):
        f.seek(offset)
        self.f, self.head = f, b"["

    def read(self, n: int = -1) -> bytes:
        if n == 0:
            return b""
        head, self.head = self.head, b""
        return head + self.f.read(n if n < 0 else max(n - len(head), 1))


class _Scanner:
    """Walks a JSON array byte by byte from a known position: where elements start and end, and on which line.

    Only used after ijson has failed, to find the element that broke it and the next place to
    resume, so it may be slow; it never holds more than one element (and at most CHECK_LIMIT of it).
    """

    def __init__(self, f: BinaryIO, offset: int, line: int):
        f.seek(offset)
        self.f, self.buf, self.pos, self.offset, self.line = f, b"", 0, offset, line

    def _fill(self) -> bool:
        chunk = self.f.read(READ_CHUNK)
        self.offset += self.pos
        self.buf, self.pos = self.buf[self.pos :] + chunk, 0
        return bool(chunk)

    def at(self) -> int:
        """File offset of the next unread byte."""
        return self.offset + self.pos

    def peek(self) -> bytes:
        """The next byte that is not white space (b"" at the end of the file), not consumed."""
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in b" \t\r\n":
                self.line += self.buf[self.pos] == 10
                self.pos += 1
            if self.pos < len(self.buf) or not self._fill():
                return self.buf[self.pos : self.pos + 1]

    def take(self) -> None:
        self.pos += 1

    def element(self, keep: int) -> tuple[bytes, bool, bool]:
        """Consume one element: (its first `keep` bytes, whether all were kept, whether it ended before EOF).

        A container ends with its closing bracket, a string with its closing quote, any other
        scalar at white space, `,`, `]` or `}`; so a missing comma cannot merge two elements.
        """
        kept, whole = bytearray(), True
        depth, in_string, escaped = 0, False, False
        while True:
            if self.pos >= len(self.buf) and not self._fill():
                return bytes(kept), whole, False
            buf, start, i, end = self.buf, self.pos, self.pos, -1
            while i < len(buf):
                c = buf[i]
                i += 1
                if c == 10:
                    self.line += 1
                if in_string:
                    if escaped:
                        escaped = False
                    elif c == 92:  # backslash
                        escaped = True
                    elif c == 34:  # quote
                        in_string = False
                        if depth == 0:
                            end = i
                            break
                elif c == 34:
                    in_string = True
                elif c in b"[{":
                    depth += 1
                elif c in b"]}":
                    depth -= 1
                    if depth <= 0:
                        end = i if depth == 0 else i - 1
                        break
                elif depth == 0 and c in b", \t\r\n":
                    end = i - 1
                    self.line -= c == 10
                    break
            stop = i if end < 0 else end
            if whole and len(kept) + stop - start <= keep:
                kept += buf[start:stop]
            else:
                kept += buf[start : start + max(0, keep - len(kept))]
                whole = False
            self.pos = stop
            if end >= 0:
                return bytes(kept), whole, True


def iter_json_array(path: Path, where: dict[str, Any] | None = None) -> Iterator[tuple[dict, Any] | RawError]:
    """Elements of a top-level JSON array, parsed one at a time by ijson, never the file whole.

    Each element comes as ({"file", "index"} + `where`, value); ijson cannot say on which line an
    element starts without slowing down, so good elements carry their index, not a line. An
    element that is not valid JSON or not valid UTF-8 becomes a RawError naming its index and
    line, and reading goes on after it; when the array itself is cut off, the rest of the file is
    one RawError. Only a file that is not an array at all is a SourceError.
    """
    base = {"file": str(path), **(where or {})}
    with open_binary(path) as f:
        head = f.read(4096)
        skip = len(BOM) if head.startswith(BOM) else 0
        body = head[skip:]
        stripped = body.lstrip()
        line = 1 + body[: len(body) - len(stripped)].count(b"\n")
        if stripped[:1] != b"[":
            raise SourceError(f"{path}: line {line}: expected a JSON array ('[') or JSON Lines")
        offset, index = skip + len(body) - len(stripped) + 1, 0
        restarted_at: int | None = None
        while True:
            count = 0
            try:
                for value in _ijson_items()(_FromOffset(f, offset), "item", use_float=True):
                    yield ({**base, "index": index + count}, value)
                    count += 1
                return
            except (ijson.JSONError, UnicodeDecodeError):
                pass
            # ijson stopped at or after element `index + count`: find the culprit, resume behind it.
            scan = _Scanner(f, offset, line)
            for _ in range(count):
                scan.peek()
                scan.element(0)
                if scan.peek() == b",":
                    scan.take()
            index += count
            char = scan.peek()
            loc = {**base, "line": scan.line, "index": index}
            if char == b"]":
                scan.take()
                if scan.peek():
                    yield RawError(loc, "malformed_json", "", detail=f"data after the end of the JSON array at line {scan.line}")
                return
            if not char:
                yield RawError(loc, "truncated_json", "", detail=f"the JSON array ends early (no ']') at line {scan.line}")
                return
            start_at, start_line = scan.at(), scan.line
            raw, whole, ended = scan.element(CHECK_LIMIT if restarted_at != start_at else RAW_KEEP)
            if not ended:
                yield RawError(loc, "truncated_json", raw[:RAW_KEEP].decode("utf-8", "replace"),
                               detail=f"the JSON array ends early, inside element {index} (line {start_line})")
                return
            error = _element_error(raw, whole, start_line)
            if error is None and not whole:
                # Too big to check here: let ijson read it once more, and reject it if ijson fails on it again.
                offset, line, restarted_at = start_at, start_line, start_at
                continue
            if error is None:  # a value json accepts and yajl does not (NaN, say)
                yield ({**base, "index": index}, json.loads(raw))
            else:
                yield RawError(loc, error[0], raw[:RAW_KEEP].decode("utf-8", "replace"), detail=error[1])
            index += 1
            if scan.peek() == b",":
                scan.take()
            # else `]` (ijson then ends the array) or a missing comma (ijson starts at the next element)
            offset, line, restarted_at = scan.at(), scan.line, None


def _element_error(raw: bytes, whole: bool, line: int) -> tuple[str, str] | None:
    """(reason, detail) when one array element's bytes cannot be read, else None."""
    if not whole:
        return ("malformed_json", f"element at line {line} could not be parsed (over {CHECK_LIMIT >> 20} MiB)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return ("invalid_utf8", f"invalid UTF-8 at byte {e.start} of the element at line {line}")
    try:
        json.loads(text)
    except json.JSONDecodeError as e:
        return ("malformed_json", f"{e.msg} at line {line + e.lineno - 1} column {e.colno}")
    return None


def iter_csv(path: Path, delimiter: str, header: bool, columns: list[str] | None) -> Iterator[tuple[dict, Any] | RawError]:
    errors: list[RawError] = []

    def good_lines() -> Iterator[str]:
        for item in iter_lines(path):
            if isinstance(item, RawError):
                errors.append(item)
                continue
            yield item.text + "\n"

    reader = csv.reader(good_lines(), delimiter=delimiter, quoting=csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL)
    names = columns
    for fields in reader:
        yield from errors
        errors.clear()
        if names is None and header:
            names = fields
            continue
        loc = {"file": str(path), "line": reader.line_num}
        if not fields or (len(fields) == 1 and not fields[0].strip()):
            continue
        if names is None:
            yield (loc, fields)
        elif len(fields) != len(names):
            yield RawError(loc, "wrong_field_count", delimiter.join(fields), detail=f"expected {len(names)} fields, found {len(fields)}")
        else:
            yield (loc, dict(zip(names, fields, strict=True)))
    yield from errors


def iter_parquet(path: Path, row_groups: list[int] | None = None) -> Iterator[tuple[dict, Any]]:
    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises several types for a broken file
        raise SourceError(f"{path}: not a readable Parquet file ({e})") from None
    groups = range(pf.num_row_groups) if row_groups is None else row_groups
    offsets = [0]
    for i in range(pf.num_row_groups):
        offsets.append(offsets[-1] + pf.metadata.row_group(i).num_rows)
    for g in groups:
        table = pf.read_row_group(g)
        for j, row in enumerate(table.to_pylist()):
            yield ({"file": str(path), "row": offsets[g] + j}, row)


def iter_rows(path: Path, *, columns: list[str] | None = None, header: bool | None = None, start_byte: int = 0,
              start_line: int = 1, limit: int | None = None, row_groups: list[int] | None = None,
              band: RowBand | None = None) -> Iterator[tuple[dict, Any] | RawError | Unread]:
    """Rows of any supported data file, chosen by its suffix (and first character for `.json`).
    `band`: rows to pass over unparsed, where the format allows (JSON Lines), or once a first band
    has kept them (a JSON array: `spool`)."""
    suffix = data_suffix(path)
    if suffix in (".jsonl", ".ndjson") or (suffix == ".json" and _first_char(path) != b"["):
        yield from iter_json_lines(path, start_byte, start_line, limit, band)
    elif suffix == ".json":
        if band is not None and band.index is not None and limit is None:  # later bands read the rows kept
            yield from spool.read_by_band(lambda: iter_json_array(path), band, [file_stamp(path)], ({"file": str(path)}, "index"))
            return
        for n, item in enumerate(iter_json_array(path)):
            if limit is not None and n >= limit:
                return
            yield item
    elif suffix == ".parquet":
        for n, item in enumerate(iter_parquet(path, row_groups)):
            if limit is not None and n >= limit:
                return
            yield item
    elif suffix in (".csv", ".tsv"):
        delimiter = "\t" if suffix == ".tsv" else ","
        for n, item in enumerate(iter_csv(path, delimiter, header if header is not None else columns is None, columns)):
            if limit is not None and n >= limit:
                return
            yield item
    else:
        raise SourceError(f"{path}: unsupported file type {suffix!r} (json, jsonl, parquet, csv, tsv, optionally .gz)")


def is_line_splittable(path: Path) -> bool:
    """JSON Lines files can be cut into line ranges for several tasks; other formats are read whole."""
    suffix = data_suffix(path)
    if path.suffix == ".gz":
        return False
    return suffix in (".jsonl", ".ndjson") or (suffix == ".json" and _first_char(path) != b"[")
