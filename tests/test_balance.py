"""Balancing to a target and mix, and the validation split (corpus_steps/balance.py)."""

import pyarrow as pa

from datakit.corpus_steps.balance import BalanceSettings, allocate, plan_selection, validation_rows
from datakit.records import record_id


def test_allocate_is_exact_proportional_and_capped():
    got = allocate(10, {"a": 1, "b": 1, "c": 1}, {"a": 100, "b": 100, "c": 100})
    assert sum(got.values()) == 10 and sorted(got.values()) == [3, 3, 4]
    got = allocate(10, {"a": 1, "b": 1}, {"a": 2, "b": 100})
    assert got == {"a": 2, "b": 8}
    assert sum(allocate(1000, {"a": 1}, {"a": 7}).values()) == 7


def make_keys(n_zh, n_en, cross: dict[str, int], task: str = "translation"):
    ids, groups, langs, tasks = [], [], [], []
    for g, lang, t, n in [("zh", "zho_Hans", "general", n_zh), ("en", "eng_Latn", "general", n_en)] + [
            ("cross_lingual", lang, task, n) for lang, n in cross.items()]:
        for i in range(n):
            ids.append(record_id({"messages": [{"role": "user", "content": f"{lang}{t}{i}"}], "task": t}))
            groups.append(g)
            langs.append(lang)
            tasks.append(t)
    return pa.table({"id": ids, "group": groups, "lang": langs, "task": tasks})


def counts(keys, plan, column):
    out = {}
    for value, c in zip(keys.column(column).to_pylist(), plan.copies, strict=True):
        out[value] = out.get(value, 0) + int(c)
    return {k: v for k, v in out.items() if v}


MIX = {"zh": 0.5, "en": 0.3, "cross_lingual": 0.2}


def test_balance_meets_the_quota_exactly_and_does_not_depend_on_row_order():
    keys = make_keys(500, 300, {"swh_Latn": 400, "yor_Latn": 40})
    plan = plan_selection(keys, BalanceSettings(target=200, mix=MIX, seed=3))
    assert counts(keys, plan, "group") == {"zh": 100, "en": 60, "cross_lingual": 40}
    chosen = sorted(keys.filter(pa.array(plan.selected)).column("id").to_pylist())
    reversed_keys = keys.take(pa.array(range(keys.num_rows - 1, -1, -1)))
    again = plan_selection(reversed_keys, BalanceSettings(target=200, mix=MIX, seed=3))
    assert sorted(reversed_keys.filter(pa.array(again.selected)).column("id").to_pylist()) == chosen
    other_seed = plan_selection(keys, BalanceSettings(target=200, mix=MIX, seed=4))
    assert sorted(keys.filter(pa.array(other_seed.selected)).column("id").to_pylist()) != chosen


def test_balance_reports_the_shortfall_and_hands_it_to_other_groups():
    keys = make_keys(50, 300, {"swh_Latn": 400})
    plan = plan_selection(keys, BalanceSettings(target=400, mix=MIX, seed=1))
    assert int(plan.copies.sum()) == 400
    assert plan.shortfall == {"zh": 150}


def test_temperature_flattens_languages_and_floors_and_caps_hold():
    keys = make_keys(0, 0, {"swh_Latn": 900, "yor_Latn": 90, "zul_Latn": 10})
    mix = {"zh": 0.0, "en": 0.0, "cross_lingual": 1.0}
    plain = counts(keys, plan_selection(keys, BalanceSettings(target=100, mix=mix, temperature=1.0)), "lang")
    flat = counts(keys, plan_selection(keys, BalanceSettings(target=100, mix=mix, temperature=5.0)), "lang")
    assert plain == {"swh_Latn": 90, "yor_Latn": 9, "zul_Latn": 1}
    assert flat["yor_Latn"] > plain["yor_Latn"] and flat["zul_Latn"] > plain["zul_Latn"] and sum(flat.values()) == 100
    bounded = counts(keys, plan_selection(keys, BalanceSettings(target=100, mix=mix, min_per_language=8, max_per_language=60)), "lang")
    # floors 8 each; the other 76 by size: swh hits its cap (60), zul takes all it has (10), yor the rest.
    assert bounded == {"swh_Latn": 60, "yor_Latn": 30, "zul_Latn": 10}
    low_floor = counts(keys, plan_selection(keys, BalanceSettings(target=20, mix=mix, min_per_language=6)), "lang")
    assert low_floor["zul_Latn"] >= 6 and low_floor["yor_Latn"] >= 6 and sum(low_floor.values()) == 20


def test_task_weights_split_a_language_between_tasks():
    keys = pa.concat_tables([make_keys(0, 0, {"swh_Latn": 100}, "translation"), make_keys(0, 0, {"swh_Latn": 100}, "cross_lingual_qa")])
    plan = plan_selection(keys, BalanceSettings(target=50, mix={"zh": 0, "en": 0, "cross_lingual": 1}, task_weights={"translation": 4, "cross_lingual_qa": 1}))
    assert counts(keys, plan, "task") == {"translation": 40, "cross_lingual_qa": 10}


def test_upsampling_repeats_translations_up_to_the_limit_and_counts_them():
    keys = make_keys(10, 10, {"yor_Latn": 20})
    mix = {"zh": 0.25, "en": 0.25, "cross_lingual": 0.5}
    no_repeat = plan_selection(keys, BalanceSettings(target=80, mix=mix))
    assert int(no_repeat.copies.max()) == 1 and no_repeat.shortfall.get("cross_lingual") == 20
    repeat = plan_selection(keys, BalanceSettings(target=80, mix=mix, max_repeat=3))
    assert counts(keys, repeat, "group") == {"zh": 10, "en": 10, "cross_lingual": 60}  # zh/en never repeated
    assert int(repeat.copies.max()) == 3


def test_validation_split_is_a_deterministic_bounded_fraction_per_language():
    ids = [f"{i:032x}" for i in range(1000)]
    langs = ["swh_Latn"] * 600 + ["yor_Latn"] * 350 + ["zul_Latn"] * 50
    val = validation_rows(pa.array(ids), pa.array(langs), fraction=0.05, min_rows=1, max_rows=20, min_language_rows=100, seed=1)
    per = {lang: int(sum(v for v, l2 in zip(val, langs, strict=True) if l2 == lang)) for lang in set(langs)}
    assert per == {"swh_Latn": 20, "yor_Latn": 18, "zul_Latn": 0}
    assert (validation_rows(pa.array(ids[::-1]), pa.array(langs[::-1]), fraction=0.05, min_rows=1, max_rows=20, min_language_rows=100, seed=1)[::-1] == val).all()
