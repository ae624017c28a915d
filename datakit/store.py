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
from datakit.hashing import file_stamp

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


# A piece of a Parquet file: some of its row groups, or rows of them, named by one string (`piece`)
# wherever a file's path goes (task results, markers, the corpus steps' file lists). A partition
# task keeps one work file: each language's full row groups, then what is left of every language
# in shared row groups, in order of language. A band task of reading by quota keeps a few rows in
# each of a hundred languages: a hundred small files cost more to write, open and read than the rows
# in them, and so did a row group per language (a footer of a hundred row groups, parsed for every
# piece a shard reads).
PIECE = "#row-groups="
Part = tuple[int, int | None, int | None]  # a row group, with a row range of it (None: all its rows)


def piece(path: str | Path, parts: list[Part]) -> str:
    """`path#row-groups=3,7,9:120-450`: row groups 3 and 7, and rows 120..449 of row group 9."""
    return f"{path}{PIECE}{','.join(str(g) if a is None else f'{g}:{a}-{b}' for g, a, b in parts)}"


def open_piece(ref: str) -> tuple[pq.ParquetFile, list[tuple[int, int, int]]]:
    """The file a piece is in, its footer parsed once per process (a task's file is opened once per
    language), and the piece's (row group, first row, end row) in order: every row group for a
    plain path."""
    path, _, spec = ref.partition(PIECE)
    stamp = file_stamp(path)
    pf = pq.ParquetFile(path, metadata=None if stamp is None else _footer(path, stamp))  # no stamp: the open says why
    parts = []
    for entry in spec.split(",") if spec else map(str, range(pf.num_row_groups)):
        group, _, rows = entry.partition(":")
        first, end = map(int, rows.split("-")) if rows else (0, pf.metadata.row_group(int(group)).num_rows)
        parts.append((int(group), first, end))
    return pf, parts


@functools.lru_cache(maxsize=64)  # a shard reads one piece of many files; footers are small (few row groups)
def _footer(path: str, stamp: tuple[int, ...]) -> pq.FileMetaData:
    return pq.read_metadata(path)


def _read_parts(pf: pq.ParquetFile, parts: list[tuple[int, int, int]], columns: list[str] | None) -> pa.Table:
    """The rows of the parts, in order: their row groups read at once, then the parts' rows taken
    (a copy: a slice would keep the whole shared row group alive with it)."""
    groups = sorted({g for g, _, _ in parts})
    table = pf.read_row_groups(groups, columns=columns, use_threads=False)
    sizes = [pf.metadata.row_group(g).num_rows for g in groups]
    if [(g, 0, n) for g, n in zip(groups, sizes, strict=True)] == list(parts):
        return table  # whole row groups in file order: as read
    at = dict(zip(groups, np.cumsum([0, *sizes]).tolist(), strict=False))
    return table.take(pa.array(np.concatenate([np.arange(at[g] + first, at[g] + end) for g, first, end in parts])))


def read_piece(ref: str, columns: list[str] | None = None) -> pa.Table:
    """The rows of a piece (a path: the whole file), in order."""
    pf, parts = open_piece(ref)
    return _read_parts(pf, parts, columns)


def take_rows(ref: str, rows: tuple[int, ...] | list[int], columns: list[str] | None = None) -> pa.Table:
    """The given rows of a Parquet file or piece (numbered within it), reading only the row groups
    that hold them."""
    pf, parts = open_piece(ref)
    starts = np.cumsum([0] + [end - first for _, first, end in parts])
    wanted = np.asarray(rows, dtype=np.int64)
    held = sorted(set((np.searchsorted(starts, wanted, side="right") - 1).tolist()))
    table = _read_parts(pf, [parts[i] for i in held], columns)
    offset = np.concatenate([np.arange(starts[i], starts[i + 1]) for i in held])
    local = np.searchsorted(offset, wanted)
    return table.take(pa.array(local))
