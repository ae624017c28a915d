"""The per-record stages, in the order a record goes through them: the one table to change.

The stage objects of a run, their names and the order of the stats all derive from `STAGES`, so a
new filter is one class (a `RecordStage` that only decides) and one line here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from datakit.recipe import Recipe
from datakit.record_stages.base import RecordStage
from datakit.record_stages.decontaminate import Decontaminate, load_index
from datakit.record_stages.judge import Judge
from datakit.record_stages.length import Length
from datakit.record_stages.lid import LanguageId
from datakit.record_stages.normalise import Normalise
from datakit.record_stages.quality import Quality

# Records are read and constructed before any stage; both count in stats.json like stages.
INPUT_STAGES = ("read", "construct")


@dataclass(frozen=True, kw_only=True)
class StageResources:
    """What the driver prepares once for every task: files and indexes stages load, never rebuild."""

    lid_model: str | None = None  # path of the fastText model (resolved before any task runs)
    contamination: str | None = None  # the n-grams of the evaluation sets: a file (decontaminate.save_index)
    llm_cache: str | None = None  # the LLM response cache folder (judge)
    run_id: str = ""  # the judge's budget/run label


def _prepared(value, what: str):
    if value is None:
        raise ValueError(f"{what} must be prepared by the driver before any task runs")
    return value


@dataclass(frozen=True)
class StageSpec:
    name: str
    enabled: Callable[[Recipe], bool]
    make: Callable[[Recipe, StageResources], RecordStage]


STAGES: tuple[StageSpec, ...] = (
    StageSpec(Normalise.name, lambda r: True, lambda r, res: Normalise(r.filters.normalise)),
    StageSpec(Length.name, lambda r: True, lambda r, res: Length(r.filters.length)),
    # Contamination first: a record holding a benchmark item is reported as such, whatever else is wrong with it.
    StageSpec(Decontaminate.name, lambda r: bool(r.filters.decontaminate.sets), lambda r, res: Decontaminate(load_index(_prepared(res.contamination, "the decontamination index")))),
    StageSpec(LanguageId.name, lambda r: r.filters.lid.enabled, lambda r, res: LanguageId(r.filters.lid, _prepared(res.lid_model, "the LID model"))),
    StageSpec(Quality.name, lambda r: r.filters.quality.enabled, lambda r, res: Quality(r.filters.quality)),
    # Last: the LLM judges only what every other filter kept.
    StageSpec(Judge.name, lambda r: r.filters.judge.enabled, lambda r, res: Judge(r.filters.judge, res.llm_cache, res.run_id)),
)


def enabled_stages(recipe: Recipe) -> list[StageSpec]:
    return [spec for spec in STAGES if spec.enabled(recipe)]


def record_stages(recipe: Recipe, resources: StageResources) -> list[RecordStage]:
    """The recipe's per-record stages, built, in order."""
    return [spec.make(recipe, resources) for spec in enabled_stages(recipe)]


def stage_names(recipe: Recipe) -> list[str]:
    """Every stage a record passes before the whole-corpus steps, in stats order (read and construct first)."""
    return [*INPUT_STAGES, *(spec.name for spec in enabled_stages(recipe))]
