"""Row-shaped sources (one record per row): local data files or a Hub dataset, split into tasks.

Local JSON Lines files are cut into line ranges of `rows_per_task` rows, Parquet files by row
group, other files are read whole; a Hub dataset is split by its data files (streaming shards).
`--sample N` reads only the first N rows of the source, in one task.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from datakit import languages
from datakit.errors import SourceError, UnknownLanguageError
from datakit.hashing import canonical_bytes
from datakit.recipe import Source
from datakit.sources import base, files, hub
from datakit.sources.base import Partition, Passed, RawError, ReadContext, Unread


def local_root(source: Source, ctx: ReadContext) -> Path:
    """The source's `path`, resolved against the data folder; a missing path is an error naming it."""
    assert source.path is not None
    path = Path(source.path)
    if not path.is_absolute():
        if ctx.data_dir is None:
            raise SourceError(f"source {source.name!r}: `path: {source.path}` is relative but no data folder is set (--data-dir or `data_dir:` in the recipe)")
        path = ctx.data_dir / path
    if not path.exists():
        raise SourceError(f"source {source.name!r}: no such file or folder: {path}")
    return path


def relative(path: Path, ctx: ReadContext) -> str:
    """A file's name for provenance: relative to the data folder, so output does not depend on where it lives."""
    return _relative(str(path), str(ctx.data_dir) if ctx.data_dir else None)


@functools.lru_cache(maxsize=1024)
def _relative(path: str, data_dir: str | None) -> str:
    if data_dir is not None:
        try:
            return Path(path).resolve().relative_to(Path(data_dir).resolve()).as_posix()
        except ValueError:
            pass
    return Path(path).name


def matching_files(source: Source, root: Path, suffixes: tuple[str, ...] | None = None) -> list[tuple[Path, re.Match | None]]:
    """Files under a source folder (sorted), filtered by the source's `files` pattern on their relative path.

    Matches that cannot contribute a row are left out with a warning naming them: a folder whose
    name matches the pattern (where a language's file was expected) and an empty file. Only a
    pattern that matches nothing at all is an error."""
    if root.is_file():
        if _is_empty(root):
            base.warn(source.name, root.name, "empty_file", "the file is empty: the source has no rows")
        return [(root, None)]
    pattern = re.compile(source.files) if source.files else None
    found, skipped = [], 0
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        m = (pattern.fullmatch(rel) or pattern.fullmatch(p.name)) if pattern is not None else None
        if not p.is_file():
            if m is not None:
                base.warn(source.name, rel, "folder_not_file", f"matches `files` but is a folder, not a file: skipped{_whose(m)}")
                skipped += 1
            continue
        if (pattern is not None and m is None) or (pattern is None and suffixes is not None and files.data_suffix(p) not in suffixes):
            continue
        if _is_empty(p):
            base.warn(source.name, rel, "empty_file", f"the file is empty: skipped{_whose(m)}")
            skipped += 1
            continue
        found.append((p, m))
    if not found and not skipped:
        what = f"matching {source.files!r}" if pattern else "with a data file suffix"
        raise SourceError(f"source {source.name!r}: no files {what} under {root}")
    return found


def _whose(match: re.Match | None) -> str:
    """`, language xx contributes nothing` for a match that names a language."""
    lang = match.groupdict().get("lang") if match is not None else None
    return f"; language {lang!r} gets nothing from it" if lang else ""


def _is_empty(path: Path) -> bool:
    """A file with no rows to give: no bytes, or only white space (or an empty JSON array)."""
    if path.stat().st_size > 4096 and path.suffix != ".gz":
        return False
    with files.open_binary(path) as f:
        head = f.read(4097)
    return len(head) <= 4096 and head.removeprefix(files.BOM).strip() in (b"", b"[]")


def pair_langs(config: str | None) -> tuple[str, ...]:
    """The languages a Hub config like `en-sw` names, when it names them; () when it does not."""
    if not config:
        return ()
    try:
        return tuple(languages.code(p) for p in config.split("-"))
    except UnknownLanguageError:
        return ()


