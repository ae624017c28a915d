import pyarrow as pa

from datakit.records import new_record, record_id
from datakit.stages.balance import allocate, plan_selection
from datakit.stages.dedup import dedup_key, find_duplicates


def translation(user: str, answer: str, src="swh_Latn", tgt="eng_Latn", src_text="Habari"):
    r = new_record(messages=[{"role": "user", "content": user}, {"role": "assistant", "content": answer}],
                   lang="swh_Latn", task="translation", source="s", license="x", src_lang=src, tgt_lang=tgt)
    r["_dedup_parts"] = [src_text, answer]
    return r


def test_translation_duplicates_ignore_the_template_but_not_the_direction():
    a = translation("Translate into English:\nHabari", "Hello")
    b = translation("把这句话翻译成英语：Habari", "hello!")
    c = translation("Translate into Chinese:\nHabari", "你好", tgt="zho_Hans")
    assert dedup_key(a) == dedup_key(b)
    assert dedup_key(a) != dedup_key(c)


def test_general_duplicates_fold_case_width_and_punctuation():
    def general(text):
        return new_record(messages=[{"role": "user", "content": "Q"}, {"role": "assistant", "content": text}],
                          lang="eng_Latn", task="general", source="s", license="x")
    assert dedup_key(general("Hello, World!")) == dedup_key(general("hello   world"))
    assert dedup_key(general("Ｈｅｌｌｏ world")) == dedup_key(general("hello world"))
    assert dedup_key(general("hello world")) != dedup_key(general("hello word"))


def test_representative_is_the_smallest_id_whatever_the_order():
    keys = pa.table({"part": [0, 0, 1, 2, 2], "row": [0, 1, 0, 0, 1], "id": ["c", "x", "a", "b", "y"],
                     "key": [b"k1" * 8, b"k2" * 8, b"k1" * 8, b"k1" * 8, b"k3" * 8]})
    dups = find_duplicates(keys).to_pylist()
    assert sorted((d["part"], d["row"], d["duplicate_of"]) for d in dups) == [(0, 0, "a"), (2, 0, "a")]
    shuffled = keys.take(pa.array([4, 2, 0, 3, 1]))
    assert sorted(map(tuple, (d.values() for d in find_duplicates(shuffled).to_pylist()))) == sorted(map(tuple, (d.values() for d in dups)))


def test_allocate_is_exact_proportional_and_capped():
    got = allocate(10, {"a": 1, "b": 1, "c": 1}, {"a": 100, "b": 100, "c": 100})
    assert sum(got.values()) == 10 and sorted(got.values()) == [3, 3, 4]
    got = allocate(10, {"a": 1, "b": 1}, {"a": 2, "b": 100})
    assert got == {"a": 2, "b": 8}
    assert sum(allocate(1000, {"a": 1}, {"a": 7}).values()) == 7


def make_keys(n_zh, n_en, cross: dict[str, int]):
    ids, groups, langs, tasks = [], [], [], []
    for g, lang, task, n in [("zh", "zho_Hans", "general", n_zh), ("en", "eng_Latn", "general", n_en)] + [
            ("cross_lingual", lang, "translation", n) for lang, n in cross.items()]:
        for i in range(n):
            ids.append(record_id({"messages": [{"role": "user", "content": f"{lang}{i}"}], "task": task}))
            groups.append(g)
            langs.append(lang)
            tasks.append(task)
    return pa.table({"id": ids, "group": groups, "lang": langs, "task": tasks})


def test_balance_meets_the_quota_exactly_and_does_not_depend_on_row_order():
    keys = make_keys(500, 300, {"swh_Latn": 400, "yor_Latn": 40})
    mix = {"zh": 0.5, "en": 0.3, "cross_lingual": 0.2}
    plan = plan_selection(keys, 200, mix, 1.0, seed=3)
    chosen = keys.filter(pa.array(plan.selected))
    counts = {g: chosen.column("group").to_pylist().count(g) for g in mix}
    assert counts == {"zh": 100, "en": 60, "cross_lingual": 40}
    reversed_keys = keys.take(pa.array(range(keys.num_rows - 1, -1, -1)))
    again = reversed_keys.filter(pa.array(plan_selection(reversed_keys, 200, mix, 1.0, seed=3).selected))
    assert sorted(again.column("id").to_pylist()) == sorted(chosen.column("id").to_pylist())
    other_seed = keys.filter(pa.array(plan_selection(keys, 200, mix, 1.0, seed=4).selected))
    assert sorted(other_seed.column("id").to_pylist()) != sorted(chosen.column("id").to_pylist())


def test_balance_reports_the_shortfall_and_hands_it_to_other_groups():
    keys = make_keys(50, 300, {"swh_Latn": 400})
    plan = plan_selection(keys, 400, {"zh": 0.5, "en": 0.3, "cross_lingual": 0.2}, 1.0, seed=1)
    assert int(plan.selected.sum()) == 400
    assert plan.shortfall == {"zh": 150}
