"""Hub datasets: streamed with `datasets`, or read from a local mirror of the same repository.

`--mirror DIR` maps a Hub id `org/name` to `DIR/org/name`, a folder shaped like the repository
(what `hf download --repo-type dataset org/name --local-dir DIR/org/name` writes). Before a build
reads anything, `check_reachable` makes sure every Hub source can be found, so an offline machine
stops at once with a message that names the source and how to point it at local data.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from datakit.errors import SourceError
from datakit.recipe import Source


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


def num_shards(source: Source, config: str | None, mirror: Path | None) -> int:
    return max(1, _load(source, config, mirror).num_shards)


def iter_hub_rows(source: Source, config: str | None, mirror: Path | None, shard: int, shards: int,
                  limit: int | None) -> Iterator[tuple[dict, Any]]:
    """Rows of one shard (a data file) of a Hub dataset, with their position for provenance."""
    ds = _load(source, config, mirror)
    if shards > 1:
        ds = ds.shard(num_shards=shards, index=shard)
    where = {"hub": source.hub, "config": config, "split": source.split, "shard": shard}
    for n, row in enumerate(ds):
        if limit is not None and n >= limit:
            return
        yield ({**where, "row": n}, row)
