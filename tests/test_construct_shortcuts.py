"""Construction's per-row shortcuts give what the long way gives, on the keys of real NTREX rows:
a row's draws keyed from a head written once (`RowSeed`) are the draws `seeded_rng` makes from
the whole key; a frame picked among the row's hub templates worked out once is the template
`templates.choose` picks; a template that keeps its cut frames still equals and hashes as
before."""

from __future__ import annotations

from pathlib import Path

import pytest

from datakit.construct import templates as T
from datakit.construct.builders import frame
from datakit.recipe import load_recipe
from datakit.records import RowSeed, seeded_rng
from datakit.sources import adapter_for
from datakit.sources.base import RawRow, ReadContext

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ntrex_rows(corpus):
    recipe = load_recipe(ROOT / "pipelines" / "local.yaml")
    source = next(s for s in recipe.sources if s.name == "ntrex128")
    ctx = ReadContext(corpus, None, 4, None, tuple(recipe.pivots))
    adapter = adapter_for(source)
    rows = [item for part in adapter.partitions(source, ctx) for item in adapter.read(source, part, ctx) if isinstance(item, RawRow)]
    assert len(rows) > 400
    return recipe, source, rows


def _draws(d, n: int = 12) -> list[int]:
    return [d.randrange(1 << 62) for _ in range(n)]  # past one digest's eight words


def test_row_draws_are_the_draws_of_the_whole_key(ntrex_rows):
    recipe, source, rows = ntrex_rows
    for row in rows:
        seed = RowSeed(recipe.seed, source.name, row.loc)
        for more in [(src, tgt) for src in row.example.texts for tgt in row.example.texts if src != tgt] + [("interactive",)]:
            assert _draws(seed.draws(*more)) == _draws(seeded_rng(recipe.seed, source.name, row.loc, *more)), (row.loc, more)


@pytest.mark.parametrize("key, more", [
    ((7, "src", {"line": 3}), ()),  # nothing after the head
    ((7, "src", {1: "a key orjson refuses"}), ("eng_Latn", "zho_Hans")),  # the head written by the standard library
    ((7, "src"), ({"file": "a dict", "line": 2}, "x")),  # a tail that cannot be kept (unhashable)
    ((2**70, "a seed beyond 64 bits"), ("swh_Latn",)),
    ((7, "ünïcödé \u2028 \x00 \"quoted\""), ("漢字", "\n")),
])
def test_row_draws_of_odd_keys_are_the_draws_of_the_whole_key(key, more):
    assert _draws(RowSeed(*key).draws(*more)) == _draws(seeded_rng(*key, *more))


def _frame_long_way(own, share, langs, unit, rng):
    """`builders.frame` as it was: the hub language drawn, then `templates.choose` among its templates."""
    if own and rng.random() < share:
        return rng.pick(own)
    return T.choose(T.TRANSLATION, rng.pick(langs), unit, rng)


def test_frames_picked_per_row_are_the_frames_choose_picks(ntrex_rows):
    recipe, source, rows = ntrex_rows
    langs, share = recipe.construction.translation.instruction_langs, 0.5
    native = [T.Template(f"{t.id}@x", "xxx_Latn", t.unit, t.text) for t in T.TRANSLATION if t.lang == "eng_Latn"]
    chosen = set()
    for row in rows:
        unit = row.example.unit
        hub_frames = {lang: T.fitting(T.TRANSLATION, lang, unit) for lang in langs}
        own = [t for t in native if t.unit in (unit, "any")]
        for own_templates in ([], own):
            seed = RowSeed(recipe.seed, source.name, row.loc)
            got = frame(own_templates, share, langs, hub_frames, seed.draws("a", "b"))
            assert got == _frame_long_way(own_templates, share, langs, unit, seed.draws("a", "b"))
            chosen.add(got.id)
    assert len(chosen) > 20  # the draws reach hub and native templates alike


def test_a_template_that_keeps_its_frames_equals_and_hashes_as_before():
    template = T.TRANSLATION[0]
    twin = T.Template(template.id, template.lang, template.unit, template.text)
    T.frame_text(template, "swh_Latn", "eng_Latn", "eng_Latn", "Habari")
    assert template.cut and not twin.cut
    assert template == twin and hash(template) == hash(twin) and repr(template) == repr(twin)
    assert T.frame_parts(twin, "swh_Latn", "eng_Latn", "eng_Latn") == template.cut[("swh_Latn", "eng_Latn", "eng_Latn")]
