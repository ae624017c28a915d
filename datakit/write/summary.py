"""What a build made, as plain data: the filter funnel per stage, the mix per group and per language.

The console, the dataset card and the HTML report all show these tables. Each used to count them
itself, and three counts of one thing drift apart; here they are counted once, from the build's
stats.json dict and the rows written per (group, lang, task, source), and the three surfaces only
format them. The dry run's balance plan is the same mix table computed from the quotas instead of
the written rows, so it shares the group rows.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from datakit.languages import display_name

GROUPS = ("zh", "en", "cross_lingual")


def listing(counts: Mapping[str, int], fmt: str = "{0}: {1}") -> str:
    """`a: 1, b: 2`: how every surface puts a breakdown (rejections by reason, shortfall) in one cell.
    `fmt` lets each surface write its numbers its own way (the console groups thousands)."""
    return ", ".join(fmt.format(key, n) for key, n in counts.items())


@dataclass(frozen=True)
class FunnelRow:
    """One stage of the filter funnel, as stats.json records it: in + created + repeated = kept + removed."""

    name: str
    in_: int
    created: int
    repeated: int
    kept: int
    rejected: dict[str, int]  # reason -> records, in the order stats.json lists them
    unselected: int  # left out by balance

    def rejected_text(self, fmt: str = "{0}: {1}") -> str:
        """The reasons in one cell, "-" when the stage rejected nothing (an empty cell reads as missing)."""
        return listing(self.rejected, fmt) or "-"


def funnel(stats: Mapping[str, Any]) -> tuple[FunnelRow, ...]:
    """The funnel from stats.json: every surface shows the same stages in the build's order."""
    return tuple(FunnelRow(s["name"], s["in"], s["created"], s["repeated"], s["kept"], s["rejected"], s["unselected"])
                 for s in stats["stages"])


@dataclass(frozen=True)
class GroupRow:
    """One group of the mix: its records against the recipe's target share."""

    group: str
    records: int
    total: int  # records in all groups: the share's denominator
    target: float  # the recipe's share for the group, a fraction

    @property
    def percent(self) -> float | None:
        """Share of all records in percent; None for an empty corpus, where a share means nothing."""
        return 100 * self.records / self.total if self.total else None

    @property
    def target_percent(self) -> float:
        return 100 * self.target


def group_rows(records: Mapping[str, int], mix: Mapping[str, float]) -> tuple[GroupRow, ...]:
    """The mix table, always the three groups in their fixed order, so an empty group shows as 0
    rather than vanishing. A group the mix leaves out has a target of 0."""
    total = sum(records.values())
    return tuple(GroupRow(g, records.get(g, 0), total, mix.get(g, 0.0)) for g in GROUPS)


@dataclass(frozen=True)
class LanguageRow:
    """One language: its records in all and per task (in the order of `Summary.tasks`)."""

    code: str
    name: str
    records: int
    per_task: tuple[int, ...]


def _language_rows(counts: Mapping[tuple[str, str, str, str], int], tasks: tuple[str, ...]) -> list[LanguageRow]:
    """One row per language, in the order the counts first name them (the mix plot breaks ties so)."""
    by_lang: dict[str, Counter] = {}
    for (_, lang, task, _), n in counts.items():
        by_lang.setdefault(lang, Counter())[task] += n
    return [LanguageRow(lang, display_name(lang), sum(c.values()), tuple(c.get(t, 0) for t in tasks)) for lang, c in by_lang.items()]


@dataclass(frozen=True)
class Summary:
    """The tables of a finished build, computed once and rendered by the card, the report and the console."""

    total: int  # records written (repeats included)
    tasks: tuple[str, ...]  # sorted
    groups: tuple[GroupRow, ...]
    languages: tuple[LanguageRow, ...]  # most records first, then by code: the order of every language table
    largest_languages: tuple[LanguageRow, ...]  # most records first, ties in the order the data names them (the mix plot)
    sources: dict[str, int]  # records per source
    funnel: tuple[FunnelRow, ...]
    shortfall: dict[str, int]  # what balance could not fill, per group and "total"; empty when nothing is short

    def shortfall_text(self) -> str:
        """The shortfall in one line, written alike by the card and the report."""
        return listing(self.shortfall, "{0}: {1:,}")


def _by_source(counts: Mapping[tuple[str, str, str, str], int]) -> dict[str, int]:
    out: Counter = Counter()
    for (_, _, _, source), n in counts.items():
        out[source] += n
    return dict(out)


def _by_group(counts: Mapping[tuple[str, str, str, str], int]) -> dict[str, int]:
    out: Counter = Counter()
    for (group, _, _, _), n in counts.items():
        out[group] += n
    return dict(out)


def summarize(stats: Mapping[str, Any], counts: Mapping[tuple[str, str, str, str], int], mix: Mapping[str, float]) -> Summary:
    """`stats` is stats.json's dict, `counts` maps (group, lang, task, source) -> rows written, `mix`
    the recipe's target share per group."""
    tasks = tuple(sorted({k[2] for k in counts}))
    langs = _language_rows(counts, tasks)
    return Summary(
        total=sum(counts.values()),
        tasks=tasks,
        groups=group_rows(_by_group(counts), mix),
        languages=tuple(sorted(langs, key=lambda r: (-r.records, r.code))),
        # a stable sort by size alone, as Counter.most_common orders: the plot's bars keep their order
        largest_languages=tuple(sorted(langs, key=lambda r: r.records, reverse=True)),
        sources=_by_source(counts),
        funnel=funnel(stats),
        shortfall=dict(stats.get("shortfall") or {}),
    )


# ---------------------------------------------------------------------------- the dry run's plan


@dataclass(frozen=True)
class PlanGroup:
    """A group of the balance plan: the mix row of what would be selected, beside what is available."""

    mix: GroupRow  # records = selected
    available: int
    languages: int  # languages with at least one record selected


@dataclass(frozen=True)
class PlanCell:
    """One (group, language, task) cell of the plan."""

    group: str
    lang: str
    task: str
    available: int
    selected: int


@dataclass(frozen=True)
class Plan:
    """What balance would select (a dry run), against what the data offers."""

    groups: tuple[PlanGroup, ...]
    cells: tuple[PlanCell, ...]  # largest selection first, then by language and task
    shortfall: dict[str, int]


def _cells(per_group: Mapping[str, Mapping[str, int]]) -> Iterable[tuple[str, str, str, str, int]]:
    """(group, key, lang, task, records) for every cell: quota keys are "lang|task", split here once."""
    for g, per in per_group.items():
        for key, n in per.items():
            lang, _, task = key.partition("|")
            yield g, key, lang, task, n


def plan(available: Mapping[str, Mapping[str, int]], quotas: Mapping[str, Mapping[str, int]] | None,
         shortfall: Mapping[str, int] | None, mix: Mapping[str, float]) -> Plan:
    """`available` and `quotas` map group -> "lang|task" -> records. Without a target size balance
    sets no quotas and keeps everything, so the selection is then what is available."""
    selected = quotas or available
    cells = [PlanCell(g, lang, task, available.get(g, {}).get(key, 0), n) for g, key, lang, task, n in _cells(selected)]
    groups = group_rows({g: sum(per.values()) for g, per in selected.items()}, mix)
    return Plan(
        groups=tuple(PlanGroup(row, sum(available.get(row.group, {}).values()),
                               len({c.lang for c in cells if c.group == row.group and c.selected})) for row in groups),
        cells=tuple(sorted(cells, key=lambda c: (-c.selected, c.lang, c.task))),
        shortfall=dict(shortfall or {}),
    )
