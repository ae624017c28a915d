"""Every frame, for every language the registry knows, in both frame languages, reads as a native
speaker would write it: articles agree, names carry no CLDR/ISO qualifier, the script is named
where it is not the language's default, Chinese frames name a language in Chinese wherever
language data has a Chinese name, and every placeholder is filled."""

from __future__ import annotations

import contextlib
import functools
import json
import xml.etree.ElementTree as ET

import langcodes
import pytest
import regex
from babel import Locale
from conftest import CORPUS
from language_data.names import load_trie
from language_data.util import data_filename

from datakit import languages
from datakit.construct import templates as T
from datakit.construct.interactive import REVISIONS
from datakit.construct.rerender import rerender, source_text
from datakit.errors import UnknownLanguageError

HAN = regex.compile(r"\p{Han}")
EN, ZH = Locale.parse("en"), Locale.parse("zh")
QUALIFIER = regex.compile(r"\((?:individual language|macrolanguage|" + "|".join(map(regex.escape, EN.scripts.values())) + r")\)"
                          r"|（(?:个体语言|宏语言)）")
VARIANTS = [("eng_Latn", r) for r in ("GB", "US", "IN")] + [("por_Latn", "BR"), ("fra_Latn", "CA"), ("spa_Latn", "MX"),
                                                             ("gsw_Latn", "BE"), ("gsw_Latn", "ZH")]


def registry_codes() -> list[str]:
    """FLORES-200, the named groups, the names table, and (where the corpus is here) every UDHR language."""
    codes = set(languages.flores200())
    for group in languages.group_names():
        codes.update(languages.resolve_langs(group) or ())
    for key in languages._names():
        base = key.split("-")[0]
        if "_" in base:
            codes.add(base)
        elif languages.default_script(base):
            codes.add(f"{base}_{languages.default_script(base)}")
    index = CORPUS / "udhr/data/udhr/index.xml"
    if index.is_file():
        for el in ET.parse(index).getroot().iter("udhr"):
            iso, script = el.get("iso639-3", "und"), el.get("iso15924", "")
            with contextlib.suppress(UnknownLanguageError):
                codes.add(languages.code(f"{iso}_{script}" if script else iso))
    return sorted(codes)


CODES = registry_codes()


@functools.cache
def _language_data_zh() -> dict[str, list[str]]:
    """ISO code -> the Chinese names language_data has for it (CLDR zh and zh_Hant, and more)."""
    trie = load_trie(data_filename("trie/zh/name_to_language.marisa"))
    by_code: dict[str, list[str]] = {}
    for name, value in trie.items():
        by_code.setdefault(value.decode(), []).append(name)
    return by_code


def language_data_has_chinese(code: str) -> bool:
    iso = code.split("_")[0]
    keys = {iso, langcodes.Language.get(iso).language, *(a for a, t in languages.aliases().items() if t == iso)}
    keys |= {langcodes.Language.get(k).language for k in set(keys)}
    hant = Locale.parse("zh_Hant")
    return any(k in ZH.languages or k in hant.languages or k in _language_data_zh() for k in keys)


def expected_default_script(iso: str) -> str | None:
    flores = [c.split("_")[1] for c in languages.flores200() if c.split("_")[0] == iso]
    if len(flores) == 1:
        return flores[0]
    likely = langcodes.Language.get(iso).maximize().script
    return {"Kore": "Hang"}.get(likely, likely)


def render_all(code: str):
    """(frame language, rendered text, the names it was given) for every template around `code`."""
    for template in [*T.TRANSLATION, *T.QA_EXTRACTIVE, *T.QA_MATH]:
        pivot = template.lang
        for src, tgt in ((code, "eng_Latn"), ("zho_Hans", code), (code, pivot)):
            names = {k: v for k, v in T.frame_names(src, tgt, template.lang).items() if f"{{{k}}}" in template.text}
            yield template.lang, template.render(**names, text="TEXT", context="CONTEXT", question="QUESTION"), names
    for lang, phrasings in REVISIONS["another_language"].items():
        for p in phrasings:
            name = languages.display_name(code, lang)
            yield lang, T.fill(p, lang, lang=name), {"lang": name}


@pytest.mark.parametrize("code", CODES)
def test_every_frame_reads_right_for_every_language(code):
    for frame_lang, text, names in render_all(code):
        assert "{" not in text and "}" not in text, text
        for name in names.values():
            assert name != code and not QUALIFIER.search(name), name
            if frame_lang == "eng_Latn":
                for m in regex.finditer(rf"\b([Aa]n?) {regex.escape(name)}\b", text):
                    assert m[1].lower() == languages.indefinite_article(name), text
                    if name[0] in "AEIO":
                        assert m[1].lower() == "an", text
                    elif name[0] not in "U" and not name.startswith("N’"):
                        assert m[1].lower() == "a", text
            elif not HAN.search(name):
                # A name kept in Latin letters is spaced from the Han characters around it.
                assert not regex.search(rf"\p{{Han}}{regex.escape(name)}|{regex.escape(name)}\p{{Han}}", text), text


