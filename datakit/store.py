"""Task outputs that are atomic, marked complete, and addressed by what produced them.

Every task writes into `<out>/.datakit/<stage>/<fingerprint>/`, where the fingerprint hashes the
settings and inputs the stage depends on. A file is written under a temporary name and renamed
into place; the task's completion marker (`<task>.done.json`, holding its result) is written
last. A re-run skips tasks whose marker exists; a changed setting changes the fingerprint, so
outputs of different settings are never mixed, and stages before the change are reused.
Later phases read back just the rows they need of a task's Parquet output (`take_rows`).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from datakit.errors import OutputError

WORK_DIR = ".datakit"


def explain_os_error(e: OSError, path: Path) -> OutputError:
    if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        what = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
                errno.EFBIG: "file size limit reached"}[e.errno]
        return OutputError(f"{what} while writing {path}; nothing half-written was kept: free some space "
                           "and run the same command again to resume")
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return OutputError(f"cannot write {path}: permission denied (is the output folder writable?)")
    return OutputError(f"cannot write {path}: {e.strerror or e}")


@contextlib.contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """A temporary path beside `final`, renamed onto it when the block succeeds, removed if it fails."""
    tmp = final.with_name(f".{final.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        os.replace(tmp, final)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise explain_os_error(e, final) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json(path: Path, value: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(value, ensure_ascii=False, indent=1, sort_keys=True) + "\n", encoding="utf-8")


class StageDir:
    """One stage's outputs for one fingerprint."""

    def __init__(self, out: Path, stage: str, fingerprint: str):
        self.root = out / WORK_DIR / stage / fingerprint[:16]
        self.stage = stage

    def file(self, *parts: str) -> Path:
        return self.root.joinpath(*parts)

    def marker(self, task: str) -> Path:
        return self.root / "_done" / f"{task}.done.json"

    def result(self, task: str) -> dict[str, Any] | None:
        try:
            return json.loads(self.marker(task).read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def complete(self, task: str, result: dict[str, Any]) -> dict[str, Any]:
        """Mark the task done with what it hands the driver. Compact orjson, not `write_json`'s
        indented form: a build writes one marker per task (thousands, read back only on a resume),
        and the standard library took about a millisecond for each."""
        with atomic_path(self.marker(task)) as tmp:
            tmp.write_bytes(orjson.dumps(result, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS))
        return result


def prune(out: Path, keep: dict[str, set[str]]) -> None:
    """Remove work folders of fingerprints no longer in use (stage -> fingerprints to keep)."""
    base = out / WORK_DIR
    if not base.is_dir():
        return
    for stage_dir in base.iterdir():
        if not stage_dir.is_dir():
            continue
        wanted = {fp[:16] for fp in keep.get(stage_dir.name, set())}
        for fp_dir in stage_dir.iterdir():
            if fp_dir.name not in wanted:
                shutil.rmtree(fp_dir, ignore_errors=True)


# A piece of a Parquet file: some of its row groups, named by one string (`piece`) wherever a file's
# path goes (task results, markers, the corpus steps' file lists). A partition task keeps one work
# file with a run of row groups per language, not a file per language: a band task of reading by
# quota keeps a few rows in each of a hundred languages, and a hundred small files cost more to
# write, open and read than the rows in them.
PIECE = "#row-groups="


def piece(path: str | Path, groups: list[int]) -> str:
    return f"{path}{PIECE}{','.join(map(str, groups))}"


def open_piece(ref: str) -> tuple[pq.ParquetFile, list[int]]:
    """The file a piece is in, its footer parsed once per process (a task's file is opened once per
    language), and the piece's row groups: every row group for a plain path."""
    path, _, groups = ref.partition(PIECE)
    st = os.stat(path)
    pf = pq.ParquetFile(path, metadata=_footer(path, st.st_size, st.st_mtime_ns))
    return pf, ([int(g) for g in groups.split(",")] if groups else list(range(pf.num_row_groups)))


@functools.lru_cache(maxsize=16)  # the pieces of a file are mostly read one after another
def _footer(path: str, size: int, mtime_ns: int) -> pq.FileMetaData:
    return pq.read_metadata(path)


def read_piece(ref: str, columns: list[str] | None = None) -> pa.Table:
    """The rows of a piece (a path: the whole file), in order."""
    pf, groups = open_piece(ref)
    return pf.read_row_groups(groups, columns=columns, use_threads=False)


def take_rows(ref: str, rows: tuple[int, ...] | list[int], columns: list[str] | None = None) -> pa.Table:
    """The given rows of a Parquet file or piece (numbered within it), reading only the row groups
    that hold them."""
    pf, groups = open_piece(ref)
    starts = np.cumsum([0] + [pf.metadata.row_group(g).num_rows for g in groups])
    wanted = np.asarray(rows, dtype=np.int64)
    held = sorted(set((np.searchsorted(starts, wanted, side="right") - 1).tolist()))
    table = pf.read_row_groups([groups[i] for i in held], columns=columns)
    offset = np.concatenate([np.arange(starts[i], starts[i + 1]) for i in held])
    local = np.searchsorted(offset, wanted)
    return table.take(pa.array(local))
