"""What a source hands to construction: raw rows, or errors that stand for rows.

An adapter splits its source into `Partition`s (the unit of work a task reads) and turns each
input row into a `RawRow` carrying one of the examples below, or into a `RawError` that names the
file, line and reason. A `RawError` becomes a rejected record of the `read` stage; it never stops
the build (unless the build is `--strict`).
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import logging
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from datakit.hashing import canonical_bytes
from datakit.recipe import Source

log = logging.getLogger("datakit")

# Reading by quota reads a band of each partition's rows: those whose seeded position falls in
# [lo, hi) of [0, BAND_SCALE). Bands are integers, so a band names the same rows on every machine.
BAND_SCALE = 1 << 32
FULL_BAND = (0, BAND_SCALE)


@dataclass(frozen=True)
class Partition:
    """A slice of one source that one task reads: a file, a language's file, a line range, a Hub
    shard; with a `band` other than the full one, only the rows whose position falls in it."""

    source: str
    key: str
    params: dict[str, Any] = field(default_factory=dict)
    langs: tuple[str, ...] = ()
    band: tuple[int, int] = FULL_BAND

    @property
    def task_name(self) -> str:
        name = f"{self.source}--{self.key}" + ("" if self.band == FULL_BAND else f"--band{self.band[0]:x}-{self.band[1]:x}")
        safe = "".join(c if c.isalnum() or c in "-_.=" else "_" for c in name)
        return safe[:180]

    @property
    def expected_rows(self) -> int | None:
        """Rows the partition holds, when the adapter knew it cheaply (line counts, Parquet footers);
        None when only reading would tell."""
        p = self.params
        for key in ("count", "rows"):
            if isinstance(p.get(key), int):
                return p[key]
        return None

    def position(self, seed: int, loc: dict[str, Any]) -> int:
        """A row's place in [0, BAND_SCALE): seeded by the recipe seed, the source, the partition's
        languages and the row's location, never by how the build runs."""
        digest = hashlib.blake2b(canonical_bytes([seed, self.source, list(self.langs), loc]), digest_size=4).digest()
        return int.from_bytes(digest, "big")

    def positions(self, seed: int, base: dict[str, Any], key: str, numbers: Iterable[int]) -> np.ndarray:
        """`position` of the locations {**base, key: n} for each n, as uint32: the bytes they hash
        differ only in n, so they are serialised once and each hash starts from the shared head
        (about half the time of `position` per row, for the index of a partition's rows)."""
        marker = _MARKER
        blob = canonical_bytes([seed, self.source, list(self.langs), {**base, key: marker}])
        if blob.count(b"%d" % marker) != 1:  # the marker's digits elsewhere too: one at a time
            return np.fromiter((self.position(seed, {**base, key: n}) for n in numbers), dtype=np.uint32)
        head, tail = blob.split(b"%d" % marker)
        start = hashlib.blake2b(head, digest_size=4)
        out = []
        for n in numbers:
            h = start.copy()
            h.update(b"%d%b" % (n, tail))
            out.append(int.from_bytes(h.digest(), "big"))
        return np.array(out, dtype=np.uint32)


_MARKER = 7_349_216_508_873_419_265  # stands for the row number while a location is serialised


@dataclass
class Instruction:
    """General instructions in one language: usually one conversation, several for seed tasks."""

    lang: str
    conversations: list[list[dict[str, str]]]


@dataclass
class Parallel:
    """One aligned unit (sentence or document) of parallel text.

    `focus` is the language this row serves: the non-hub language X, or for the hub pair itself
    one of the hubs. `texts` holds the focus text and every pivot text available for the same unit;
    `variants` holds extra references (regional variants, second translations) per language.
    """

    focus: str
    texts: dict[str, str]
    unit: Literal["sentence", "document"] = "sentence"
    variants: dict[str, dict[str, str]] = field(default_factory=dict)
    joined: dict[str, str] = field(default_factory=dict)  # language -> the language its text was joined through


@dataclass
class QAItem:
    """One question aligned across languages: extractive (XQuAD) or math with a number (MGSM)."""

    focus: str
    kind: Literal["extractive", "math"]
    question: dict[str, str]
    answer: dict[str, str]
    context: dict[str, str] = field(default_factory=dict)


@dataclass
class Synthesised:
    """A general instruction translated into `lang` by an LLM, with what it was made from."""

    lang: str
    conversation: list[dict[str, str]]
    source_conversation: list[dict[str, str]]
    origin: dict[str, Any]
    generation: dict[str, Any]


Example = Instruction | Parallel | QAItem | Synthesised


@dataclass
class RawRow:
    loc: dict[str, Any]
    example: Example


@dataclass
class RawError:
    loc: dict[str, Any]
    reason: str
    raw: str
    lang: str | None = None
    detail: str = ""


@dataclass
class Unread:
    """A row outside the partition's band (reading by quota), passed over without being parsed:
    only its location, so the task can count it."""

    loc: dict[str, Any]


