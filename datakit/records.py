"""Records as stages see them, and the few facts every stage derives the same way.

A record travels through the stages as a plain dict with the contract's fields (`scores` and
`meta` still dicts); it becomes a Parquet row only when written (`to_row`). The id, the group and
every seeded choice are computed here and nowhere else.
"""

from __future__ import annotations

import functools
import hashlib
import struct
from collections.abc import Sequence
from operator import itemgetter
from typing import Any, TypeVar

import pyarrow as pa

from datakit.hashing import canonical_bytes, canonical_json
from datakit.languages import HUBS

Record = dict[str, Any]
_Item = TypeVar("_Item")
META_RAW_LIMIT = 1024
# A message as the id hashes it: (role, content), which canonical JSON writes as the list
# [role, content] (a tuple from itemgetter, not a new list per message; the content's tuple too).
_ROLE_CONTENT = itemgetter("role", "content")


def record_id(record: Record) -> str:
    """Hash of the record's content: same messages, languages and task -> same id, anywhere."""
    content = (tuple(map(_ROLE_CONTENT, record["messages"])), record.get("src_lang"), record.get("tgt_lang"), record.get("task"))
    return _sha256(canonical_bytes(content)).hexdigest()[:32]  # tuples are written as JSON lists


_sha256 = hashlib.sha256


def group_of(task: str | None, lang: str | None) -> str:
    """zh / en: general records in a hub language; cross_lingual: everything else."""
    if task == "general" and lang in HUBS:
        return "zh" if lang == "zho_Hans" else "en"
    return "cross_lingual"


def new_record(
    *,
    messages: list[dict[str, str]],
    lang: str,
    task: str,
    source: str,
    license: str,
    src_lang: str | None = None,
    tgt_lang: str | None = None,
    meta: dict[str, Any] | None = None,
) -> Record:
    return {
        "id": None,
        "messages": messages,
        "lang": lang,
        "src_lang": src_lang,
        "tgt_lang": tgt_lang,
        "task": task,
        "group": group_of(task, lang),
        "source": source,
        "license": license,
        "scores": {},
        "meta": meta if meta is not None else {},  # the caller's own dict, made for this record: kept, not copied
    }


def unparsed_record(*, source: str, license: str, lang: str | None, loc: dict[str, Any], raw: str) -> Record:
    """The record that stands for an input row that could not be read: empty messages, raw text in meta."""
    meta = {**loc, "raw": raw[:META_RAW_LIMIT]}
    rec = new_record(messages=[], lang=lang, task=None, source=source, license=license, meta=meta)
    rec["group"] = None
    rec["id"] = hashlib.sha256(canonical_bytes(["unparsed", source, loc])).hexdigest()[:32]
    return rec


# ---------------------------------------------------------------------------- hidden fields
# Construction knows things about a record that its messages no longer say plainly; it leaves them
# in these keys for the stages. They are not columns of the contract, and `to_row` leaves them out.
CONTENT_TEXTS = "_content_texts"  # the texts that make the record what it is (a translation's source and reference)
DEDUP_SCOPE = "_dedup_scope"  # what else two records must share to be duplicates (a QA item's passage)
LID_CHECKS = "_lid_checks"  # [(field, text, expected language code)]: what language ID checks
HIDDEN_FIELDS = (CONTENT_TEXTS, DEDUP_SCOPE, LID_CHECKS)

LidCheck = tuple[str, str, str]


def set_content(record: Record, texts: list[str], scope: str | None = None) -> None:
    """Declare the record's content: duplicates are records with the same content (and scope),
    whatever instruction framed it; the quality rules compare a translation's two sides. The
    record keeps `texts` (a list the builder made for it), as `set_lid_checks` keeps its checks."""
    record[CONTENT_TEXTS] = texts
    if scope is not None:
        record[DEDUP_SCOPE] = scope


def declared_content(record: Record) -> list[str] | None:
    """The texts construction declared, or None when it declared none (a general conversation)."""
    return record.get(CONTENT_TEXTS) or None


def content_texts(record: Record) -> list[str]:
    """The declared content, else every non-system turn: what dedup keys and near dedup shingles."""
    return declared_content(record) or [m["content"] for m in record["messages"] if m["role"] != "system"]


def dedup_scope(record: Record) -> str | None:
    return record.get(DEDUP_SCOPE)


def set_lid_checks(record: Record, checks: list[LidCheck]) -> None:
    """Which texts language ID checks, and in which language each must be."""
    record[LID_CHECKS] = checks


def lid_checks(record: Record) -> list[LidCheck] | None:
    return record.get(LID_CHECKS) or None


def to_row(record: Record) -> Record:
    """The record as a Parquet row: `scores` and `meta` as JSON strings, the id filled in, the
    hidden fields left out."""
    row = {k: v for k, v in record.items() if k not in HIDDEN_FIELDS}
    if row.get("id") is None:
        row["id"] = record_id(record)
    row["scores"] = canonical_json(record.get("scores") or {})
    row["meta"] = canonical_json(record.get("meta") or {})
    return row


