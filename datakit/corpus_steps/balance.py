"""Balancing to a target size and mix, exactly and deterministically.

Works on compact per-record keys (id, group, lang, task). Every quota is an integer, and the quotas
sum to the target:
  1. groups (zh / en / cross_lingual) get target x mix, rounded by largest remainder;
  2. inside a group, languages first get their floor (`min_per_language`, or all they have if
     less), then the rest by temperature sampling over their sizes (p proportional to n^(1/T)),
     never above their cap (`max_per_language`, and what they hold times `max_repeat`);
  3. inside a language, tasks share its quota by `task_weights` (by their sizes when none are given).
Every split is water-filled: a cell that cannot take its share is filled and the excess goes to
the cells that still have room, in proportion to their weights. A group that cannot fill its quota
hands the shortfall to the other groups in proportion to their ratios; whatever is still missing
is reported as `shortfall`. Inside a cell the records kept are those with the smallest seeded
hash of their id; when upsampling is allowed and a cell must repeat records, the extra copies go
to the records in the same order, round after round. The selection depends only on (recipe,
inputs, seed).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from datakit.recipe import Balance
from datakit.records import stable_int

REPEATABLE_TASKS = frozenset({"translation"})  # repeats are re-rendered with another template (construct/rerender.py)


def allocate(total: int, weights: Mapping[Any, float], caps: Mapping[Any, int]) -> dict[Any, int]:
    """Split `total` into integers proportional to `weights`, none above its cap (water-filling +
    largest remainder; ties broken by key order). Sums to min(total, sum(caps))."""
    keys = sorted(weights, key=repr)
    alloc = {k: 0 for k in keys}
    remaining = min(total, sum(caps[k] for k in keys))
    active = [k for k in keys if caps[k] > 0 and weights[k] > 0]
    if remaining > 0 and not active:  # only zero weights left with room: share evenly
        active = [k for k in keys if caps[k] > 0]
        weights = {k: 1.0 for k in keys}
    while remaining > 0 and active:
        wsum = sum(weights[k] for k in active)
        ideal = {k: remaining * weights[k] / wsum for k in active}
        full = [k for k in active if alloc[k] + ideal[k] >= caps[k]]
        if full:
            for k in full:
                remaining -= caps[k] - alloc[k]
                alloc[k] = caps[k]
            active = [k for k in active if k not in full]
            continue
        floors = {k: math.floor(ideal[k]) for k in active}
        for k in active:
            alloc[k] += floors[k]
        left = remaining - sum(floors.values())
        # Remainders compared at 1e-9: float noise must not decide a tie; the key order does.
        by_remainder = sorted(active, key=lambda k: (-round(ideal[k] - floors[k], 9), keys.index(k)))
        for k in by_remainder[:left]:
            alloc[k] += 1
        remaining = 0
    return alloc


@dataclass(kw_only=True)
class BalanceSettings:
    target: int | None
    mix: Mapping[str, float]
    temperature: float = 1.0
    min_per_language: int = 0
    max_per_language: int | None = None
    task_weights: Mapping[str, float] = field(default_factory=dict)
    max_repeat: int = 1
    seed: int = 0

    @classmethod
    def from_recipe(cls, balance: Balance, seed: int) -> BalanceSettings:
        return cls(target=balance.target_size, mix=balance.mix, temperature=balance.temperature,
                   min_per_language=balance.min_per_language, max_per_language=balance.max_per_language,
                   task_weights=balance.task_weights, max_repeat=balance.max_repeat, seed=seed)


@dataclass
class Plan:
    copies: np.ndarray  # per input row: how many times it goes into the corpus (0 = left out)
    quotas: dict[str, dict[str, int]] = field(default_factory=dict)   # group -> "lang|task" -> records
    available: dict[str, dict[str, int]] = field(default_factory=dict)
    shortfall: dict[str, int] = field(default_factory=dict)

    @property
    def selected(self) -> np.ndarray:
        return self.copies > 0


def _language_quotas(quota: int, sizes: Mapping[str, int], s: BalanceSettings, repeat: Mapping[str, int]) -> dict[str, int]:
    caps = {lang: min(s.max_per_language or math.inf, n * repeat[lang]) for lang, n in sizes.items()}
    caps = {k: int(v) for k, v in caps.items()}
    floors = {lang: min(s.min_per_language, caps[lang]) for lang in sizes}
    if sum(floors.values()) >= quota:
        return allocate(quota, floors, floors)
    rest = allocate(quota - sum(floors.values()), {lang: n ** (1.0 / s.temperature) for lang, n in sizes.items()},
                    {lang: caps[lang] - floors[lang] for lang in sizes})
    return {lang: floors[lang] + rest[lang] for lang in sizes}


Cell = tuple[str, str, str]  # (group, language, task)


@dataclass
class Quotas:
    """Records per cell that balance selects, and what the available data could not fill."""

    cells: dict[Cell, int]
    shortfall: dict[str, int] = field(default_factory=dict)

    def by_group(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for (g, lang, t), q in sorted(self.cells.items()):
            out.setdefault(g, {})[f"{lang}|{t}"] = q
        return out


def _repeat(s: BalanceSettings, task: str) -> int:
    return s.max_repeat if task in REPEATABLE_TASKS else 1


def plan_quotas(sizes: Mapping[Cell, int], s: BalanceSettings) -> Quotas:
    """Quotas per (group, language, task) from the records each cell holds (or is expected to hold:
    reading by quota plans from estimates before it reads). `s.target` must be set."""
    assert s.target is not None
    group_room = {g: sum(n * _repeat(s, t) for (gg, _, t), n in sizes.items() if gg == g) for g in s.mix}
    group_quota = allocate(s.target, dict(s.mix), group_room)
    planned = allocate(s.target, dict(s.mix), {g: s.target for g in s.mix})
    shortfall = {g: planned[g] - group_quota[g] for g in s.mix if planned[g] > group_quota[g]}
    if sum(group_quota.values()) < s.target:
        shortfall["total"] = s.target - sum(group_quota.values())
    cell_quota: dict[Cell, int] = {}
    for g in s.mix:
        by_lang: dict[str, dict[str, int]] = {}
        for (gg, lang, t), n in sizes.items():
            if gg == g and n:
                by_lang.setdefault(lang, {})[t] = n
        lang_repeat = {lang: max(_repeat(s, t) for t in ts) for lang, ts in by_lang.items()}
        lang_quota = _language_quotas(group_quota[g], {lang: sum(ts.values()) for lang, ts in by_lang.items()}, s, lang_repeat)
        for lang, ts in by_lang.items():
            weights = {t: (s.task_weights.get(t, 0.0) if s.task_weights else float(size)) for t, size in ts.items()}
            for t, q in allocate(lang_quota[lang], weights, {t: size * _repeat(s, t) for t, size in ts.items()}).items():
                cell_quota[(g, lang, t)] = q
    return Quotas(cell_quota, shortfall)


HASH_CHUNK = 65_536  # ids turned into Python strings at once when hashing them


def seeded_ranks(ids: pa.Array | pa.ChunkedArray, groups: np.ndarray, hashed: np.ndarray, seed: int, salt: str) -> np.ndarray:
    """Each row's rank inside its group (`groups`: an integer per row) in the order of
    (`stable_int(seed, salt, id)`, id): the seeded order balance and the validation split pick
    records in. Only the rows where `hashed` is set get a hash (a group that is taken whole needs
    no order); the others rank by id alone. One Arrow sort over the whole table, never a Python
    list of every id."""
    n = len(ids)
    ids = ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids
    hashes = np.zeros(n, dtype=np.uint64)
    todo = np.flatnonzero(hashed)
    for k in range(0, len(todo), HASH_CHUNK):
        rows = todo[k : k + HASH_CHUNK]
        chunk = ids.take(pa.array(rows)).to_pylist()
        hashes[rows] = np.fromiter((stable_int(seed, salt, x) for x in chunk), dtype=np.uint64, count=len(rows))
    order = pc.sort_indices(pa.table({"g": groups, "h": hashes, "id": ids}),
                            sort_keys=[("g", "ascending"), ("h", "ascending"), ("id", "ascending")]).to_numpy()
    sorted_groups = groups[order]
    starts = np.flatnonzero(np.r_[True, sorted_groups[1:] != sorted_groups[:-1]])
    first = np.repeat(starts, np.diff(np.r_[starts, n]))
    ranks = np.empty(n, dtype=np.int64)
    ranks[order] = np.arange(n) - first
    return ranks


def cell_codes(keys: pa.Table, columns: list[str]) -> tuple[np.ndarray, list[tuple[str, ...]]]:
    """An integer per row for its combination of `columns`, and the combination each integer stands for."""
    if keys.num_rows == 0:
        return np.zeros(0, dtype=np.int64), []
    code = np.zeros(keys.num_rows, dtype=np.int64)
    dictionaries = []
    for c in columns:
        encoded = pc.dictionary_encode(keys.column(c).combine_chunks())
        code = code * len(encoded.dictionary) + encoded.indices.to_numpy(zero_copy_only=False)
        dictionaries.append(encoded.dictionary.to_pylist())
    uniq, inverse = np.unique(code, return_inverse=True)
    names = []
    for u in uniq.tolist():
        parts = []
        for d in reversed(dictionaries):
            u, i = divmod(u, len(d))
            parts.append(d[i])
        names.append(tuple(reversed(parts)))
    return inverse.astype(np.int64), names


def plan_selection(keys: pa.Table, s: BalanceSettings, quotas: Quotas | None = None) -> Plan:
    """How many times each row goes into the corpus. `keys` has columns id, group, lang, task.

    `quotas`: planned before reading (reading by quota), from what every cell is expected to hold in
    the whole source; without them they are planned here from the rows given. A cell that holds
    fewer rows than its quota gives all it has (repeats only where the task may repeat). Works in
    numpy and Arrow: at millions of rows a Python list per column was most of the driver's memory."""
    n = keys.num_rows
    code, names = cell_codes(keys, ["group", "lang", "task"])
    sizes = np.bincount(code, minlength=len(names))
    cells: dict[Cell, int] = {cell: int(m) for cell, m in zip(names, sizes.tolist(), strict=True)}
    available: dict[str, dict[str, int]] = {}
    for (g, lang, t), m in cells.items():
        available.setdefault(g, {})[f"{lang}|{t}"] = m
    if s.target is None:
        return Plan(np.ones(n, dtype=np.int64), available=available)
    if quotas is None:
        quotas = plan_quotas(cells, s)
        cell_quota = quotas.cells
    else:  # planned from estimates: a cell gives at most what it holds (times its repeats)
        cell_quota = {cell: min(q, cells.get(cell, 0) * _repeat(s, cell[2])) for cell, q in quotas.cells.items()}

    quota = np.array([cell_quota.get(cell, 0) for cell in names], dtype=np.int64)
    full, extra = np.divmod(quota, np.maximum(sizes, 1))
    ranks = seeded_ranks(keys.column("id"), code, extra[code] > 0, s.seed, "balance")
    copies = full[code] + (ranks < extra[code])
    return Plan(copies.astype(np.int64), Quotas(cell_quota).by_group(), available, shortfall_of(cell_quota, s))


