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
from dataclasses import dataclass
from importlib import resources

import langcodes
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


@functools.lru_cache(maxsize=8192)
def display_name(code_: str, in_lang: str = "eng_Latn") -> str:
    """The CLDR name of a language in another language (Babel); the English name where CLDR has none."""
    from babel import Locale, UnknownLocaleError

    def babel_keys(c: str) -> tuple[str, ...]:
        # CLDR names languages by their shortest tag (`sw`, not `swh`; Dari is `fa_AF`): try the
        # code itself, then the macrolanguage it was folded from.
        iso, script = c.split("_")
        parsed = [langcodes.Language.get(x) for x in (iso, *(a for a, t in aliases().items() if t == iso))]
        short = next((p.language for p in parsed if p.language and len(p.language) == 2), parsed[0].language or iso)
        full = str(parsed[0]).replace("-", "_")
        return (f"{short}_{script}", full, short, f"{iso}_{script}", iso)

    try:
        locale = Locale.parse(babel_keys(in_lang)[2])
    except (UnknownLocaleError, ValueError):
        locale = None
    iso, script = code_.split("_")
    keys = babel_keys(code_)
    for loc in (locale, Locale.parse("en")):
        if loc is None:
            continue
        for k in keys:
            if k in loc.languages:
                name = loc.languages[k]
                if "_" not in k and script != _likely_script(iso, None) and script in loc.scripts:
                    # Serbian in Latin script: say so, the default script is Cyrillic.
                    open_, close = ("（", "）") if loc.language in ("zh", "ja") else (" (", ")")
                    name = f"{name}{open_}{loc.scripts[script]}{close}"
                return name
    name = langcodes.Language.get(iso).display_name()
    return code_ if name.startswith("Unknown language") else name


@functools.lru_cache(maxsize=1024)
def variant_name(code_: str, region: str, in_lang: str = "eng_Latn") -> str:
    """A regional variant's name ("British English", "巴西葡萄牙语"), from CLDR; else "English (India)"."""
    from babel import Locale, UnknownLocaleError

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
