"""The two ways datakit turns things into stable bytes: canonical JSON and a file's sha256.

Everything that is hashed or compared across processes (record ids, seeds, cache keys, recipe
fingerprints, the `meta` and `scores` columns) goes through `canonical_json`, so one spelling of a
value gives one hash everywhere. Files are hashed in chunks, so a large shard never sits in memory.
"""

from __future__ import annotations

import hashlib
import json
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
