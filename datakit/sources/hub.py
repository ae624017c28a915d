"""Hub datasets: streamed with `datasets`, or read from a local mirror of the same repository.

A dataset whose data files are JSON arrays (OpenHermes-2.5 is one 1.9 GB array) is not given to
`datasets`: its JSON builder falls back to `json.load` of the whole file for arrays, so memory
would grow with the file. Those files are resolved the way `datasets` resolves them (same
configs, splits and data_files), fetched to the Hub cache on disk (or taken from the mirror), and
read element by element with ijson (`files.iter_json_array`); every other layout keeps streaming
through `datasets`. Rows carry the same location either way, so records do not change.

`--mirror DIR` maps a Hub id `org/name` to `DIR/org/name`, a folder shaped like the repository
(what `hf download --repo-type dataset org/name --local-dir DIR/org/name` writes). Before a build
reads anything, `check_reachable` makes sure every Hub source can be found, so an offline machine
stops at once with a message that names the source and how to point it at local data.
"""

from __future__ import annotations

import functools
import gzip
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from datakit.errors import SourceError
from datakit.hashing import file_stamp
from datakit.recipe import Source
from datakit.sources import files, spool
from datakit.sources.base import Passed, RawError, RowBand, Unread


def mirror_path(hub_id: str, mirror: Path | None) -> Path | None:
    if mirror is None:
        return None
    candidate = mirror / hub_id
    return candidate if candidate.is_dir() else None


def check_reachable(source: Source, mirror: Path | None, timeout: float = 10.0) -> None:
    """Raise SourceError unless the source's Hub id is mirrored locally or answers on the Hub."""
    assert source.hub is not None
    if mirror_path(source.hub, mirror) is not None:
        return
    hint = (
        f"Point it at local data: --mirror DIR with the dataset in DIR/{source.hub} "
        f"(e.g. `hf download --repo-type dataset {source.hub} --local-dir DIR/{source.hub}`), "
        "or give the source a local `path` in the recipe."
    )
    if mirror is not None:
        hint = f"It is not in the mirror either (looked for {mirror / source.hub}). " + hint
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        raise SourceError(f"source {source.name!r}: Hub dataset {source.hub} is unreachable: HF_HUB_OFFLINE is set. {hint}")
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    try:
        HfApi().dataset_info(source.hub, revision=source.revision, timeout=timeout)
    except GatedRepoError:
        raise SourceError(
            f"source {source.name!r}: Hub dataset {source.hub} is gated: accept its terms on the Hub and log in "
            f"(`hf auth login`), or {hint[0].lower()}{hint[1:]}"
        ) from None
    except RepositoryNotFoundError:
        raise SourceError(f"source {source.name!r}: Hub dataset {source.hub} does not exist (or is private). {hint}") from None
    except Exception as e:  # connection errors come in many types (httpx, OSError, timeouts)
        reason = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise SourceError(f"source {source.name!r}: Hub dataset {source.hub} is unreachable ({reason}). {hint}") from None


def _load(source: Source, config: str | None, mirror: Path | None):
    import datasets

    local = mirror_path(source.hub, mirror) if source.hub else None
    target = str(local) if local else source.hub
    kwargs: dict[str, Any] = {"split": source.split, "streaming": True}
    if source.data_files is not None:
        kwargs["data_files"] = source.data_files
    if source.revision and not local:
        kwargs["revision"] = source.revision
    try:
        return datasets.load_dataset(target, config, **kwargs)
    except Exception as e:  # datasets raises many types; the user needs the source and the reason
        first = str(e).splitlines()[0][:300] if str(e) else type(e).__name__
        raise SourceError(f"source {source.name!r}: cannot load {target} (config {config!r}, split {source.split!r}): {first}") from None


def _target(source: Source, mirror: Path | None) -> tuple[str, bool]:
    """What `datasets` loads for the source (mirror folder or Hub id), and whether it is local."""
    local = mirror_path(source.hub, mirror) if source.hub else None
    return (str(local), True) if local else (str(source.hub), False)


