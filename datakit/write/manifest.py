"""manifest.json: every file of the output with its sha256 and rows, and what produced them."""

from __future__ import annotations

import contextlib
from importlib import metadata
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

import datakit
from datakit.hashing import file_sha256

PACKAGES = ("pyarrow", "datasets", "huggingface_hub", "dask", "distributed", "numpy", "langcodes", "babel",
            "fasttext-numpy2-wheel", "datatrove", "openai")


def package_versions() -> dict[str, str]:
    versions = {"datakit": datakit.__version__}
    for name in PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return versions


def file_entry(out: Path, path: Path) -> dict[str, Any]:
    entry: dict[str, Any] = {"path": path.relative_to(out).as_posix(), "bytes": path.stat().st_size, "sha256": file_sha256(path)}
    if path.suffix == ".parquet":
        entry["rows"] = pq.read_metadata(path).num_rows
    return entry


def build_manifest(out: Path, *, recipe_hash: str, recipe_name: str, seed: int, build: dict[str, Any], files: list[Path]) -> dict[str, Any]:
    entries = [file_entry(out, p) for p in sorted(files)]
    data_rows = sum(e.get("rows", 0) for e in entries if e["path"].startswith("data/"))
    return {
        "recipe": {"name": recipe_name, "hash": recipe_hash},
        "seed": seed,
        "build": build,
        "packages": package_versions(),
        "rows": data_rows,
        "files": entries,
    }
