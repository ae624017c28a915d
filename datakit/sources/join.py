"""Pairs completed through a shared pivot sentence: X-en + en-zh with the same English -> X-zh.

Many languages have parallel text with English only. Where another pair of the recipe has the same
English sentence with a Chinese translation, the X row gains that Chinese text, and construction
then makes all four hub directions from real translations. The driver builds the index once
(`build_join_index`: the normalised English sentence's 8-byte hash -> the pivot text, the first
pair read in source order winning), in an SQLite file of the work folder; each task looks its rows
up in it (`JoinIndex`), so no worker holds the index in memory.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path

from datakit.recipe import Join, Recipe, Source
from datakit.sources import adapter_for
from datakit.sources.base import Parallel, RawRow, ReadContext
from datakit.store import atomic_path
from datakit.text import dedup_text


def sentence_key(text: str) -> int:
    """A signed 64-bit key of the sentence as dedup compares it (case, width and punctuation folded)."""
    return int.from_bytes(hashlib.blake2b(dedup_text(text).encode("utf-8"), digest_size=8).digest(), "big", signed=True)


def join_sources(recipe: Recipe, source: Source) -> list[Source]:
    assert source.join is not None
    names = source.join.sources or [source.name]
    return [s for s in recipe.sources if s.name in names]


def pivot_pairs(sources: Iterable[Source], join: Join, ctx: ReadContext) -> Iterator[tuple[str, str]]:
    """(through text, pivot text) of every row that has both, in source and partition order."""
    for source in sources:
        adapter = adapter_for(source)
        for part in adapter.partitions(source, ctx):
            if part.langs and not {join.through, join.pivot} <= set(part.langs):
                continue  # a pair config of other languages (the hub pair itself is read)
            for item in adapter.read(source, part, ctx):
                if isinstance(item, RawRow) and isinstance(item.example, Parallel):
                    texts = item.example.texts
                    if texts.get(join.through) and texts.get(join.pivot):
                        yield texts[join.through], texts[join.pivot]


def build_join_index(recipe: Recipe, source: Source, ctx: ReadContext, path: Path) -> Path:
    """The index of `source`'s join at `path` (kept when it exists: its folder is addressed by the
    fingerprint of the recipe and inputs)."""
    if path.is_file():
        return path
    assert source.join is not None
    with atomic_path(path) as tmp:
        db = sqlite3.connect(tmp)
        db.execute("CREATE TABLE pivot (key INTEGER PRIMARY KEY, text TEXT NOT NULL)")
        batch: list[tuple[int, str]] = []
        for through, pivot in pivot_pairs(join_sources(recipe, source), source.join, ctx):
            batch.append((sentence_key(through), pivot))
            if len(batch) >= 10_000:
                db.executemany("INSERT OR IGNORE INTO pivot VALUES (?, ?)", batch)
                batch.clear()
        db.executemany("INSERT OR IGNORE INTO pivot VALUES (?, ?)", batch)
        db.commit()
        db.close()
    return path


class JoinIndex:
    """A task's read-only view of a join index."""

    def __init__(self, join: Join, path: str):
        self.join = join
        self.db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)

    def complete(self, example: Parallel) -> None:
        """Give the example the pivot's text when it lacks it and the index has its sentence."""
        texts, join = example.texts, self.join
        if join.pivot in texts or not texts.get(join.through) or example.focus == join.pivot:
            return
        found = self.db.execute("SELECT text FROM pivot WHERE key = ?", (sentence_key(texts[join.through]),)).fetchone()
        if found:
            texts[join.pivot] = found[0]
            example.joined[join.pivot] = join.through
