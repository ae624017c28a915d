"""Exact dedup keys and the representative of a group of duplicates (corpus_steps/exact_dedup.py)."""

import sys
import unicodedata

import pyarrow as pa

from datakit.corpus_steps.exact_dedup import dedup_key, find_duplicates
from datakit.records import new_record, set_content
from datakit.text import _PUNCT_SYMBOLS, _SPACES, dedup_text


def translation(user: str, answer: str, src="swh_Latn", tgt="eng_Latn", src_text="Habari"):
    r = new_record(messages=[{"role": "user", "content": user}, {"role": "assistant", "content": answer}],
                   lang="swh_Latn", task="translation", source="s", license="x", src_lang=src, tgt_lang=tgt)
    set_content(r, [src_text, answer])
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


def test_dedup_text_collapses_white_space_as_the_regex_definition_does():
    """The fast path (str.split) and the regex `\\s+` agree on every code point that either calls
    white space, U+001C-U+001F included (str.split's own, which the regex path keeps)."""
    spaces = [chr(c) for c in range(sys.maxunicode + 1) if not 0xD800 <= c < 0xE000 and (chr(c).isspace() or _SPACES.fullmatch(chr(c)))]
    assert len(spaces) > 20
    for c in spaces:
        text = f"{c}Ab{c}{c}c, d{c}"
        norm = _PUNCT_SYMBOLS.sub(" ", unicodedata.normalize("NFKC", text).casefold())
        assert dedup_text(text) == _SPACES.sub(" ", norm).strip(), hex(ord(c))
