"""Quality heuristics: what a record teaches must be worth teaching.

General answers: repetition (duplicated lines, paragraphs, n-grams), mojibake (ftfy), unbalanced
code fences, refusal boilerplate in English and Chinese, URL spam. Translations: the length ratio
of the two sides (letters of Han, kana and Hangul weigh more: one carries a word or a syllable),
untranslated copies, and numbers kept (scored always; rejected for the tasks the recipe names,
since human translators legitimately write numbers as words). Personal data (e-mail addresses,
phone numbers) in general answers is redacted or rejected, as the recipe says (`pii`). Records
whose answer renders a source in the prompt (translations, QA spans) follow `pii_translations` on
every turn, prompt and answer alike, and by default keep their text: it is public text (news, the
UDHR), and an answer redacted against an unredacted source teaches a model to turn numbers into
placeholders when it translates. Every measured value goes into `scores.quality`, so a rejection
can be explained and a threshold tuned.
"""

from __future__ import annotations

import functools
import unicodedata
from collections import Counter

import ftfy
import regex
from ftfy.badness import is_bad

from datakit.recipe import Quality as QualityConfig
from datakit.record_stages.base import RecordStage
from datakit.records import Record, declared_content
from datakit.scripts import mostly_unspaced, script_counts
from datakit.stats import StageStats
from datakit.text import dedup_text

REFUSALS = regex.compile(
    r"\bas an ai(?: language)? model\b|\bas an artificial intelligence\b|\bi(?:'m| am) (?:just )?an ai\b"
    r"|\bi(?:'m| am) sorry,? but i (?:can(?:'|no)t|am (?:not able|unable))\b|\bi cannot (?:fulfil|fulfill|comply|assist with)"
    r"|作为一个?(?:人工智能|AI|ai)(?:语言)?(?:模型|助手)|我是一个?(?:人工智能|AI)(?:语言)?模型|(?:抱歉|对不起)[，,]?\s*我(?:无法|不能)(?:提供|回答|满足|完成)",
    regex.I,
)
EMAIL = regex.compile(r"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[A-Za-z]{2,}\b")
PHONE = regex.compile(r"(?<![\w+])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{2,4}\)[\s.-]?)?\d{2,4}(?:[\s.-]\d{2,4}){2,4}(?![\w])")
URL = regex.compile(r"https?://\S+|www\.\S+")
NUMBER = regex.compile(r"\d+(?:[.,\u00a0\u202f ]\d{3})*(?:[.,]\d+)?")
DENSE = {"Hani": 3.0, "Jpan": 3.0, "Hang": 2.0, "Yiii": 3.0}


# The measures of one text are cached: a translation's two texts come back as the other side of
# the reverse direction, as the other hub's source and in the interactive record (four to six times).
@functools.lru_cache(maxsize=16384)
def weighted_length(text: str) -> float:
    return sum(n * DENSE.get(s, 1.0) for s, n in script_counts(text).items())


def duplicated_fraction(items: list[str]) -> float:
    """Share of items (lines, paragraphs) that repeat an earlier one."""
    items = [i.strip() for i in items if i.strip()]
    return (len(items) - len(set(items))) / len(items) if len(items) >= 3 else 0.0


def ngram_repetition(text: str) -> float:
    """Share of the text's tokens covered by word 5-grams (character 10-grams in unspaced scripts)
    that occur more than once: high for text that loops."""
    unspaced = mostly_unspaced(text)
    n = 10 if unspaced else 5
    words = text.split()
    tokens: str | list[str] = "".join(words) if unspaced else words  # characters of an unspaced text
    if len(tokens) < 20 * n:
        return 0.0  # a short answer may say a phrase twice; looping shows over a longer text
    # n-grams as strings (characters) or tuples zipped in C; coverage as a running end, since the
    # repeated grams come in order: the tokens a gram adds are those past the previous one's end.
    grams = [tokens[i : i + n] for i in range(len(tokens) - n + 1)] if unspaced else list(zip(*(tokens[k:] for k in range(n)), strict=False))
    seen = Counter(grams)
    covered = end = 0
    for i, g in enumerate(grams):
        if seen[g] > 1:
            covered += i + n - max(i, end)
            end = i + n
    return covered / len(tokens)


_SEPARATORS = regex.compile(r"[.,\u00a0\u202f ]")


@functools.lru_cache(maxsize=16384)
def numbers(text: str) -> frozenset[str]:
    """Numbers written with digits (any script's digits), separators dropped: 7,000 and 7 000 match."""
    out = set()
    for m in NUMBER.findall(text):  # \d matches every script's decimal digits
        if not m.isascii():
            m = "".join(str(unicodedata.digit(c)) if c.isdigit() else c for c in m)
        out.add(_SEPARATORS.sub("", m).lstrip("0") or "0")
    return frozenset(out)


# Tasks whose answer renders text the prompt gives (a translation, a span of a passage): redacting
# the answer alone would teach the model to turn numbers into placeholders when it translates.
SOURCE_BOUND_TASKS = frozenset({"translation", "interactive_translation", "cross_lingual_qa"})


