import pytest

from datakit import languages
from datakit.errors import UnknownLanguageError


@pytest.mark.parametrize(
    ("tag", "code", "region"),
    [
        ("sw", "swh_Latn", None), ("swa", "swh_Latn", None), ("swh", "swh_Latn", None), ("swh_Latn", "swh_Latn", None),
        ("ar", "arb_Arab", None), ("ara", "arb_Arab", None), ("msa", "zsm_Latn", None), ("fas", "pes_Arab", None),
        ("prs", "prs_Arab", None), ("est", "ekk_Latn", None), ("orm", "gaz_Latn", None), ("uzb", "uzn_Latn", None),
        ("cmn", "zho_Hans", None), ("zh", "zho_Hans", None), ("zho-CN", "zho_Hans", "CN"), ("zho-TW", "zho_Hant", "TW"),
        ("zh-Hant", "zho_Hant", None), ("aze-Latn", "azj_Latn", None), ("srp-Latn", "srp_Latn", None),
        ("srp-Cyrl", "srp_Cyrl", None), ("eng-GB", "eng_Latn", "GB"), ("por-BR", "por_Latn", "BR"), ("yue", "yue_Hant", None),
    ],
)
def test_every_spelling_folds_onto_one_code(tag, code, region):
    lang = languages.normalize(tag)
    assert (lang.code, lang.region) == (code, region)


@pytest.mark.parametrize("tag", ["qqq", "xx", "und", "", "e1", "en-Toolong"])
def test_unknown_codes_are_errors_that_name_the_code(tag):
    with pytest.raises(UnknownLanguageError) as e:
        languages.normalize(tag)
    assert repr(tag) in str(e.value)


def test_flores_codes_pass_through_unchanged():
    for code in sorted(languages.flores200()):
        assert languages.code(code) == code


def test_names_come_from_cldr_in_the_instruction_language():
    assert languages.display_name("swh_Latn", "zho_Hans") == "斯瓦希里语"
    assert languages.display_name("swh_Latn", "eng_Latn") == "Swahili"
    assert languages.display_name("prs_Arab", "eng_Latn") == "Dari"
    # Serbian is Cyrillic by default: the Latin variant says so, and that it is a script.
    assert languages.display_name("srp_Latn", "eng_Latn") == "Serbian (Latin script)"
    # No Chinese name in language data: our table's established one, else the English name, never the bare code.
    assert languages.display_name("pov_Latn", "zho_Hans") == "上几内亚克里奥尔语"
    assert languages.display_name("acu_Latn", "zho_Hans") == "Achuar-Shiwiar"
    # No ISO qualifier, no script where it is the language's own: "Malay", "Korean", "Pashto".
    assert [languages.display_name(c) for c in ("zlm_Latn", "kor_Hang", "pbt_Arab")] == ["Malay", "Korean", "Pashto"]


def test_names_table_is_well_formed_and_its_codes_are_the_registrys():
    for key, (en, zh) in languages._names().items():
        base = key.split("-")[0]
        assert languages.code(base) == base if "_" in base else languages.code(base).startswith(base + "_"), key
        assert en or zh, key


def test_langs_selection_takes_groups_and_codes_and_always_the_hubs():
    sel = languages.resolve_langs("sw,african")
    assert {"swh_Latn", "yor_Latn", "eng_Latn", "zho_Hans"} <= sel
    assert languages.resolve_langs("all") is None
    with pytest.raises(UnknownLanguageError, match="groups"):
        languages.resolve_langs("nonsense-group")