def to_table(records: list[Record], schema: pa.Schema, extra: dict[str, list | pa.Array] | None = None) -> pa.Table:
    """The records as Arrow columns of `schema`, what `to_row` gives row by row: built one column
    at a time (a Python list per column, never a dict per row) for a whole batch. Columns the
    records do not hold (a work file's keys, a rejection's stage) come from `extra`."""
    extra = extra or {}
    arrays = []
    for field in schema:
        name = field.name
        if name in extra:
            values = extra[name]
        elif name == "id":
            values = [r["id"] if r.get("id") is not None else record_id(r) for r in records]
        elif name in ("scores", "meta"):
            values = [canonical_json(v) if (v := r.get(name)) else "{}" for r in records]
        else:
            values = _column(records, name)
        arrays.append(values if isinstance(values, pa.Array) else pa.array(values, type=field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def _column(records: list[Record], name: str) -> list:
    """`[r.get(name) for r in records]`, at C speed where every record holds the key (those
    construction makes hold every contract field)."""
    try:
        return list(map(itemgetter(name), records))
    except KeyError:
        return [r.get(name) for r in records]


def stable_int(*parts: Any) -> int:
    """A 64-bit integer from the parts, the same on every machine and Python process."""
    digest = hashlib.blake2b(canonical_bytes(parts), digest_size=8).digest()
    return int.from_bytes(digest, "big")


class Draws:
    """The choices of one raw input (template, instruction language, revisions), drawn from
    blake2b digests of its key: 64 bits a draw, eight from one digest, then the next digest of the
    key and a counter. The same key gives the same draws on every machine and in every process.

    These replaced a `random.Random` seeded per input (so every choice changed once, with the
    ids): seeding the Mersenne Twister, 624 words of state for a handful of draws, was about an
    eighth of construction."""

    __slots__ = ("_key", "_block", "_pool", "_left")

    def __init__(self, key: bytes):
        self._key, self._block = key, 0
        self._pool, self._left = _words(_blake2b(key).digest()), 8

    def _next(self) -> int:
        if not self._left:
            self._block += 1
            self._pool, self._left = _words(_blake2b(self._key + self._block.to_bytes(8, "big")).digest()), 8
        self._left -= 1
        return self._pool[self._left]

    def random(self) -> float:
        """A float in [0, 1), 53 bits of it, like `random.random`."""
        return (self._next() >> 11) * _TWO_53

    def randrange(self, n: int) -> int:
        """An integer in [0, n): the draw scaled (multiply and shift), bias below n / 2**64."""
        if n <= 0:
            raise ValueError(f"randrange({n}): empty range")
        return (self._next() * n) >> 64

    def pick(self, items: Sequence[_Item]) -> _Item:
        """`items[self.randrange(len(items))]`, the same draw: one call where a builder picks a
        template or a language (two per record)."""
        if not items:
            raise ValueError("pick from an empty sequence")
        return items[(self._next() * len(items)) >> 64]

    def shuffle(self, items: list) -> None:
        """Fisher-Yates in place, like `random.shuffle`."""
        for i in range(len(items) - 1, 0, -1):
            j = self.randrange(i + 1)
            items[i], items[j] = items[j], items[i]


_blake2b = hashlib.blake2b
# A digest's eight 64-bit draws, last word first: the digest read as one big-endian integer, 64 bits
# at a time from its low end (as the draws were first defined), without the 512-bit arithmetic.
_words = struct.Struct(">8Q").unpack
_TWO_53 = 2.0**-53


def seeded_rng(seed: int, *key: Any) -> Draws:
    """The draws for one raw input's choices: from the recipe seed and the input's stable key.

    Never by worker, partition, time or PID, so the choice does not depend on how the build ran.
    """
    return Draws(canonical_bytes([seed, *key]))


class RowSeed:
    """The draws of one raw input's several choices (a translation per direction, the interactive
    record): `RowSeed(seed, *key).draws(*more)` gives exactly `seeded_rng(seed, *key, *more)`.
    Canonical JSON has no spaces, so the key's bytes are the head's (`[seed,...key`, written once
    per row) and the tail's (`,...more]`, written once per process for each tail) side by side,
    instead of the whole key written again for each of a row's four or five choices."""

    __slots__ = ("_head",)

    def __init__(self, seed: int, *key: Any):
        self._head = canonical_bytes([seed, *key])[:-1]

    def draws(self, *more: Any) -> Draws:
        try:
            tail = _key_tail(more)
        except TypeError:  # an unhashable part (a dict): written each time
            tail = _write_tail(more)
        return Draws(self._head + tail)


def _write_tail(more: tuple) -> bytes:
    return b"," + canonical_bytes(more)[1:] if more else b"]"


_key_tail = functools.lru_cache(maxsize=4096)(_write_tail)  # a few language pairs, and "interactive"