def source_bound(record: Record) -> bool:
    """Whether a record's answer renders a source given in its prompt (translation-shaped records
    carry `src_lang`; QA answers are spans or numbers of the passage or problem)."""
    return record.get("src_lang") is not None or record["task"] in SOURCE_BOUND_TASKS


def redact(messages: list[dict]) -> int:
    """E-mail addresses and phone numbers in these messages replaced by [EMAIL] and [PHONE]; how many."""
    found = 0
    for m in messages:
        m["content"], n1 = EMAIL.subn("[EMAIL]", m["content"])
        m["content"], n2 = PHONE.subn("[PHONE]", m["content"])
        found += n1 + n2
    return found


_LINE_START_A = regex.compile(r"^[ÃÂ] ", regex.M)  # the anchored part of ftfy's badness pattern


@functools.lru_cache(maxsize=16384)
def mojibake(text: str) -> bool:
    """Whether a line of the text decodes back as mojibake (UTF-8 read as Latin-1 and the like).

    Only text ftfy can decode back counts (its `badness` heuristic alone flags legitimate quotes
    next to accented letters), and line by line: over a whole document ftfy also takes a capital
    Ã before a space for a mangled "à", which an Ewe heading in capitals ("TAKPEKPEGÃ LE
    GBEƑÃ") legitimately has; real mojibake shows within its own line.

    ftfy leaves a line as it is when it is ASCII or its badness pattern does not match it. That
    pattern matches within a line only where it matches the whole text, but for its one anchored
    part (Ã or Â, then a space, at the start), asked here at every line's start: a text neither
    finds has no line ftfy would change, and no line is asked (most texts: the calls per line
    were half the stage). Cached, as a reference is the answer of several records."""
    if text.isascii() or not (is_bad(text) or _LINE_START_A.search(text)):
        return False
    return any(ftfy.fix_encoding(line) != line for line in text.split("\n"))


class Quality(RecordStage):
    name = "quality"

    def __init__(self, config: QualityConfig):
        self.config = config

    def apply(self, record: Record, stats: StageStats) -> str | None:
        scores: dict = {}
        reason = self.check(record, scores)
        if scores:
            record["scores"]["quality"] = scores
        return reason

    def check(self, record: Record, scores: dict) -> str | None:
        c = self.config
        answers = [m for m in record["messages"] if m["role"] == "assistant"]
        policy, turns = (c.pii_translations, record["messages"]) if source_bound(record) else (c.pii, answers)
        if policy != "keep":
            found = redact(turns) if policy == "redact" else sum(len(EMAIL.findall(m["content"])) + len(PHONE.findall(m["content"])) for m in turns)
            if found:
                scores["pii"] = found
                if policy == "reject":
                    return "pii"
        if record["task"] in ("translation", "interactive_translation", "synthesised") and declared_content(record):
            reason = self.bitext(record, scores)
            if reason:
                return reason
        text = "\n".join(m["content"] for m in answers)
        if mojibake(text):
            scores["mojibake"] = True
            return "mojibake"
        if text.count("```") % 2:
            return "unbalanced_code_fence"
        if record["task"] in ("general", "synthesised") and REFUSALS.search(text):
            return "refusal"
        urls = URL.findall(text)
        if urls and (len(urls) > c.max_urls or sum(map(len, urls)) / max(1, len(text)) > c.max_url_share):
            scores["urls"] = len(urls)
            return "url_spam"
        if record["task"] not in ("general", "synthesised"):
            return None  # repetition is a failure of generated text; references repeat on purpose
        lines = duplicated_fraction(text.split("\n"))
        paras = duplicated_fraction(text.split("\n\n"))
        grams = ngram_repetition(text)
        if lines or paras or grams:
            scores["repetition"] = [round(lines, 3), round(paras, 3), round(grams, 3)]
        if lines > c.max_dup_lines or paras > c.max_dup_paragraphs or grams > c.max_dup_ngrams:
            return "repetitive"
        return None

    def bitext(self, record: Record, scores: dict) -> str | None:
        c = self.config
        src, tgt = declared_content(record)[:2]
        ls, lt = weighted_length(src), weighted_length(tgt)
        if min(ls, lt) > 0 and max(ls, lt) >= c.ratio_min_length:
            ratio = lt / ls
            scores["length_ratio"] = round(ratio, 3)
            if not (c.min_length_ratio <= ratio <= c.max_length_ratio):
                return "length_ratio"
        if record.get("src_lang") != record.get("tgt_lang") and len(src) >= c.untranslated_min_chars and dedup_text(src) == dedup_text(tgt):
            return "untranslated"
        wanted = numbers(src)
        if wanted:
            kept = len(wanted & numbers(tgt)) / len(wanted)
            scores["numbers_kept"] = round(kept, 3)
            if kept < 1 and record["task"] in c.numbers_reject_tasks:
                return "numbers_mismatch"
        return None
