"""Repeats of a translation record for upsampling, each with another instruction around the same pair.

A record repeated word for word would carry the same id twice and teach the model one phrasing
twice; a repeat instead re-frames the same source and reference with another of our templates
(possibly in the other instruction language), so it is a distinct record with its own id. The
source text is recovered from the record itself: the template it was built with is known (meta),
and so are the language names it filled in.
"""

from __future__ import annotations

import json
from typing import Any

from datakit.construct.templates import TRANSLATION, Template, frame_parts, frame_text
from datakit.hashing import canonical_json
from datakit.records import record_id, seeded_rng
from datakit.text import normalise_text


def source_text(row: dict[str, Any], template: Template, inst_lang: str) -> str | None:
    before, after = frame_parts(template, row["src_lang"], row["tgt_lang"], inst_lang)
    prefix, suffix = before.lstrip(), after.rstrip()
    user = next(m["content"] for m in row["messages"] if m["role"] == "user")
    if not (user.startswith(prefix) and user.endswith(suffix)) or len(user) < len(prefix) + len(suffix):
        return None
    return user[len(prefix) : len(user) - len(suffix)].strip()


def rerender(row: dict[str, Any], copy: int, seed: int, native: tuple[Template, ...] = ()) -> dict[str, Any]:
    """The `copy`-th repeat (1, 2, ...) of a translation row; raises ValueError when it cannot be made.

    `native` are the templates in the row's own language (construct/native.py), if any: a row
    framed by one can be re-framed, and repeats may be framed by them too."""
    meta = json.loads(row["meta"])
    pool = [*TRANSLATION, *native]
    template = {t.id: t for t in pool}.get(meta.get("template", ""))
    if row["task"] != "translation" or template is None:
        raise ValueError(f"record {row['id']} is not a templated translation; it cannot be repeated")
    text = source_text(row, template, meta["instruction_lang"])
    if not text:
        raise ValueError(f"record {row['id']}: its instruction does not match template {template.id}")
    unit = meta.get("unit", "sentence")
    others = sorted((t for t in pool if t.id != template.id and t.unit in (unit, "any")), key=lambda t: t.id)
    seeded_rng(seed, "repeat", row["id"]).shuffle(others)
    new = others[(copy - 1) % len(others)]
    user = normalise_text(frame_text(new, row["src_lang"], row["tgt_lang"], new.lang, text), "NFC")
    out = dict(row)
    out["messages"] = [{"role": "user", "content": user} if m["role"] == "user" else dict(m) for m in row["messages"]]
    out["meta"] = canonical_json({**meta, "template": new.id, "instruction_lang": new.lang, "repeat_of": row["id"], "repeat": copy})
    out["id"] = record_id(out)
    return out
