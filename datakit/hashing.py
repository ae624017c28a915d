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


def canonical_json(value: Any) -> str:
    """JSON with sorted keys, no spaces and non-ASCII kept: the same value always gives the same text."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def file_sha256(path: Path | str) -> str:
    """sha256 of a file's bytes, read 1 MiB at a time."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()