def shortfall_of(selected: Mapping[Cell, int], s: BalanceSettings) -> dict[str, int]:
    """What the selection leaves of the target: per group against its share of the mix, and in total."""
    assert s.target is not None
    planned = allocate(s.target, dict(s.mix), {g: s.target for g in s.mix})
    got = {g: sum(n for (gg, _, _), n in selected.items() if gg == g) for g in s.mix}
    shortfall = {g: planned[g] - got[g] for g in s.mix if planned[g] > got[g]}
    if sum(got.values()) < s.target:
        shortfall["total"] = s.target - sum(got.values())
    return shortfall


def validation_rows(ids: pa.Array | pa.ChunkedArray, langs: pa.Array | pa.ChunkedArray, *, fraction: float, min_rows: int,
                    max_rows: int, min_language_rows: int, seed: int) -> np.ndarray:
    """Which of the selected rows form each language's validation split: a deterministic fraction
    (by a seeded hash of the id, salted apart from balancing), at least `min_rows` and at most
    `max_rows` rows, for languages with at least `min_language_rows` records."""
    code, names = cell_codes(pa.table({"lang": langs}), ["lang"])
    sizes = np.bincount(code, minlength=len(names))
    k = np.minimum(max_rows, np.maximum(min_rows, np.round(fraction * sizes).astype(np.int64)))
    k[sizes < min_language_rows] = 0
    ranks = seeded_ranks(ids, code, k[code] > 0, seed, "validation")
    return ranks < k[code]
