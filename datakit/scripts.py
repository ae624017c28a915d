"""Which writing system a text is in (ISO 15924), from the Unicode Script property.

A language tag often leaves the script out (`mey`, `shi`), and CLDR's likely script is not always
the one a corpus uses (NTREX writes Hassaniya and Tachelhit in Arabic script, CLDR guesses Latin
and Tifinagh). Counting letters per script settles it from the text itself.
"""

from __future__ import annotations

import collections
import functools

import regex

# Unicode script names (as the `regex` module knows them) -> ISO 15924 codes.
_SCRIPTS = {
    "Latin": "Latn", "Cyrillic": "Cyrl", "Arabic": "Arab", "Hebrew": "Hebr", "Greek": "Grek",
    "Armenian": "Armn", "Georgian": "Geor", "Devanagari": "Deva", "Bengali": "Beng",
    "Gurmukhi": "Guru", "Gujarati": "Gujr", "Oriya": "Orya", "Tamil": "Taml", "Telugu": "Telu",
    "Kannada": "Knda", "Malayalam": "Mlym", "Sinhala": "Sinh", "Thai": "Thai", "Lao": "Laoo",
    "Tibetan": "Tibt", "Myanmar": "Mymr", "Khmer": "Khmr", "Ethiopic": "Ethi", "Hangul": "Hang",
    "Hiragana": "Hira", "Katakana": "Kana", "Han": "Hani", "Thaana": "Thaa", "Tifinagh": "Tfng",
    "Syriac": "Syrc", "Cherokee": "Cher", "Canadian_Aboriginal": "Cans", "Mongolian": "Mong",
    "Nko": "Nkoo", "Vai": "Vaii", "Ol_Chiki": "Olck", "Coptic": "Copt", "Javanese": "Java",
    "Balinese": "Bali", "Sundanese": "Sund", "Buginese": "Bugi", "Tai_Le": "Tale",
    "New_Tai_Lue": "Talu", "Tai_Tham": "Lana", "Tai_Viet": "Tavt", "Bopomofo": "Bopo",
    "Yi": "Yiii", "Adlam": "Adlm", "Bamum": "Bamu", "Osage": "Osge", "Samaritan": "Samr",
    "Meetei_Mayek": "Mtei", "Lepcha": "Lepc", "Limbu": "Limb", "Chakma": "Cakm",
}
_PATTERNS = [(iso, regex.compile(f"\\p{{Script={name}}}")) for name, iso in _SCRIPTS.items()]
_SCRIPT_OF: dict[str, str | None] = {}


def _script_of(char: str) -> str | None:
    """The ISO 15924 script of one character (None for Common/Inherited), looked up once per character."""
    try:
        return _SCRIPT_OF[char]
    except KeyError:
        found = next((iso for iso, pattern in _PATTERNS if pattern.match(char)), None)
        _SCRIPT_OF[char] = found
        return found


_NOT_LETTER = regex.compile(r"[^\p{L}\p{M}]+")
_KNOWN: set[str] = set()
_TO_TAG: dict[int, str | None] = {}   # code point -> its script's tag (None: no script; translate drops it)
_TAG_OF: dict[str, str] = {}          # script -> tag (a private-use character)


class _TagNames(dict):
    def __missing__(self, tag: str) -> str:
        script = self[tag] = next(script for script, t in _TAG_OF.items() if t == tag)  # looked up once per tag
        return script


_SCRIPT_OF_TAG = _TagNames()


@functools.lru_cache(maxsize=16384)
def script_counts(text: str) -> collections.Counter[str]:
    """Letters per ISO 15924 script (Common and Inherited characters are not counted). Callers must
    not change the result: it is cached, since several stages look at the same text.

    Non-letters go in one C pass; plain ASCII letters are all Latin; otherwise each distinct
    character is looked up once (Counter counts them in C).
    """
    letters = _NOT_LETTER.sub("", text)
    if letters.isascii():
        return collections.Counter({"Latn": len(letters)} if letters else {})
    # Each letter becomes its script's one-character tag (str.translate, in C), then tags are counted.
    for char in set(letters) - _KNOWN:
        _KNOWN.add(char)
        script = _script_of(char)
        _TO_TAG[ord(char)] = _TAG_OF.setdefault(script, chr(0xE000 + len(_TAG_OF))) if script else None
    counts: collections.Counter[str] = collections.Counter()
    for tag, n in collections.Counter(letters.translate(_TO_TAG)).items():
        counts[_SCRIPT_OF_TAG[tag]] += n
    # Japanese mixes Han with kana; Korean may mix Han with Hangul.
    if counts["Hira"] or counts["Kana"]:
        counts["Jpan"] = counts.pop("Hira", 0) + counts.pop("Kana", 0) + counts.pop("Hani", 0)
    return counts


def dominant_script(text: str) -> str | None:
    """The script most letters of `text` are in, or None when it has no letters."""
    counts = script_counts(text)
    if not counts:
        return None
    return max(sorted(counts), key=lambda s: counts[s])


def scripts_agree(declared: str, detected: str | None) -> bool:
    """Whether a declared script (from a language code) fits a detected one.

    Han text cannot be told Simplified from Traditional by script alone, and Japanese and Korean
    codes name composite scripts.
    """
    if detected is None or declared == detected:
        return True
    composite = {"Hans": {"Hani"}, "Hant": {"Hani"}, "Jpan": {"Jpan", "Hani"}, "Kore": {"Hang", "Hani"}, "Hang": {"Hani"}}
    return detected in composite.get(declared, set())


# Scripts written without spaces between words: text in them is cut into characters, not words.
UNSPACED = frozenset({"Hani", "Hans", "Hant", "Jpan", "Thai", "Khmr", "Laoo", "Mymr", "Tibt", "Yiii"})


def mostly_unspaced(text: str, share: float = 0.3) -> bool:
    """Whether enough of the text's letters are in unspaced scripts that words cannot be split on
    spaces (a Chinese question naming Python and JavaScript still counts: each Han letter is a word)."""
    if text.isascii():  # ASCII letters are all Latin: no need to count (most of an English corpus)
        return False
    counts = script_counts(text)
    total = sum(counts.values())
    return bool(total) and sum(n for s, n in counts.items() if s in UNSPACED) >= share * total
