"""Balancing to a target size and group mix, exactly and deterministically.

Works on compact per-record keys (id, group, lang, task). Quotas are integers that sum to the
target: group quotas from the mix, cell quotas (language x task inside a group) from temperature
sampling over the cells' sizes (p proportional to n^(1/T)); every split is rounded by largest
remainder and capped at what a cell holds, the excess going to the cells that still have records.
A group that cannot fill its quota hands the shortfall to the other groups in proportion to their
ratios; what still cannot be filled is reported as `shortfall`. Inside a cell the records kept are
those with the smallest seeded hash of their id, so the set depends only on (recipe, inputs, seed).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from datakit.records import stable_int


def allocate(total: int, weights: Mapping[Any, float], caps: Mapping[Any, int]) -> dict[Any, int]:
    """Split `total` into integers proportional to `weights`, none above its cap (water-filling +
    largest remainder; ties broken by key order). Sums to min(total, sum(caps))."""
    keys = sorted(weights, key=repr)
    alloc = {k: 0 for k in keys}
    remaining = min(total, sum(caps[k] for k in keys))
    active = [k for k in keys if caps[k] > 0 and weights[k] > 0]
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
        by_remainder = sorted(active, key=lambda k: (-(ideal[k] - floors[k]), keys.index(k)))
        for k in by_remainder[:left]:
            alloc[k] += 1
        remaining = 0
    return alloc


@dataclass
class Plan:
    selected: np.ndarray  # bool per input row
    quotas: dict[str, dict[str, int]] = field(default_factory=dict)
    shortfall: dict[str, int] = field(default_factory=dict)


def plan_selection(keys: pa.Table, target: int | None, mix: Mapping[str, float], temperature: float, seed: int) -> Plan:
    """Which rows to keep. `keys` has columns id, group, lang, task."""
    n = keys.num_rows
    if target is None:
        return Plan(np.ones(n, dtype=bool))
    groups = keys.column("group").to_numpy(zero_copy_only=False)
    cells = [f"{g}|{lang}|{t}" for g, lang, t in zip(groups, keys.column("lang").to_pylist(), keys.column("task").to_pylist(), strict=True)]
    cell_sizes: dict[str, int] = {}
    for c in cells:
        cell_sizes[c] = cell_sizes.get(c, 0) + 1
    group_sizes = {g: sum(v for c, v in cell_sizes.items() if c.startswith(g + "|")) for g in mix}
    group_quota = allocate(target, {g: mix[g] for g in mix}, group_sizes)
    shortfall = {g: max(0, round(target * mix[g]) - group_quota[g]) for g in mix}
    missing = target - sum(group_quota.values())
    if missing > 0:
        shortfall["total"] = missing
    cell_quota: dict[str, int] = {}
    for g in mix:
        in_group = {c: s for c, s in cell_sizes.items() if c.startswith(g + "|")}
        cell_quota.update(allocate(group_quota[g], {c: s ** (1.0 / temperature) for c, s in in_group.items()}, in_group))
    ids = keys.column("id").to_pylist()
    ranks = np.array([stable_int(seed, "balance", i) for i in ids], dtype=np.uint64)
    selected = np.zeros(n, dtype=bool)
    by_cell: dict[str, list[int]] = {}
    for i, c in enumerate(cells):
        by_cell.setdefault(c, []).append(i)
    for c, rows in by_cell.items():
        q = cell_quota.get(c, 0)
        if q:
            rows_arr = np.array(rows)
            order = np.lexsort((np.array([ids[r] for r in rows]), ranks[rows_arr]))
            selected[rows_arr[order[:q]]] = True
    quotas: dict[str, dict[str, int]] = {}
    for c, q in cell_quota.items():
        g, rest = c.split("|", 1)
        quotas.setdefault(g, {})[rest] = q
    return Plan(selected, quotas, {k: v for k, v in shortfall.items() if v})