@pytest.mark.parametrize("code", CODES)
def test_names_say_the_script_where_it_is_not_the_default_and_in_chinese_where_data_has_a_name(code):
    iso, script = code.split("_")
    en, zh = languages.display_name(code, "eng_Latn"), languages.display_name(code, "zho_Hans")
    default = expected_default_script(iso)
    if default is not None and default != script and code not in ("zho_Hant", "zho_Hans"):
        assert f"{EN.scripts[script]} script" in en or "script)" in en, en
        assert ZH.scripts.get(script, "（") in zh or "（" in zh, zh
    elif default == script:
        assert "script)" not in en and f"（{ZH.scripts.get(script)}）" not in zh, (en, zh)
    if language_data_has_chinese(code):
        assert HAN.search(zh), f"{code}: language data has a Chinese name, the frames say {zh!r}"
        for frame_lang, text, names in render_all(code):
            if frame_lang == "zho_Hans" and zh in names.values():
                assert zh in text


def test_articles_and_names_a_reader_expects():
    d = languages.display_name
    frame = next(t for t in T.TRANSLATION if t.id == "en-a05")
    assert frame.render(**T.frame_names("aar_Latn", "eng_Latn", "eng_Latn"), text="x").startswith("Please provide an English translation of the following Afar text.")
    assert frame.render(**T.frame_names("eng_Latn", "aar_Latn", "eng_Latn"), text="x").startswith("Please provide an Afar translation")
    assert frame.render(**T.frame_names("eng_Latn", "ukr_Cyrl", "eng_Latn"), text="x").startswith("Please provide a Ukrainian translation")
    assert [languages.indefinite_article(d(c)) for c in ("urd_Arab", "uig_Arab", "uzn_Latn", "yor_Latn", "pov_Latn")] == ["an", "a", "an", "a", "an"]
    assert (d("zlm_Latn"), d("kor_Hang"), d("pbt_Arab"), d("jav_Java")) == ("Malay", "Korean", "Pashto", "Javanese (Javanese script)")
    assert d("zlm_Arab") == "Malay (Jawi script)" and d("zlm_Arab", "zho_Hans") == "马来语（爪夷文）"
    assert d("srp_Latn") == "Serbian (Latin script)" and d("srp_Latn", "zho_Hans") == "塞尔维亚语（拉丁文）"
    assert d("aeb_Arab", "zho_Hans") == "突尼斯阿拉伯语"
    # No Chinese name anywhere: the English name, set off by spaces, never a coined transliteration.
    zh_frame = next(t for t in T.TRANSLATION if t.id == "zh-a07")
    assert zh_frame.render(**T.frame_names("eng_Latn", "acu_Latn", "zho_Hans"), text="x").startswith("帮我把这段英语翻译成 Achuar-Shiwiar，谢谢。")
    assert [languages.variant_name("eng_Latn", "IN"), languages.variant_name("gsw_Latn", "ZH", "zho_Hans")] == ["Indian English", "苏黎世德语"]


@pytest.mark.parametrize("code,region", VARIANTS)
def test_regional_variants_are_named_without_a_region_in_parentheses(code, region):
    for lang, phrasings in REVISIONS["regional_variant"].items():
        name = languages.variant_name(code, region, lang)
        assert "(" not in name and "（" not in name, name
        for p in phrasings:
            assert name in T.fill(p, lang, variant=name)


def test_every_revision_phrasing_fills_every_placeholder():
    for kind, by_lang in REVISIONS.items():
        for lang, phrasings in by_lang.items():
            for p in phrasings:
                text = T.fill(p, lang, lang=languages.display_name("acu_Latn", lang), variant="Indian English", words='"open"', term="St Martin")
                assert "{" not in text and "}" not in text, (kind, text)


@pytest.mark.parametrize("code", ["acu_Latn", "aar_Latn", "zlm_Arab", "ukr_Cyrl", "ajg_Latn", "ame_Latn", "swh_Latn"])
def test_a_framed_translation_is_taken_apart_and_reframed_whatever_its_names(code):
    """Repeats for upsampling re-frame a record (construct/rerender.py): the source must come back
    out of frames with articles, spaced Latin names and script names."""
    text = "Mae rhai ACau yn poeni."
    for t in T.TRANSLATION:
        for src, tgt in ((code, "eng_Latn"), ("zho_Hans", code)):
            user = t.render(**T.frame_names(src, tgt, t.lang), text=text)
            row = {"id": "x", "task": "translation", "src_lang": src, "tgt_lang": tgt,
                   "messages": [{"role": "user", "content": user}, {"role": "assistant", "content": "y"}],
                   "meta": json.dumps({"template": t.id, "instruction_lang": t.lang, "unit": t.unit})}
            assert source_text(row, t, t.lang) == text, user
            again = rerender(row, 1, 7)
            new = next(x for x in T.TRANSLATION if x.id == json.loads(again["meta"])["template"])
            assert again["messages"][0]["content"] == new.render(**T.frame_names(src, tgt, new.lang), text=text)


def test_the_cross_lingual_extractive_frame_does_not_promise_a_phrase_from_the_passage():
    # The answer is the pivot's span, in another language than the passage: it is not "taken from" it.
    for t in T.QA_EXTRACTIVE:
        assert "taken from" not in t.text and "摘自" not in t.text
