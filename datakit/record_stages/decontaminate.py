"""Decontamination: no training record may contain an item of an evaluation set the recipe names.

Evaluation items (BayLing-80, Vicuna-80, ...) are normalised like the dedup keys and cut into word
n-grams, or character n-grams for unspaced scripts; an item shorter than n counts whole. A
training record whose prompt or answer contains any of those n-grams is rejected as
`decontaminated`, with the benchmark and item it matched in `meta`. The index is built once on the
driver from the evaluation files (local paths or Hub ids) and saved in the build's work folder;
each worker process loads it once (`load_index`). Shipped inside every task instead, it was 110 KB
of the 128 KB each partition task pickled, and a few milliseconds of every task's start.
"""

from __future__ import annotations

import functools
import pickle
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import xxhash

from datakit.errors import SourceError
from datakit.recipe import SEED_TOKENS, EvalSet
from datakit.recipe import Decontaminate as DecontaminateConfig
from datakit.record_stages.base import RecordStage
from datakit.records import Record, declared_content
from datakit.scripts import mostly_unspaced
from datakit.sources import files as fileio
from datakit.sources.base import RawError
from datakit.stats import StageStats
from datakit.text import dedup_text


def tokens(text: str) -> tuple[list[str], bool]:
    """Normalised tokens: words, or characters when the text is largely in an unspaced script."""
    norm = dedup_text(text)
    unspaced = mostly_unspaced(norm)
    return ([c for c in norm if not c.isspace()], True) if unspaced else (norm.split(), False)


def gram_hash(seq: list[str]) -> int:
    return xxhash.xxh64_intdigest("\x1f".join(seq))


SEED = SEED_TOKENS  # every evaluation n-gram starts with a seed of this many tokens: a cheap first look


@dataclass(frozen=True)
class Index:
    """n-gram hash -> every (benchmark, item) holding it (BayLing-80 repeats Vicuna-80's questions). `word_sizes` / `char_sizes`: the n-gram sizes to look for
    (n, and the lengths of items shorter than n). `seeds`: hashes of the first SEED tokens of every
    indexed n-gram, so that most text is cleared by one pass of short hashes."""

    grams: dict[int, tuple[tuple[str, str], ...]]
    word_sizes: frozenset[int]
    char_sizes: frozenset[int]
    seeds: frozenset[int]

    def match(self, text: str) -> tuple[tuple[str, str], ...] | None:
        toks, unspaced = tokens(text)
        starts = [i for i in range(len(toks) - SEED + 1) if gram_hash(toks[i : i + SEED]) in self.seeds]
        for size in sorted(self.char_sizes if unspaced else self.word_sizes):
            for i in starts:
                if i + size <= len(toks):
                    hit = self.grams.get(gram_hash(toks[i : i + size]))
                    if hit is not None:
                        return hit
        return None


def eval_texts(eval_set: EvalSet, data_dir: Path | None, mirror: Path | None) -> Iterator[tuple[str, str]]:
    """(item id, text) of an evaluation set: every string (or list of strings) in its `fields`."""
    if eval_set.hub is not None:
        from datakit.recipe import Source
        from datakit.sources.hub import iter_hub_rows

        src = Source(name=eval_set.name, format="alpaca", hub=eval_set.hub, config=eval_set.config, split=eval_set.split,
                     lang="eng_Latn", license="eval")
        rows = iter_hub_rows(src, eval_set.config, mirror, 0, 1, None)
    else:
        root = Path(eval_set.path)
        if not root.is_absolute():
            if data_dir is None:
                raise SourceError(f"evaluation set {eval_set.name!r}: relative path {eval_set.path} needs a data folder (--data-dir)")
            root = data_dir / root
        if not root.exists():
            raise SourceError(f"evaluation set {eval_set.name!r}: no such file or folder: {root}")
        paths = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file() and fileio.data_suffix(p) in fileio.ROW_SUFFIXES)
        rows = (item for p in paths for item in fileio.iter_rows(p))
    for item in rows:
        if isinstance(item, RawError):
            continue
        loc, row = item
        if not isinstance(row, dict):
            continue
        ident = str(row.get(eval_set.id_field, f"{Path(str(loc.get('file', ''))).name}:{loc.get('line', loc.get('row'))}"))
        for field in eval_set.fields:
            value = row.get(field)
            for text in [value] if isinstance(value, str) else value if isinstance(value, list) else []:
                if isinstance(text, str) and text.strip():
                    yield f"{Path(str(loc.get('file', eval_set.name))).name}#{ident}", text


def build_index(config: DecontaminateConfig, data_dir: Path | None, mirror: Path | None) -> Index:
    grams: dict[int, tuple[tuple[str, str], ...]] = {}
    sizes: dict[bool, set[int]] = {False: {config.word_ngram}, True: {config.char_ngram}}
    seeds: set[int] = set()
    for eval_set in config.sets:
        found = 0
        for ident, text in eval_texts(eval_set, data_dir, mirror):
            toks, unspaced = tokens(text)
            n = config.char_ngram if unspaced else config.word_ngram
            if len(toks) < max(SEED, config.min_chars if unspaced else config.min_words):
                continue
            found += 1
            size = min(n, len(toks))
            sizes[unspaced].add(size)
            for i in range(len(toks) - size + 1):
                h = gram_hash(toks[i : i + size])
                if not any(name == eval_set.name for name, _ in grams.get(h, ())):
                    grams[h] = (*grams.get(h, ()), (eval_set.name, ident))
                seeds.add(gram_hash(toks[i : i + SEED]))
        if not found:
            raise SourceError(f"evaluation set {eval_set.name!r} has no text in fields {eval_set.fields}")
    return Index(grams, frozenset(sizes[False]), frozenset(sizes[True]), frozenset(seeds))


def save_index(index: Index, path: Path) -> str:
    """Write the index where every task can load it; the path, for the tasks' resources."""
    from datakit.store import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_bytes(pickle.dumps(index, protocol=pickle.HIGHEST_PROTOCOL))
    return str(path)


@functools.lru_cache(maxsize=4)
def load_index(path: str) -> Index:
    """The index `save_index` wrote, read once per process (a work file of this build: its folder is
    named by the build's fingerprint, so one path always holds the same index)."""
    return pickle.loads(Path(path).read_bytes())


class Decontaminate(RecordStage):
    name = "decontaminate"

    def __init__(self, index: Index):
        self.index = index
        # A partition repeats its texts: a sentence is the answer of X->en and X->zh and the source
        # of en->X and zh->X, so each text is looked up once.
        self._match = functools.lru_cache(maxsize=1 << 16)(index.match)

    def apply(self, record: Record, stats: StageStats) -> str | None:
        for text in self._texts(record):
            hits = self._match(text)
            if hits:
                record["meta"]["contaminated_by"] = [{"benchmark": b, "item": i} for b, i in hits]
                for benchmark, _ in hits:
                    stats.note(benchmark, "removed")
                return "decontaminated"
        return None

    @staticmethod
    def _texts(record: Record) -> list[str]:
        """What could hold a benchmark item: a translation's two texts (its frame is one of our
        templates), every non-system turn otherwise."""
        if record["task"] == "translation" and declared_content(record):
            return declared_content(record)
        return [m["content"] for m in record["messages"] if m["role"] != "system"]