def partitions(source: Source, ctx: ReadContext) -> list[Partition]:
    if source.hub is not None:
        return _hub_partitions(source, ctx)
    root = local_root(source, ctx)
    found = [p for p, _ in matching_files(source, root, files.ROW_SUFFIXES)]
    if ctx.sample is not None:
        return [Partition(source.name, "sample", {"files": [str(p) for p in found], "limit": ctx.sample})]
    parts: list[Partition] = []
    for path in found:
        rel = relative(path, ctx)
        if files.is_line_splittable(path):
            marks, lines = files.line_marks(path, ctx.rows_per_task)  # lines: what reading by quota plans from (blank ones too)
            for start_byte, start_line in marks:
                key = f"{rel}:{start_line}"
                parts.append(Partition(source.name, key, {"files": [str(path)], "start_byte": start_byte, "start_line": start_line,
                                                          "limit": ctx.rows_per_task,
                                                          "rows": min(ctx.rows_per_task, lines - start_line + 1)}))
        elif files.data_suffix(path) == ".parquet":
            meta = pq.ParquetFile(path).metadata
            groups, rows = [], 0
            for g in range(meta.num_row_groups):
                groups.append(g)
                rows += meta.row_group(g).num_rows
                if rows >= ctx.rows_per_task or g == meta.num_row_groups - 1:
                    parts.append(Partition(source.name, f"{rel}:rg{groups[0]}", {"files": [str(path)], "row_groups": groups, "rows": rows}))
                    groups, rows = [], 0
        else:
            parts.append(Partition(source.name, rel, {"files": [str(path)]}))
    return parts


def _hub_partitions(source: Source, ctx: ReadContext) -> list[Partition]:
    configs = source.configs or [source.config]
    parts = []
    for config in configs:
        langs = pair_langs(config)
        if langs and not all(ctx.selected(code) for code in langs):
            continue
        if ctx.sample is not None:
            parts.append(Partition(source.name, f"{config or 'default'}:sample", {"config": config, "shard": 0, "shards": 1, "limit": ctx.sample}, langs))
            continue
        n = hub.num_shards(source, config, ctx.mirror)
        rows = hub.shard_rows(source, config, ctx.mirror) or []  # what reading by quota plans from, when the footers tell
        parts.extend(Partition(source.name, f"{config or 'default'}:{i}", {"config": config, "shard": i, "shards": n,
                                                                          **({"rows": rows[i]} if len(rows) == n else {})}, langs)
                     for i in range(n))
    return parts


def read_rows(source: Source, partition: Partition, ctx: ReadContext) -> Iterator[tuple[dict, Any] | RawError | Unread]:
    """The partition's rows as (location, value), RawErrors for rows that could not be parsed, and
    `Unread` for rows outside the partition's band that the format lets us pass over unparsed."""
    p = partition.params
    band = ctx.band(partition)
    if source.hub is not None:
        if band is not None:
            band = dataclasses.replace(band, index=_band_index(partition, "hub", p.get("limit"), ctx))
        yield from hub.iter_hub_rows(source, p["config"], ctx.mirror, p["shard"], p["shards"], p.get("limit"), band)
        return
    columns = source.columns if isinstance(source.columns, list) else None
    remaining = p.get("limit")
    for name in p["files"]:
        path = Path(name)
        rel = relative(path, ctx)
        rows = files.iter_rows(path, columns=columns, header=source.header, start_byte=p.get("start_byte", 0),
                               start_line=p.get("start_line", 1), limit=remaining, row_groups=p.get("row_groups"),
                               band=_file_band(band, partition, rel, remaining, ctx) if band else None)
        for item in rows:
            loc = item.loc if isinstance(item, (RawError, Unread)) else item[0]
            if not isinstance(item, Passed):
                loc["file"] = rel
            yield item
            if remaining is not None:
                remaining -= item.count if isinstance(item, Passed) else 1
                if remaining <= 0:
                    return


def _file_band(band: base.RowBand, partition: Partition, rel: str, limit: int | None, ctx: ReadContext) -> base.RowBand:
    """The partition's band for one of its files: positions of locations that name the file as the
    recipe does (relative), and an index file for them."""
    return dataclasses.replace(band, where={"file": rel}, index=_band_index(partition, rel, limit, ctx))


def _band_index(partition: Partition, what: str, limit: int | None, ctx: ReadContext) -> Path | None:
    """Where a band task may keep the positions of the rows of `what` (a file of the partition, or
    its Hub shard), named by everything they depend on; None where the task keeps nothing."""
    if ctx.index_dir is None:
        return None
    p = partition.params
    key = canonical_bytes([partition.source, partition.key, list(partition.langs), what, p.get("start_byte", 0),
                           p.get("start_line", 1), limit, ctx.seed])
    return Path(ctx.index_dir) / f"{hashlib.blake2b(key, digest_size=12).hexdigest()}.npz"
