"""Checks of an output folder against the contract, shared by the build tests."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow.parquet as pq

from datakit.schema import validator


def data_files(out: Path) -> list[Path]:
    return sorted((out / "data").rglob("*.parquet"))


def rows_of(files: list[Path]) -> list[dict]:
    rows = []
    for f in files:
        rows += pq.read_table(f).to_pylist()
    return rows


def check_contract(out: Path) -> list[dict]:
    """Assert everything the record contract (../shared/DESIGN.md, schemas/instruction.schema.json) promises
    about an output folder; returns the data rows."""
    files = data_files(out)
    assert files, "no data files"
    rows = rows_of(files)

    # Each file: rows of its folder's language, sorted by id.
    for f in files:
        t = pq.read_table(f, columns=["id", "lang"])
        assert set(t.column("lang").to_pylist()) == {f.parent.name}
        ids = t.column("id").to_pylist()
        assert ids == sorted(ids)
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)), "duplicate ids"

    v = validator()
    for r in rows:
        errors = list(v.iter_errors(r))
        assert not errors, f"{r['id']}: {errors[0].message}"
        assert r["group"] == ("zh" if r["task"] == "general" and r["lang"] == "zho_Hans" else
                              "en" if r["task"] == "general" and r["lang"] == "eng_Latn" else "cross_lingual")
        json.loads(r["meta"]), json.loads(r["scores"])

    # Stats: the identity per stage, each stage receiving what the previous kept, rejected/ matching.
    stats = json.loads((out / "stats.json").read_text())
    stages = stats["stages"]
    for i, s in enumerate(stages):
        assert s["in"] + s["created"] + s["repeated"] == s["kept"] + sum(s["rejected"].values()) + s["unselected"], s
        if i:
            assert s["in"] == stages[i - 1]["kept"]
    assert stages[-1]["kept"] == len(rows)
    rejected = sorted((out / "rejected").rglob("*.parquet"))
    by_stage: dict[str, dict[str, int]] = {}
    for f in rejected:
        t = pq.read_table(f, columns=["stage", "reason"])
        assert {"stage", "reason"} <= set(pq.read_schema(f).names)
        assert set(t.column("stage").to_pylist()) == {f.parent.name}
        for reason in t.column("reason").to_pylist():
            by_stage.setdefault(f.parent.name, {}).setdefault(reason, 0)
            by_stage[f.parent.name][reason] += 1
    assert by_stage == {s["name"]: s["rejected"] for s in stages if s["rejected"]}

    # Manifest: every data and rejected file with its sha256 and rows.
    manifest = json.loads((out / "manifest.json").read_text())
    entries = {e["path"]: e for e in manifest["files"]}
    for f in files + rejected:
        e = entries[f.relative_to(out).as_posix()]
        assert e["sha256"] == hashlib.sha256(f.read_bytes()).hexdigest()
        assert e["rows"] == pq.read_metadata(f).num_rows
    assert manifest["rows"] == len(rows)
    assert {"hash", "name"} <= set(manifest["recipe"]) and "seed" in manifest and "pyarrow" in manifest["packages"]
    return rows


def tree_bytes(out: Path, *folders: str) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for folder in folders for p in sorted((out / folder).rglob("*")) if p.is_file()}
