"""The record contract: JSON Schema in, Parquet schema out.

`schemas/instruction.schema.json` is the single source of truth. The Arrow schema of data/ and
rejected/ files is derived from it here, so a field added to the contract reaches every file
without a second definition.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import pyarrow as pa

from datakit.resources import schema_path


@functools.cache
def json_schema() -> dict[str, Any]:
    return json.loads(schema_path().read_text(encoding="utf-8"))


def _arrow_type(spec: dict[str, Any]) -> pa.DataType:
    types = spec.get("type")
    kinds = [t for t in (types if isinstance(types, list) else [types]) if t != "null"]
    if len(kinds) != 1:
        raise ValueError(f"cannot derive an Arrow type from {spec}")
    kind = kinds[0]
    if kind == "string":
        return pa.string()
    if kind == "integer":
        return pa.int64()
    if kind == "number":
        return pa.float64()
    if kind == "boolean":
        return pa.bool_()
    if kind == "array":
        return pa.list_(_arrow_type(spec["items"]))
    if kind == "object":
        return pa.struct([pa.field(name, _arrow_type(sub)) for name, sub in spec["properties"].items()])
    raise ValueError(f"unsupported JSON Schema type {kind!r}")


@functools.cache
def record_schema() -> pa.Schema:
    """Arrow schema of data/ files: one column per top-level property, in the schema's order."""
    props = json_schema()["properties"]
    return pa.schema([pa.field(name, _arrow_type(spec)) for name, spec in props.items()])


@functools.cache
def rejected_schema() -> pa.Schema:
    """Arrow schema of rejected/ files: the record schema plus `stage` and `reason`."""
    return record_schema().append(pa.field("stage", pa.string())).append(pa.field("reason", pa.string()))


@functools.cache
def validator():
    import jsonschema

    schema = json_schema()
    return jsonschema.validators.validator_for(schema)(schema)