def array_files(source: Source, config: str | None, mirror: Path | None) -> list[str] | None:
    """The split's data files when every one is a JSON array (`.json` starting with `[`), else None.

    Paths in a mirror, `hf://datasets/...@revision/...` URLs on the Hub, as `datasets` resolves them.
    """
    builder, found = split_files(source, config, mirror)
    if builder != "json" or not found or any(files.data_suffix(Path(f)) != ".json" for f in found):
        return None
    local = _target(source, mirror)[1]
    return found if all(_starts_array(f, local) for f in found) else None


def shard_rows(source: Source, config: str | None, mirror: Path | None) -> list[int] | None:
    """Rows of each streaming shard, from the Parquet footers of its data files (on the Hub, a range
    read of each footer, no download); None when the data files are not Parquet."""
    builder, found = split_files(source, config, mirror)
    if builder != "parquet" or not found:
        return None
    local = _target(source, mirror)[1]
    return [_parquet_rows(f, local) for f in found]  # a Parquet source streams one shard per data file


def _parquet_rows(name: str, local: bool) -> int:
    if local:
        return pq.read_metadata(name).num_rows
    from huggingface_hub import HfFileSystem

    with HfFileSystem().open(name, "rb") as f:
        return pq.ParquetFile(f).metadata.num_rows


def split_files(source: Source, config: str | None, mirror: Path | None) -> tuple[str, list[str] | None]:
    """The `datasets` builder the source loads with (json, parquet, ...) and its split's data files."""
    data_files = source.data_files if not isinstance(source.data_files, list) else tuple(source.data_files)
    return _split_files(source.name, *_target(source, mirror), config, source.split, data_files, source.revision)


@functools.lru_cache(maxsize=64)
def _split_files(name: str, target: str, local: bool, config: str | None, split: str,
                 data_files: str | tuple[str, ...] | None, revision: str | None) -> tuple[str, list[str] | None]:
    import datasets

    kwargs: dict[str, Any] = {}
    if data_files is not None:
        kwargs["data_files"] = list(data_files) if isinstance(data_files, tuple) else data_files
    if revision and not local:
        kwargs["revision"] = revision
    try:
        builder = datasets.load_dataset_builder(target, config, **kwargs)
    except Exception as e:  # datasets raises many types; the user needs the source and the reason
        first = str(e).splitlines()[0][:300] if str(e) else type(e).__name__
        raise SourceError(f"source {name!r}: cannot load {target} (config {config!r}, split {split!r}): {first}") from None
    if getattr(builder.config, "field", None) or not builder.config.data_files:
        return builder.name, None
    return builder.name, {str(k): [str(f) for f in v] for k, v in builder.config.data_files.items()}.get(split)


def _starts_array(name: str, local: bool) -> bool:
    """Whether a data file's first non-space character is `[` (reads only its first bytes)."""
    if local:
        return files._first_char(Path(name)) == b"["
    from huggingface_hub import HfFileSystem

    with HfFileSystem().open(name, "rb", block_size=0) as raw:
        head = gzip.GzipFile(fileobj=raw).read(4096) if name.endswith(".gz") else raw.read(4096)
    return head.lstrip(files.BOM).lstrip()[:1] == b"["


def _local_copy(name: str, local: bool) -> Path:
    """A data file on disk: itself in a mirror, else downloaded once into the Hub cache (never into memory)."""
    if local:
        return Path(name)
    from huggingface_hub import HfFileSystem, hf_hub_download

    resolved = HfFileSystem().resolve_path(name)
    return Path(hf_hub_download(resolved.repo_id, resolved.path_in_repo, repo_type="dataset", revision=resolved.revision))


_AT_COMMIT = re.compile(r"@[0-9a-f]{40}/")


def _content_stamp(name: str, local: bool) -> Any:
    """What tells a data file's content from another's without fetching it: a file on disk's
    `file_stamp`; a Hub file's URL where it names a commit (`datasets` resolves the data files of a
    revision to its commit, whose files never change), else the ETag and size the Hub gives for it
    now (what `hf_hub_download` checks a cached copy against)."""
    if local:
        return file_stamp(name)
    if _AT_COMMIT.search(name):
        return name
    from huggingface_hub import HfFileSystem, get_hf_file_metadata, hf_hub_url

    resolved = HfFileSystem().resolve_path(name)
    meta = get_hf_file_metadata(hf_hub_url(resolved.repo_id, resolved.path_in_repo, repo_type="dataset", revision=resolved.revision))
    return [name, meta.etag, meta.size]


