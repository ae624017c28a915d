"""Reading local files row by row, without ever loading a file whole.

Lines are split on LF in binary, so a stray CR inside a line cannot shift a parallel file out of
alignment; each line is decoded on its own, so one line of bad UTF-8 is one rejected row, not a
crashed build. A byte-order mark and CRLF line ends are taken off. JSON arrays are parsed
element by element; JSON Lines files that carry a `.json` name (BELLE's) are recognised by their
first character.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow.parquet as pq

from datakit.errors import SourceError
from datakit.sources.base import RawError

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


def iter_lines(path: Path, start_byte: int = 0, start_line: int = 1, limit: int | None = None) -> Iterator[Line | RawError]:
    """Lines of a text file (1-based numbers), each decoded on its own."""
    with open_binary(path) as f:
        if start_byte:
            f.seek(start_byte)
        for number, raw in enumerate(f, start_line):
            if limit is not None and number - start_line >= limit:
                return
            if number == 1 and raw.startswith(BOM):
                raw = raw[len(BOM) :]
            if raw.endswith(b"\n"):
                raw = raw[:-1]
            if raw.endswith(b"\r"):
                raw = raw[:-1]
            try:
                yield Line(number, raw.decode("utf-8"))
            except UnicodeDecodeError as e:
                yield RawError(
                    {"file": str(path), "line": number},
                    "invalid_utf8",
                    raw.decode("utf-8", "replace"),
                    detail=f"invalid UTF-8 at byte {e.start} of the line",
                )


def count_lines(path: Path) -> int:
    """Number of lines (a last line without LF counts)."""
    n, last = 0, b"\n"
    with open_binary(path) as f:
        while chunk := f.read(1 << 22):
            n += chunk.count(b"\n")
            last = chunk[-1:]
    return n + (last != b"\n")


def line_offsets(path: Path, every: int) -> list[tuple[int, int]]:
    """(byte offset, line number) at the start of every `every`-th line: where line-range tasks start."""
    marks = [(0, 1)]
    line, pos = 1, 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            start = 0
            while (i := chunk.find(b"\n", start)) != -1:
                line += 1
                start = i + 1
                if (line - 1) % every == 0:
                    marks.append((pos + start, line))
            pos += len(chunk)
    if marks[-1][0] >= pos and len(marks) > 1:
        marks.pop()
    return marks


# ---------------------------------------------------------------- rows as dicts


def _first_char(path: Path) -> bytes:
    with open_binary(path) as f:
        head = f.read(4096).lstrip(BOM).lstrip()
    return head[:1]


def iter_json_lines(path: Path, start_byte: int = 0, start_line: int = 1, limit: int | None = None) -> Iterator[tuple[dict, Any] | RawError]:
    for item in iter_lines(path, start_byte, start_line, limit):
        if isinstance(item, RawError):
            yield item
            continue
        if not item.text.strip():
            continue
        loc = {"file": str(path), "line": item.number}
        try:
            value = json.loads(item.text)
        except json.JSONDecodeError as e:
            yield RawError(loc, "malformed_json", item.text, detail=f"{e.msg} at column {e.colno}")
            continue
        yield (loc, value)


def iter_json_array(path: Path) -> Iterator[tuple[dict, Any]]:
    """Elements of a top-level JSON array, parsed one at a time from a stream."""
    decoder = json.JSONDecoder()
    with open_binary(path) as raw:
        reader = _ArrayReader(path, io.TextIOWrapper(raw, encoding="utf-8-sig", errors="strict"))
        reader.skip_ws()
        if not reader.peek("["):
            raise SourceError(f"{path}: line {reader.line}: expected a JSON array ('[') or JSON Lines")
        reader.pos += 1
        index = 0
        while True:
            reader.skip_ws()
            if reader.peek("]"):
                return
            if index:
                if not reader.peek(","):
                    raise SourceError(f"{path}: line {reader.line}: expected ',' or ']' after array element {index}")
                reader.pos += 1
                reader.skip_ws()
            start_line = reader.line
            value = reader.decode(decoder)
            yield ({"file": str(path), "line": start_line, "index": index}, value)
            index += 1


class _ArrayReader:
    """A buffer over a text stream that JSONDecoder.raw_decode can work on, refilled as needed."""

    def __init__(self, path: Path, text: io.TextIOBase):
        self.path, self.text = path, text
        self.buf, self.pos, self.line, self.eof = "", 0, 1, False

    def fill(self) -> bool:
        if self.eof:
            return False
        try:
            chunk = self.text.read(1 << 20)
        except UnicodeDecodeError as e:
            raise SourceError(f"{self.path}: invalid UTF-8 after line {self.line} ({e.reason}); cannot read it as JSON") from None
        self.buf = self.buf[self.pos :] + chunk
        self.pos = 0
        self.eof = not chunk
        return bool(chunk)

    def peek(self, char: str) -> bool:
        if self.pos >= len(self.buf):
            self.fill()
        return self.buf[self.pos : self.pos + 1] == char

    def skip_ws(self) -> None:
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in " \t\r\n":
                self.line += self.buf[self.pos] == "\n"
                self.pos += 1
            if self.pos < len(self.buf) or not self.fill():
                return

    def decode(self, decoder: json.JSONDecoder) -> Any:
        while True:
            try:
                value, end = decoder.raw_decode(self.buf, self.pos)
                if end < len(self.buf) or self.eof:
                    break
            except json.JSONDecodeError as e:
                if self.eof:
                    line = self.line + self.buf.count("\n", self.pos, e.pos)
                    raise SourceError(f"{self.path}: line {line}: malformed JSON array element ({e.msg})") from None
            if not self.fill() and self.pos >= len(self.buf):
                raise SourceError(f"{self.path}: line {self.line}: the JSON array ends early")
        self.line += self.buf.count("\n", self.pos, end)
        self.pos = end
        return value


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
              start_line: int = 1, limit: int | None = None, row_groups: list[int] | None = None) -> Iterator[tuple[dict, Any] | RawError]:
    """Rows of any supported data file, chosen by its suffix (and first character for `.json`)."""
    suffix = data_suffix(path)
    if suffix in (".jsonl", ".ndjson") or (suffix == ".json" and _first_char(path) != b"["):
        yield from iter_json_lines(path, start_byte, start_line, limit)
    elif suffix == ".json":
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
