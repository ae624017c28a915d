"""The terminal's tables: the funnel after a build and the dry run's balance plan."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from datakit.console import print_funnel, print_plan
from datakit.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[1]
STATS = {"stages": [{"name": "read", "in": 12345, "created": 0, "repeated": 0, "kept": 12000, "rejected": {"empty_text": 345},
                     "unselected": 0}]}


def _printed(fn, *args) -> str:
    console = Console(file=io.StringIO(), width=200)
    fn(console, *args)
    return console.file.getvalue()


def test_funnel_groups_thousands():
    text = _printed(print_funnel, STATS)
    assert "records per stage" in text
    assert "12,345" in text and "12,000" in text and "empty_text 345" in text


def test_plan_shows_groups_cells_and_shortfall():
    recipe = load_recipe(ROOT / "pipelines" / "local.yaml")
    available = {"zh": {"zho_Hans|general": 5000}, "cross_lingual": {"swh_Latn|translation": 70}}
    quotas = {"zh": {"zho_Hans|general": 3000}, "cross_lingual": {"swh_Latn|translation": 70}}
    text = _printed(print_plan, recipe, available, quotas, {"zh": 1500, "total": 1500})
    assert "balance plan" in text and "5,000" in text and "3,000" in text
    assert "97.7%" in text and f"{100 * recipe.balance.mix['zh']:.1f}%" in text
    assert "swh_Latn" in text and "shortfall: zh 1,500, total 1,500" in text