def _shard_files(names: list[str], shard: int, shards: int) -> list[str]:
    """The files of one shard, split into contiguous runs as `IterableDataset.shard` does."""
    size, extra = divmod(len(names), shards)
    start = shard * size + min(shard, extra)
    return names[start : start + size + (shard < extra)]


def num_shards(source: Source, config: str | None, mirror: Path | None) -> int:
    arrays = array_files(source, config, mirror)
    if arrays is not None:
        return max(1, len(arrays))
    return max(1, _load(source, config, mirror).num_shards)


def iter_hub_rows(source: Source, config: str | None, mirror: Path | None, shard: int, shards: int,
                  limit: int | None, band: RowBand | None = None) -> Iterator[tuple[dict, Any] | RawError | Unread]:
    """Rows of one shard (a data file) of a Hub dataset, with their position for provenance. With a
    `band` (reading by quota), a Parquet shard gives only the band's rows (see `_iter_parquet_band`),
    and a JSON-array shard too, once a first band has kept its rows (`spool`)."""
    where = {"hub": source.hub, "config": config, "split": source.split, "shard": shard}
    arrays = array_files(source, config, mirror)
    if arrays is not None:
        target, local = _target(source, mirror)
        read = functools.partial(_iter_array_rows, arrays, target, local, where, shard, shards, limit)
        if band is not None and band.index is not None and limit is None:  # later bands read the rows kept
            names = _shard_files(arrays, shard, shards) if shards > 1 else arrays
            yield from spool.read_by_band(read, band, [_content_stamp(name, local) for name in names], (where, "row"))
        else:
            yield from read()
        return
    parquet = _parquet_shard(source, config, mirror, shard, shards) if band is not None and limit is None else None
    if parquet is not None:
        yield from _iter_parquet_band(parquet, where, band)
        return
    ds = _load(source, config, mirror)
    if shards > 1:
        ds = ds.shard(num_shards=shards, index=shard)
    for n, row in enumerate(ds):
        if limit is not None and n >= limit:
            return
        yield ({**where, "row": n}, row)


def _parquet_shard(source: Source, config: str | None, mirror: Path | None, shard: int, shards: int) -> Path | None:
    """The shard's one Parquet data file on disk (a mirror's, or fetched once into the Hub cache);
    None where the shard is not exactly one Parquet file."""
    builder, found = split_files(source, config, mirror)
    if builder != "parquet" or not found or len(found) != shards:
        return None
    return _local_copy(found[shard], _target(source, mirror)[1])


def _iter_parquet_band(path: Path, where: dict[str, Any], band: RowBand) -> Iterator[tuple[dict, Any] | Unread]:
    """The rows of a Parquet shard whose band position is in the band, as `datasets` streams them
    (row n of the shard is row n of its file), then one `Passed` for the others. A row's position
    needs only its number, so the rows outside the band are never decoded: only the row groups that
    hold band rows are read, and only those rows become Python objects. The positions are kept in
    the band's index for the next band."""
    pf = pq.ParquetFile(path)
    n = pf.metadata.num_rows
    positions = files.kept_index(band.index, lambda: {"positions": band.positions(where, "row", range(n))})["positions"]
    for item in band.parquet_rows(pf, positions):
        yield item if isinstance(item, Passed) else ({**where, "row": item[0]}, item[1])


def _iter_array_rows(names: list[str], target: str, local: bool, where: dict[str, Any], shard: int, shards: int,
                     limit: int | None) -> Iterator[tuple[dict, Any] | RawError]:
    """Elements of JSON-array data files, numbered like the rows `datasets` would give (`row` within the shard).

    An unreadable element is a RawError naming the file (its path in the repository), line and index.
    """
    n = 0
    for name in _shard_files(names, shard, shards) if shards > 1 else names:
        path = _local_copy(name, local)
        shown = Path(name).relative_to(target).as_posix() if local else name.split("@", 1)[-1].split("/", 1)[-1]
        for item in files.iter_json_array(path):
            if limit is not None and n >= limit:
                return
            if isinstance(item, RawError):
                item.loc = {**where, "file": shown, "line": item.loc.get("line"), "index": item.loc["index"]}
                yield item
            else:
                yield ({**where, "row": n}, item[1])
            n += 1
