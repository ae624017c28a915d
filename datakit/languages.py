"""The language registry: one code per language, whatever a source wrote.

Sources spell languages every way there is (`sw`, `swa`, `swh`, `sw-KE`, `zho-TW`, `aze-Latn`,
`cmn_Hans`). Every code that enters datakit goes through `normalize` once, at the edge, and comes
out as the contract's code: the FLORES-200 code where the language is in FLORES-200, else
ISO 639-3 + ISO 15924 script. Macrolanguage and variant codes are folded by a small alias table we
keep as data (`langdata/aliases.tsv`); langcodes (CLDR) does the parsing, two-letter codes and
likely scripts; a region (`eng-GB`, `por-BR`) is kept beside the code as a regional variant, never
as a language of its own.
"""

from __future__ import annotations

import functools
import unicodedata
from dataclasses import dataclass
from importlib import resources

import langcodes
import regex
import yaml

from datakit.errors import UnknownLanguageError

HUBS = ("eng_Latn", "zho_Hans")


@dataclass(frozen=True)
class Lang:
    """A normalised language: `code` is the contract's code, `region` a regional variant (or None)."""

    code: str
    region: str | None = None

    @property
    def iso(self) -> str:
        return self.code.split("_")[0]

    @property
    def script(self) -> str:
        return self.code.split("_")[1]


def _data(name: str) -> str:
    return resources.files("datakit.langdata").joinpath(name).read_text(encoding="utf-8")


@functools.cache
def flores200() -> frozenset[str]:
    return frozenset(line.strip() for line in _data("flores200.txt").splitlines() if line and not line.startswith("#"))


@functools.cache
def _flores_scripts() -> dict[str, tuple[str, ...]]:
    by_lang: dict[str, list[str]] = {}
    for code in sorted(flores200()):
        iso, script = code.split("_")
        by_lang.setdefault(iso, []).append(script)
    return {k: tuple(v) for k, v in by_lang.items()}


@functools.cache
def aliases() -> dict[str, str]:
    table = {}
    for line in _data("aliases.tsv").splitlines():
        if line.strip() and not line.startswith("#"):
            alias, code = line.split("\t")[:2]
            table[alias] = code
    return table


def _split_tag(tag: str) -> tuple[str, str | None, str | None]:
    """Split `xx`, `xxx_Scrp`, `xxx-Scrp-RG`, `zho-TW` into (language, script, region)."""
    parts = [p for p in tag.strip().replace("_", "-").split("-") if p]
    if not parts:
        raise UnknownLanguageError(tag, "empty language code")
    lang, script, region = parts[0].lower(), None, None
    for p in parts[1:]:
        if len(p) == 4 and p.isalpha() and script is None:
            script = p.title()
        elif (len(p) == 2 and p.isalpha()) or (len(p) == 3 and p.isdigit()):
            region = p.upper()
        else:
            raise UnknownLanguageError(tag, f"cannot read subtag {p!r}")
    return lang, script, region


def _iso639_3(lang: str, tag: str) -> tuple[str, str | None]:
    """ISO 639-3 code of a language subtag, and the script a deprecated code implies (`sh` -> Latn)."""
    if not lang.isalpha() or len(lang) not in (2, 3):
        raise UnknownLanguageError(tag, "not an ISO 639 language code")
    if lang in aliases() or lang in _flores_scripts():
        return lang, None
    try:
        parsed = langcodes.Language.get(lang)
        alpha3 = parsed.to_alpha3()
    except (LookupError, ValueError) as e:
        raise UnknownLanguageError(tag, "no such ISO 639 language") from e
    if parsed.display_name().startswith("Unknown language") or alpha3 in ("und", "mul", "zxx", "mis"):
        raise UnknownLanguageError(tag, "no such ISO 639 language")
    return alpha3, parsed.script


def _likely_script(iso: str, region: str | None) -> str | None:
    try:
        maximized = langcodes.Language.get(f"{iso}-{region}" if region else iso).maximize()
    except (LookupError, ValueError):
        return None
    return maximized.script


@functools.lru_cache(maxsize=4096)
def normalize(tag: str) -> Lang:
    """Normalise any language tag to the contract's code; raises UnknownLanguageError."""
    lang, script, region = _split_tag(tag)
    iso, implied_script = _iso639_3(lang, tag)
    iso = aliases().get(iso, iso)
    script = script or implied_script
    if script is None:
        candidates = _flores_scripts().get(iso, ())
        likely = _likely_script(iso, region)
        if len(candidates) == 1:
            script = candidates[0]
        elif candidates:
            script = likely if likely in candidates else candidates[0]
        else:
            script = likely
    if script is None:
        raise UnknownLanguageError(tag, "no script known for it; write it as xxx_Scrp")
    return Lang(f"{iso}_{script}", region)


