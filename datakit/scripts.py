"""Which writing system a text is in (ISO 15924), from the Unicode Script property.

A language tag often leaves the script out (`mey`, `shi`), and CLDR's likely script is not always
the one a corpus uses (NTREX writes Hassaniya and Tachelhit in Arabic script, CLDR guesses Latin
and Tifinagh). Counting letters per script settles it from the text itself.
"""

from __future__ import annotations

import collections
import functools
from collections.abc import Sequence

import numpy as np
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


_LETTER = regex.compile(r"[\p{L}\p{M}]")
_TAG_OF: dict[str, str] = {}          # script -> tag (a private-use character)


class _Tags(dict):
    """Code point -> its script's one-character tag, or None for what is not counted (non-letters,
    Common and Inherited letters): a `str.translate` table filled the first time a character is seen."""

    def __missing__(self, cp: int) -> str | None:
        char = chr(cp)
        script = _script_of(char) if _LETTER.match(char) else None
        tag = self[cp] = _TAG_OF.setdefault(script, chr(0xE000 + len(_TAG_OF))) if script else None
        return tag


_TO_TAG = _Tags()


class _TagNames(dict):
    def __missing__(self, tag: str) -> str:
        script = self[tag] = next(script for script, t in _TAG_OF.items() if t == tag)  # looked up once per tag
        return script


_SCRIPT_OF_TAG = _TagNames()
_ASCII_LETTERS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


@functools.lru_cache(maxsize=16384)
def script_counts(text: str) -> collections.Counter[str]:
    """Letters per ISO 15924 script (Common and Inherited characters are not counted). Callers must
    not change the result: it is cached, since several stages look at the same text.

    Plain ASCII text has only Latin letters (counted in one C pass); otherwise each character becomes
    its script's one-character tag (`str.translate`, in C; a character's script is looked up once
    ever), and each tag is counted in C, in the order tags first occur.
    """
    if text.isascii():
        n = len(text) - len(text.encode("ascii").translate(None, _ASCII_LETTERS))
        return collections.Counter({"Latn": n} if n else {})
    tags = text.translate(_TO_TAG)
    counts: collections.Counter[str] = collections.Counter()
    for tag in dict.fromkeys(tags):
        counts[_SCRIPT_OF_TAG[tag]] = tags.count(tag)
    # Japanese mixes Han with kana; Korean may mix Han with Hangul.
    if counts["Hira"] or counts["Kana"]:
        counts["Jpan"] = counts.pop("Hira", 0) + counts.pop("Kana", 0) + counts.pop("Hani", 0)
    return counts


_UNSEEN, _NOT_COUNTED = 255, 254
_IDS = np.full(0x110000, _UNSEEN, dtype=np.uint8)  # code point -> its script's column (filled as characters are seen)
_COLUMNS: list[str] = ["Jpan", "Hira", "Kana", "Hani"]  # column -> script; the Japanese ones first, for the merge


def _column(cp: int) -> int:
    char = chr(cp)
    script = _script_of(char) if _LETTER.match(char) else None
    if script is None:
        return _NOT_COUNTED
    if script not in _COLUMNS:
        _COLUMNS.append(script)
    return _COLUMNS.index(script)


def script_count_matrix(texts: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Letters per script of many texts at once ([text, script] counts, and the scripts of the columns):
    the counts `script_counts` gives each text, from one vectorised pass over the whole batch instead of
    a pass per text (the language-ID stage reads the scripts of thousands of texts per batch)."""
    lengths = np.fromiter(map(len, texts), dtype=np.intp, count=len(texts))
    cp = np.frombuffer("".join(texts).encode("utf-32-le", "surrogatepass"), dtype=np.uint32)  # a lone surrogate: no letter
    ids = _IDS[cp]
    unseen = ids == _UNSEEN
    if unseen.any():
        for c in np.unique(cp[unseen]).tolist():
            _IDS[c] = _column(c)
        ids = _IDS[cp]
    width = len(_COLUMNS)
    counts = np.zeros((len(texts), width), dtype=np.intp)
    # Per script the batch has (a few), its letters summed text by text in one pass (reduceat over where
    # each text starts; an empty text has no letters and no start of its own).
    present = np.flatnonzero(np.bincount(ids, minlength=width + 1)[:width]).tolist()
    if present:
        nonempty = lengths > 0
        starts = (np.cumsum(lengths) - lengths)[nonempty]
        for column in present:
            counts[nonempty, column] = np.add.reduceat(ids == column, starts, dtype=np.intp)
    japanese = (counts[:, 1] + counts[:, 2]) > 0  # Japanese mixes Han with kana (see script_counts)
    counts[japanese, 0] = counts[japanese, 1:4].sum(1)
    counts[japanese, 1:4] = 0
    return counts, list(_COLUMNS)


def dominant_scripts(counts: np.ndarray, columns: list[str]) -> list[str | None]:
    """`dominant_script` of each row of a script_count_matrix: the script with most letters (ties: the
    first by name), None for a text without letters."""
    by_name = sorted(range(len(columns)), key=columns.__getitem__)
    ordered = counts[:, by_name]
    best, most = ordered.argmax(1).tolist(), ordered.max(1).tolist()
    return [columns[by_name[b]] if m else None for b, m in zip(best, most, strict=True)]


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
