"""The two text forms every step agrees on: the text a record keeps, and the text it is compared by.

`normalise_text` is what a record's turns become (construction renders templates through it, the
normalise stage applies it to every turn). `dedup_text` is the form in which texts are compared,
never stored: exact dedup keys it, near dedup shingles it, decontamination and the quality rules
scan it. Both are cached, since the same text is seen by several steps.
"""

from __future__ import annotations

import functools
import unicodedata

import regex

# C0/C1 controls except TAB and LF, the BOM and the line/paragraph separators.
_CONTROLS = regex.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufeff\u2028\u2029]")
_TRAILING_SPACE = regex.compile(r"[ \t]+\n")
_MANY_BLANK_LINES = regex.compile(r"\n{3,}")


@functools.lru_cache(maxsize=16384)
def normalise_text(text: str, form: str) -> str:
    """One Unicode form (`form`: NFC, NFKC or none), LF line ends, no control characters, no
    trailing spaces or runs of blank lines."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROLS.sub("", text)
    if form != "none":
        text = unicodedata.normalize(form, text)
    text = _TRAILING_SPACE.sub("\n", text)
    text = _MANY_BLANK_LINES.sub("\n\n", text)
    return text.strip()


_PUNCT_SYMBOLS = regex.compile(r"[\p{P}\p{S}]+")
_SPACES = regex.compile(r"\s+")


@functools.lru_cache(maxsize=16384)
def dedup_text(text: str) -> str:
    """Text as duplicates are compared: NFKC, case-folded, punctuation and symbols out, spaces collapsed.
    Cached: the same text is keyed by exact dedup, shingled by near dedup and scanned for contamination."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = _PUNCT_SYMBOLS.sub(" ", text)
    if "\x1c" in text or "\x1d" in text or "\x1e" in text or "\x1f" in text:
        return _SPACES.sub(" ", text).strip()
    # str.split's white space is regex's \s plus U+001C-U+001F (checked on every code point), and
    # 6x faster: the regex is kept for the texts that hold one of those four.
    return " ".join(text.split())