def code(tag: str) -> str:
    """The contract's code for `tag` (the regional variant dropped)."""
    return normalize(tag).code


@functools.cache
def _groups() -> dict[str, tuple[str, ...]]:
    raw = yaml.safe_load(_data("groups.yaml"))
    groups = {name: tuple(dict.fromkeys(code(c) for c in codes)) for name, codes in raw.items()}
    groups["flores200"] = tuple(sorted(flores200()))
    return groups


def group_names() -> list[str]:
    return sorted(_groups())


def resolve_langs(spec: str) -> frozenset[str] | None:
    """`all` -> None (no restriction); else a comma list of codes and group names -> codes.

    The hubs are always included: every record ties to them.
    """
    spec = spec.strip()
    if spec in ("", "all"):
        return None
    selected: set[str] = set(HUBS)
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        if item in _groups():
            selected.update(_groups()[item])
        else:
            try:
                selected.add(code(item))
            except UnknownLanguageError as e:
                raise UnknownLanguageError(
                    item, f"{e.reason}; --langs takes 'all', codes or one of the groups {', '.join(group_names())}"
                ) from None
    return frozenset(selected)


@functools.cache
def _names() -> dict[str, tuple[str | None, str | None]]:
    """langdata/names.tsv: key -> (English name, Chinese name), None where CLDR's name stands."""
    table = {}
    for n, line in enumerate(_data("names.tsv").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        cols = line.split("\t")
        if len(cols) != 4:
            raise ValueError(f"datakit/langdata/names.tsv line {n}: expected 4 tab-separated columns, found {len(cols)}")
        key, en, zh, _basis = cols
        table[key] = (None if en == "-" else en, None if zh == "-" else zh)
    return table


def _is_chinese(in_lang: str) -> bool:
    return in_lang.split("_")[0] in ("zho", "cmn", "zh")


def _locale(in_lang: str):
    """The Babel locale that names languages in `in_lang` (None where CLDR has none)."""
    from babel import Locale, UnknownLocaleError

    try:
        return Locale.parse(_babel_keys(in_lang)[2])
    except (UnknownLocaleError, ValueError):
        return None


@functools.cache
def _babel_keys(c: str) -> tuple[str, ...]:
    # CLDR names languages by their shortest tag (`sw`, not `swh`; Dari is `fa_AF`): try the
    # code itself, then the macrolanguage it was folded from.
    iso, script = c.split("_")
    parsed = [langcodes.Language.get(x) for x in (iso, *(a for a, t in aliases().items() if t == iso))]
    short = next((p.language for p in parsed if p.language and len(p.language) == 2), parsed[0].language or iso)
    full = str(parsed[0]).replace("-", "_")
    return (f"{short}_{script}", full, short, f"{iso}_{script}", iso)


_ISO_QUALIFIER = regex.compile(r"\s*\((?:individual language|macrolanguage)\)")


def default_script(iso: str) -> str | None:
    """The script a language is written in unless a code says otherwise: its one FLORES-200 script,
    else the likely script CLDR gives it (Korean's `Kore` counts as Hangul); None where neither knows."""
    scripts = _flores_scripts().get(iso, ())
    if len(scripts) == 1:
        return scripts[0]
    likely = _likely_script(iso, None)
    if likely is None:
        folded = [a for a, t in aliases().items() if t == iso]
        likely = _likely_script(folded[0], None) if folded else None
    return {"Kore": "Hang"}.get(likely, likely) if likely else None


def _cldr_name(code_: str, locale) -> tuple[str | None, bool]:
    """CLDR's name of a language in a locale, and whether that name already says the script."""
    for k in _babel_keys(code_):
        if k in locale.languages:
            return locale.languages[k], "_" in k
    return None, False


def _table_name(code_: str, column: int) -> tuple[str, bool] | None:
    """Our table's name (column 0 English, 1 Chinese) for the code or, script aside, its language."""
    for key, says_script in ((code_, True), (code_.split("_")[0], False)):
        entry = _names().get(key)
        if entry and entry[column]:
            return entry[column], says_script
    return None


def _base_name(code_: str, in_lang: str) -> tuple[str, bool]:
    """A language's name in `in_lang` (English where neither our table nor CLDR has one there), and
    whether it names the script. Our table (langdata/names.tsv) comes before CLDR."""
    from babel import Locale

    found = _table_name(code_, 1) if _is_chinese(in_lang) else None
    if found:
        return found
    locale = _locale(in_lang)
    if locale is not None and locale.language != "en":
        name, says_script = _cldr_name(code_, locale)
        if name:
            return name, says_script
    found = _table_name(code_, 0)
    if found:
        return found
    name, says_script = _cldr_name(code_, Locale.parse("en"))
    if name:
        return name, says_script
    name = langcodes.Language.get(code_.split("_")[0]).display_name()
    return (code_, True) if name.startswith("Unknown language") else (_ISO_QUALIFIER.sub("", name), False)


_PARENTHETICAL = regex.compile(r" \(([^()]+)\)$")


def _chinese_parenthetical(name: str) -> str:
    """An English name kept in a Chinese frame tells its place the Chinese way: "Aja（贝宁）"."""
    from babel import Locale

    def chinese(m: regex.Match) -> str:
        en = Locale.parse("en").territories
        region = next((k for k, v in en.items() if v == m[1]), None)
        return f"（{Locale.parse('zh').territories[region] if region else m[1]}）"

    return _PARENTHETICAL.sub(chinese, name)


def script_is_named(code_: str) -> bool:
    """Whether a name must say the script: the code's script is not the language's default (or the
    language is written in several scripts and none is its default)."""
    iso, script = code_.split("_")
    default = default_script(iso)
    if default is not None:
        return script != default
    return len(_flores_scripts().get(iso, ())) > 1


@functools.lru_cache(maxsize=8192)
def display_name(code_: str, in_lang: str = "eng_Latn") -> str:
    """A language's name as a reader of `in_lang` writes it: our table, then CLDR (Babel), else the
    English name (never an ISO qualifier such as "(individual language)"); the script is named
    where it is not the language's default ("Serbian (Latin script)", "爪哇语（爪哇文）")."""
    from babel import Locale

    name, says_script = _base_name(code_, in_lang)
    if _is_chinese(in_lang):
        name = _chinese_parenthetical(name)
    script = code_.split("_")[1]
    if says_script or not script_is_named(code_):
        return name
    locale = _locale(in_lang) or Locale.parse("en")
    if locale.language in ("zh", "ja") and script in locale.scripts:
        return f"{name}（{locale.scripts[script]}）"
    if locale.language != "en" and script in locale.scripts:
        return f"{name} ({locale.scripts[script]})"
    return f"{name} ({Locale.parse('en').scripts.get(script, script)} script)"


@functools.lru_cache(maxsize=1024)
def variant_name(code_: str, region: str, in_lang: str = "eng_Latn") -> str:
    """A regional variant's name ("British English", "巴西葡萄牙语"): our table, CLDR, else the
    language with the region ("English (India)")."""
    from babel import Locale, UnknownLocaleError

    entry = _names().get(f"{code_}-{region}")
    column = 1 if _is_chinese(in_lang) else 0
    if entry and entry[column]:
        return entry[column]
    short = langcodes.Language.get(code_.split("_")[0]).language
    try:
        locale = Locale.parse(langcodes.Language.get(in_lang.split("_")[0]).language)
    except (UnknownLocaleError, ValueError):
        locale = Locale.parse("en")
    name = locale.languages.get(f"{short}_{region}")
    if name:
        return name
    territory = locale.territories.get(region, region)
    return f"{display_name(code_, in_lang)}（{territory}）" if locale.language in ("zh", "ja") else f"{display_name(code_, in_lang)} ({territory})"


# Words that begin with a vowel letter but a consonant sound ("a Ukrainian"), and the reverse ("an N'Ko").
_CONSONANT_SOUND = regex.compile(r"(?:Uk|Uy|Uni|Uru|Usu|Ute|Europ|One)", regex.I)
_VOWEL_SOUND = regex.compile(r"N['’]")


def indefinite_article(name: str) -> str:
    """`a` or `an` before a language name, by its first sound: an English, an Urdu, a Ukrainian."""
    base = unicodedata.normalize("NFD", name.lstrip())
    if _VOWEL_SOUND.match(base):
        return "an"
    if _CONSONANT_SOUND.match(base):
        return "a"
    return "an" if base[:1].upper() in "AEIOU" else "a"
