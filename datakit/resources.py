"""Where the files that ship with datakit live: the record schema and the recipes.

In a source checkout (or an editable install) they sit at the repository root, where users read
and edit them; a wheel carries copies under `datakit/_bundled/`. One lookup serves both.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def resource_path(*parts: str) -> Path:
    for root in (_PACKAGE / "_bundled", _PACKAGE.parent):
        candidate = root.joinpath(*parts)
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"datakit resource {'/'.join(parts)} is missing from the installation")


def schema_path() -> Path:
    return resource_path("schemas", "instruction.schema.json")


def pipeline_path(name: str) -> Path:
    return resource_path("pipelines", name)
