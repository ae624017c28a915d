"""The ways datakit tells things apart: canonical JSON, a file's sha256, and a file's stamp.

Everything that is hashed or compared across processes (record ids, seeds, cache keys, recipe
fingerprints, the `meta` and `scores` columns) goes through `canonical_json`, so one spelling of a
value gives one hash everywhere. Files are hashed in chunks, so a large shard never sits in memory.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import orjson

_dumps, _SORTED = orjson.dumps, orjson.OPT_SORT_KEYS  # bound once: a record takes about five of these calls


def canonical_bytes(value: Any) -> bytes:
    """`canonical_json` as UTF-8 bytes, what a hash takes (no detour through a str)."""
    try:
        return _dumps(value, option=_SORTED)
    except TypeError:
        return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode("utf-8")


def canonical_json(value: Any) -> str:
    """JSON with sorted keys, no spaces and non-ASCII kept: the same value always gives the same text.

    orjson writes it (a record's id, keys and meta take five of these; the standard library's
    encoder was a third of construction time). Strings, lists and integers come out exactly as
    `json.dumps` wrote them, so ids kept their values; floats below 1e-4 are spelled `0.00001`
    where `json.dumps` wrote `1e-05` (since datakit 0.2). What orjson refuses (keys that are not
    strings, integers beyond 64 bits) falls back to the standard library."""
    return canonical_bytes(value).decode("utf-8")


def file_sha256(path: Path | str) -> str:
    """sha256 of a file's bytes, read 1 MiB at a time."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def file_stamp(path: Path | str) -> tuple[int, int, int, int] | None:
    """What tells one state of a file from another without reading it (size, modification and
    change times, inode): the key of what a process keeps of a file it read (line counts, line
    ranges, Parquet footers), so a file rewritten in place is read again. None when the file cannot
    be stat'ed (the caller then reads it plainly, and says why it cannot)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino
