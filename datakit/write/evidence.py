"""What one row of data/ or rejected/ says about itself: where it came from, what it matched, what
the language-ID model found.

`python -m datakit.why` prints it for the record asked about and the HTML report shows it under
every example; both read it here, so the terminal and the page never tell a record two ways.
"""

from __future__ import annotations

import json
import shlex
from typing import Any

# meta keys that locate a record in its source: file and line or row (or the element of a JSON array,
# the UDHR article, the XQuAD id), and the template and instruction language that framed it
PLACE_KEYS = ("row", "index", "article", "id")
PROVENANCE_KEYS = ("file", "line", *PLACE_KEYS, "template", "instruction_lang")
# meta keys a removal stage leaves: the record it duplicates, the benchmark item it contains, why it was unreadable
MATCH_KEYS = ("duplicate_of", "near_duplicate_of", "similarity", "contaminated_by", "detail")
DUPLICATE_KEYS = ("duplicate_of", "near_duplicate_of")


def loads(text: str | None) -> dict[str, Any]:
    """A `scores` or `meta` cell as a dict (an empty cell as {})."""
    return json.loads(text or "{}")


def provenance(meta: dict[str, Any]) -> dict[str, Any]:
    return {k: meta[k] for k in PROVENANCE_KEYS if k in meta}


def matched(meta: dict[str, Any]) -> dict[str, Any]:
    return {k: meta[k] for k in MATCH_KEYS if k in meta}


def duplicate_of(meta: dict[str, Any]) -> str | None:
    """The id of the record this one was folded into by exact or near dedup, if it was."""
    return next((meta[k] for k in DUPLICATE_KEYS if k in meta), None)


def location(meta: dict[str, Any]) -> str:
    """`file:line` (or `file, row 12`, `file, article 3`): where to open the source to see the row."""
    where = meta.get("file", "")
    if "line" in meta:
        return f"{where}:{meta['line']}"
    for key in PLACE_KEYS:
        if key in meta:
            return f"{where}, {key} {meta[key]}" if where else f"{key} {meta[key]}"
    return where or "-"


def lid_found(scores: dict[str, Any]) -> list[str]:
    """What language ID found, one line per checked field: the label it read and its probability, the
    probability of the expected language, the share of the expected script where that decided."""
    lid = scores.get("lid") or {}
    lines = []
    for field, value in sorted(lid.items()):
        if field in ("script", "unsupported"):
            continue
        if not (isinstance(value, list) and len(value) == 3):  # not the lid stage's [label, p, P(expected)]
            lines.append(f"{field}: {json.dumps(value, ensure_ascii=False)}")
            continue
        label, prob, expected = value
        lines.append(f"{field}: read as {label or 'no label'} (p={prob:.3f}), P(expected language)={expected:.3f}")
    for field, share in sorted((lid.get("script") or {}).items()):
        lines.append(f"{field}: {share:.0%} of its letters in the expected script")
    if lid.get("unsupported"):
        lines.append("the record's language has no label in the model (marked unsupported)")
    return lines


def other_scores(scores: dict[str, Any]) -> dict[str, Any]:
    """Scores other than language ID (quality measures, judge verdicts)."""
    return {k: v for k, v in scores.items() if k != "lid"}


def why_command(folder: str, record_id: str) -> str:
    """The command that explains one record: the report prints it beside every record it lists."""
    return f"python -m datakit.why {shlex.quote(folder)} {record_id}"


def first_user_text(row: dict[str, Any]) -> str:
    """The text a person recognises a record by: its first user turn, or the raw input of an unreadable row."""
    meta = loads(row.get("meta"))
    return next((m["content"] for m in row.get("messages") or [] if m["role"] == "user"), meta.get("raw", ""))


def shorten(text: str, limit: int) -> str:
    """Whitespace collapsed and cut at `limit` characters, saying how much was left out."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else f"{flat[:limit]}… (+{len(flat) - limit} chars)"
