import textwrap

import pytest

from datakit.errors import RecipeError
from datakit.recipe import load_recipe, with_overrides
from datakit.resources import pipeline_path

MINIMAL = """
name: t
sources:
  - name: a
    format: alpaca
    path: a.json
    lang: en
    license: MIT
"""


def write(tmp_path, text):
    p = tmp_path / "r.yaml"
    p.write_text(textwrap.dedent(text), encoding="utf-8")
    return p


def test_shipped_recipes_validate():
    for name in ("local.yaml", "bayling2.yaml"):
        recipe = load_recipe(pipeline_path(name))
        assert recipe.sources


def test_language_codes_in_recipes_are_normalised(tmp_path):
    recipe = load_recipe(write(tmp_path, MINIMAL))
    assert recipe.sources[0].lang == "eng_Latn"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("    license: MIT", "    license: MIT\n    colour: red"), r"sources\[0\] \(a\)\.colour: unknown key"),
        (("    format: alpaca", "    format: xlsx"), r"sources\[0\] \(a\)\.format: Input should be"),
        (("    lang: en", "    lang: klingon-ish"), r"sources\[0\] \(a\)\.lang: unknown language code"),
        (("name: t", "name: t\nseed: many"), r"seed: Input should be a valid integer"),
        (("    path: a.json", "    path: a.json\n    hub: org/name"), r"exactly one of `path`"),
    ],
)
def test_errors_name_the_key(tmp_path, change, expected):
    with pytest.raises(RecipeError, match=expected):
        load_recipe(write(tmp_path, MINIMAL.replace(*change)))


def test_missing_required_key_is_named(tmp_path):
    with pytest.raises(RecipeError, match=r"sources\[0\] \(a\)\.license: required key is missing"):
        load_recipe(write(tmp_path, MINIMAL.replace("    license: MIT\n", "")))


def test_broken_yaml_names_the_line(tmp_path):
    with pytest.raises(RecipeError, match=r"line \d+"):
        load_recipe(write(tmp_path, MINIMAL + "  - [unclosed\n"))


def test_missing_recipe_file_is_named(tmp_path):
    with pytest.raises(RecipeError, match="recipe file not found: .*nope.yaml"):
        load_recipe(tmp_path / "nope.yaml")


def test_mix_must_sum_to_one_and_overrides_are_validated(tmp_path):
    recipe = load_recipe(write(tmp_path, MINIMAL))
    assert with_overrides(recipe, **{"balance.target_size": 10}).balance.target_size == 10
    with pytest.raises(RecipeError, match="sum to 1"):
        with_overrides(recipe, **{"balance.mix": {"zh": 0.5, "en": 0.2, "cross_lingual": 0.2}})


def test_per_language_file_patterns_need_a_lang_group(tmp_path):
    bad = MINIMAL.replace("format: alpaca", "format: tsv_qa").replace("    lang: en\n", "    files: 'x.tsv'\n")
    with pytest.raises(RecipeError, match=r"\(\?P<lang>"):
        load_recipe(write(tmp_path, bad))