@dataclass
class Passed(Unread):
    """Rows outside the band that an adapter passed over all at once, knowing their positions from
    an index it kept when it first read the file: `count` rows, `beyond` of them after the band.
    Later bands of a large file then cost the rows they read, not a scan of the file."""

    count: int = 0
    beyond: int = 0


Item = RawRow | RawError | Unread


@dataclass(frozen=True)
class ReadContext:
    """What an adapter needs besides its source: where local data is, limits, the language selection."""

    data_dir: Path | None
    mirror: Path | None
    sample: int | None
    langs: frozenset[str] | None
    pivots: tuple[str, ...]
    rows_per_task: int = 200_000
    seed: int = 0  # the recipe's seed: where a row falls in a partition's band (Partition.position)
    index_dir: str | None = None  # where a task keeps the positions of a file's rows between its bands

    def band(self, partition: Partition) -> RowBand | None:
        """The rows the partition's band reads, so an adapter can pass over the others before
        parsing them; None for the full band."""
        if partition.band == FULL_BAND:
            return None
        return RowBand(*partition.band, partition, self.seed)

    def selected(self, code: str) -> bool:
        return self.langs is None or code in self.langs


@dataclass(frozen=True)
class RowBand:
    """A band of a partition's rows: those whose position is in [lo, hi). `where`: what every
    location of the rows read gets (a file named as the recipe names it); `index`: a file where the
    positions of the rows, once computed, are kept for the next band."""

    lo: int
    hi: int
    partition: Partition
    seed: int
    where: dict[str, Any] = field(default_factory=dict)
    index: Path | None = None

    def position(self, loc: dict[str, Any]) -> int:
        return self.partition.position(self.seed, {**loc, **self.where})

    def positions(self, base: dict[str, Any], key: str, numbers: Iterable[int]) -> np.ndarray:
        """The positions of the locations {**base, key: n} (rows numbered by line or row)."""
        return self.partition.positions(self.seed, {**base, **self.where}, key, numbers)

    def outside(self, loc: dict[str, Any]) -> bool:
        return not self.lo <= self.position(loc) < self.hi

    def split(self, positions: np.ndarray) -> tuple[np.ndarray, Passed]:
        """Which rows of these positions the band reads (a mask), and the others as one `Passed`
        (with how many of them lie after the band), for an adapter that knows its rows' positions
        before reading them."""
        inside = (positions >= self.lo) & (positions < self.hi)
        return inside, Passed({}, count=int(len(positions) - inside.sum()), beyond=int((positions >= self.hi).sum()))

    def parquet_rows(self, pf: pq.ParquetFile, positions: np.ndarray) -> Iterator[tuple[int, dict[str, Any]] | Passed]:
        """The rows of a Parquet file (row n at `positions[n]`) in the band, as (n, row), reading
        only the row groups that hold them and making Python objects of those rows only; then one
        `Passed` for the others."""
        inside, passed = self.split(positions)
        start = 0
        for group in range(pf.num_row_groups):
            size = pf.metadata.row_group(group).num_rows
            rows = np.flatnonzero(inside[start : start + size])
            if len(rows):
                yield from zip((rows + start).tolist(), pf.read_row_group(group).take(pa.array(rows)).to_pylist(), strict=True)
            start += size
        yield passed


class Adapter(Protocol):
    def partitions(self, source: Source, ctx: ReadContext) -> list[Partition]: ...

    def read(self, source: Source, partition: Partition, ctx: ReadContext) -> Iterator[Item]: ...


# ------------------------------------------------------------------------------ warnings


@dataclass(frozen=True)
class SourceWarning:
    """A file, language or source that contributes nothing (or less than it looks like it should),
    found while planning: empty, a folder, misaligned. Its rows, if any, are still accounted for
    (rejected or left out); the warning is what makes the loss visible in the log, stats and card."""

    source: str  # "" for the build as a whole (a --langs selection)
    file: str  # the file, or what else it is about (a pair, "--langs")
    reason: str  # snake_case, like a rejection reason
    detail: str

    def __str__(self) -> str:
        return f"{f'source {self.source!r}: ' if self.source else ''}{self.file}: {self.detail}"

    def to_json(self) -> dict[str, str]:
        return asdict(self)


_COLLECTED: contextvars.ContextVar[list[SourceWarning] | None] = contextvars.ContextVar("datakit_source_warnings", default=None)


def warn(source: str, file: str, reason: str, detail: str) -> None:
    """Report a planning-time problem: collected by the build (which logs it once and puts it in
    stats.json and the card), or only logged when no build is collecting (calibrate_lid, say)."""
    found = SourceWarning(source, file, reason, detail)
    collected = _COLLECTED.get()
    if collected is None:
        log.warning("%s", found)
    elif found not in collected:  # an adapter planning twice (sample, then full) reports once
        collected.append(found)


@contextlib.contextmanager
def collect_warnings() -> Iterator[list[SourceWarning]]:
    """The warnings adapters report while the block runs, in the order they were found."""
    collected: list[SourceWarning] = []
    token = _COLLECTED.set(collected)
    try:
        yield collected
    finally:
        _COLLECTED.reset(token)
