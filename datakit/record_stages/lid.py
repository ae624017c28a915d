"""Language ID per field: the answer in the record's language, each side of a translation in its own.

Which texts are checked, and against which language, is said by the builder that made the record
(`records.lid_checks`: [(field, text, expected code)]); a general record checks its prompt and answer against
`lang`. Code blocks, inline code and URLs are taken out first: they are not prose in any language.

A field is rejected as `script_mismatch` when too little of it is in the expected language's script
(whatever the model), and as `lid_mismatch` when the model, consistent with the text's script,
names another language (outside the expected one's confusable group) with at least the
language's calibrated confidence. Languages the model has no label for keep the script check and
the calibrated check (it still says "this is confidently English"), and are marked `unsupported`.
Short fields get the script check only. Every checked field's prediction goes into `scores.lid`.

Where lid.176 is weak (languages it has no label for or reads poorly, and any text it is not sure
of: P(expected language) under the language's calibrated `consult`, unless it names the language itself
with at least FIRST_DECISIVE), CLD2 gives a second opinion (`datakit/langid_cld2.py`), calibrated per language the same way
(`langdata/lid_thresholds.cld2.tsv`): it rejects what it confidently reads as another language, or
what neither model reads as the expected one; for a language lid.176 has no label for, CLD2 reading
the text as that language overrules lid.176. Its reading goes into `scores.lid` as
`<field>:cld2` ([label, share of the text, share in the expected language]). Each batch reads every
distinct text once per model.

For the languages neither model reads well (no label in either, or both read it weakly), a
character n-gram profile of the language (`datakit/lid_profile.py`) scores how much a text reads
like it; a field scoring under the language's calibrated floor (`langdata/lid_thresholds.profile.tsv`)
is rejected. Its score goes
into `scores.lid` as `<field>:profile`.

A batch is worked on as columns (one entry per field: texts, expected languages, each model's labels
and probabilities as arrays), with a Python step only where a field needs one (a model naming another
language, a record's scores written in C-level maps), so that the stage costs little beside fastText's
own batched call (bench/bench_lid.py).
"""

from __future__ import annotations

import functools
import operator
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from itertools import chain, repeat
from pathlib import Path
from typing import NamedTuple

import numpy as np
import regex

from datakit import lid_profile
from datakit.langid import (
    NO_READINGS,
    LangId,
    Readings,
    Thresholds,
    calibrated_thresholds,
    group_of,
    in_group,
    profile_file,
    read_thresholds,
    second_opinion_file,
    take,
)
from datakit.langid_cld2 import Cld2Id
from datakit.recipe import Lid as LidConfig
from datakit.record_stages.base import RecordStage
from datakit.records import LID_CHECKS, Record, lid_checks
from datakit.scripts import script_count_matrix, script_counts
from datakit.stats import StageStats

# fastText naming a language it has a label for with at least this probability of its group settles the text
# without the second opinion (None: the second opinion is asked wherever the calibration says). With 0.5 it is
# asked for 37% fewer NTREX lines; bench/eval_lid.py: planted mislabels caught 99.33% (99.35% asking always),
# same script 98.13% (98.19%), clean lines wrongly rejected 0.62% (0.74%).
FIRST_DECISIVE: float | None = 0.5
SECOND_SURE = 0.9  # the second opinion's share of a text in the expected language that settles its script
READS_AS = 0.5  # the second opinion's share of a text in a language, to overrule a model without a label for it
SCORE_HISTOGRAM = "~answer_probability"  # report key: 5-point bins of P(expected language) of answers
UNSUPPORTED_HISTOGRAM = "~answer_probability_unsupported"  # the same, of answers in languages the model has no label for
_CODE_BLOCK = regex.compile(r"```.*?(```|$)", regex.S)
_INLINE_CODE = regex.compile(r"`[^`\n]*`")
_URL = regex.compile(r"https?://\S+|www\.\S+|\S+@\S+\.\w+")
# Letters of these scripts carry a syllable or a word each: weigh them against alphabet letters.
_DENSE = {"Hani": 3.0, "Jpan": 3.0, "Hang": 2.0, "Yiii": 3.0}
_BINS = [f"{i * 5:02d}" for i in range(20)]  # SCORE_HISTOGRAM's bins
_REASONS = (None, "script_mismatch", "lid_mismatch")  # a field's finding, by code
# Columns read in C (map over a batch) rather than by an attribute or index read per item in Python.
_FIELD, _TEXT, _CODE = (operator.itemgetter(n) for n in range(3))  # of a lid check
_TASK, _LANG = operator.itemgetter("task"), operator.itemgetter("lang")  # of a record
_FIRST, _SECOND, _FIRST_KNOWS, _SUPPORTED = map(operator.attrgetter, ("first", "second", "first_knows", "supported"))  # of a _Rule
_FLOOR = operator.attrgetter("floor")  # of Thresholds


def prose(text: str) -> str:
    """The text without code and links, whitespace collapsed (fastText reads one line)."""
    if "`" in text:
        text = _INLINE_CODE.sub(" ", _CODE_BLOCK.sub(" ", text))
    if "http" in text or "www." in text or "@" in text:
        text = _URL.sub(" ", text)
    return " ".join(text.split())


def proses(texts: list[str]) -> list[str]:
    """`prose` of each text. Most texts are one line of prose already: printable (every whitespace
    character but the space is not), no double, leading or trailing space, nothing that may start code
    or a link. Those are kept as they are, after a few C scans (splitting and joining them again is
    most of `prose`'s time)."""
    return [t if (t.isprintable() and "  " not in t and t[:1] != " " and t[-1:] != " " and "`" not in t
                  and "@" not in t and "http" not in t and "www." not in t) else prose(t) for t in texts]


@functools.cache
def multi_script() -> frozenset[str]:
    """Languages written in more than one script (FLORES-200's, and the usual Cyrillic/Latin/Arabic pairs)."""
    from datakit.languages import flores200

    by_iso: dict[str, set[str]] = {}
    for code in flores200():
        iso, script = code.split("_")
        by_iso.setdefault(iso, set()).add(script)
    usual = {"srp", "bos", "hrv", "cnr", "uzn", "azj", "kaz", "kir", "tat", "tgk", "uig", "khk", "pan", "snd", "kur", "kmr", "ckb", "san", "zho"}
    return frozenset({iso for iso, scripts in by_iso.items() if len(scripts) > 1} | usual)


@functools.cache
def accepted_scripts(script: str) -> frozenset[str]:
    """The scripts whose letters count as a language's own `script` (Han counts for Hans and Hant)."""
    return frozenset({script, "Hani"} if script in ("Hans", "Hant") else {script, "Hani", "Jpan"} if script == "Jpan" else
                     {script, "Hang", "Hani"} if script in ("Kore", "Hang") else {script})


def script_share(text: str, script: str) -> float | None:
    """Weighted share of the text's letters in `script` (Han counts for Hans and Hant; None: no letters)."""
    counts = script_counts(text)
    if not counts:
        return None
    weights = {s: n * _DENSE.get(s, 1.0) for s, n in counts.items()}
    accepted = accepted_scripts(script)
    return sum(w for s, w in weights.items() if s in accepted) / sum(weights.values())


def script_shares(texts: list[str], scripts: list[str]) -> list[float | None]:
    """`script_share` of many texts, each in its own script, from one count of the whole batch's letters
    (the weighted counts are whole numbers, so the sums are exact and the shares the same)."""
    if not texts:
        return []
    counts, columns = script_count_matrix(texts)
    weighted = counts * np.array([_DENSE.get(c, 1.0) for c in columns])
    total = weighted.sum(1)
    # Which columns count, per distinct script (a few per batch), then one row per text by indexing.
    distinct = {script: n for n, script in enumerate(dict.fromkeys(scripts))}
    table = np.array([[c in accepted_scripts(script) for c in columns] for script in distinct], dtype=bool)
    accepted = table[np.fromiter(map(distinct.__getitem__, scripts), dtype=np.intp, count=len(scripts))]
    own = np.where(accepted, weighted, 0.0).sum(1)
    return [None if t == 0 else o / t for o, t in zip(own.tolist(), total.tolist(), strict=True)]


def round3(values: list[float] | np.ndarray) -> list[float]:
    """`[round(v, 3) for v in values]`, the same floats, in one vectorised pass (a batch rounds about a
    thousand probabilities; `round` costs half a microsecond each). Where v * 1000 lands within 1e-6 of a
    half (far above its rounding error), the builtin settles it: it rounds the exact decimal value."""
    if len(values) == 0:
        return []
    scaled = np.asarray(values, dtype=np.float64) * 1000.0
    out = (np.rint(scaled) / 1000.0).tolist()
    for i in np.flatnonzero(np.abs(scaled - np.floor(scaled) - 0.5) < 1e-6).tolist():
        out[i] = round(float(values[i]), 3)
    return out


def fields_to_check(record: Record) -> list[tuple[str, str, str]]:
    declared = lid_checks(record)
    if declared:
        return declared
    # A general record's prompt may quote other languages (a text to translate, to correct); its
    # answer is what the record teaches, and must be in the record's language.
    answer = "\n".join(m["content"] for m in record["messages"] if m["role"] == "assistant")
    return [("answer", answer, record["lang"])]




@dataclass(frozen=True)
class _Rule:
    """What the stage needs to know about one expected language, worked out once per language."""

    iso: str
    script: str
    group: frozenset[str]
    first: Thresholds | None   # the fastText model's limits (None: it is not asked)
    second: Thresholds | None  # the second opinion's (None: it is not asked)
    multi_script: bool
    supported: bool            # whether either model has a label for it
    first_knows: bool          # whether the fastText model has a label for it
    profile: Thresholds | None = None  # the n-gram profile's floor (None: the language has none)


class _Readings(NamedTuple):
    """The models' readings of a batch's fields, as columns (in field order; a model's readings with the
    fields they are of, since each model reads only some)."""

    asked: np.ndarray              # bool per field: long enough, and some model is asked about its language
    first_at: list[int]            # the fields the fastText model read
    first: Readings                # its readings of them
    first_p: np.ndarray            # per field, its P(expected language) (0 where it did not read the field)
    second_at: list[int]           # the fields the second opinion read
    second: Readings               # its readings of them
    profile: dict[int, float]      # field -> the n-gram profile's score, where the language has one
    mismatch: np.ndarray           # bool per field: the readings say it is in another language


class _Table:
    """The rules of a batch's expected languages as columns, one entry per field: each distinct language's
    values looked up once, then spread over the fields by indexing (no attribute reads per field)."""

    def __init__(self, codes: list[str], rule: Callable[[str], _Rule]):
        position = {code: n for n, code in enumerate(dict.fromkeys(codes))}
        self.row = np.fromiter(map(position.__getitem__, codes), dtype=np.intp, count=len(codes))
        self.distinct = [rule(code) for code in position]

    def column(self, value, dtype=float) -> np.ndarray:
        """`value(rule)` of each field's rule."""
        return np.array([value(r) for r in self.distinct], dtype=dtype)[self.row]


class LanguageId(RecordStage):
    name = "lid"

    def __init__(self, config: LidConfig, model_path: str):
        self.config = config
        self.lid = LangId(model_path)
        if config.thresholds == "default":
            default = config.model == "default"
            shipped = calibrated_thresholds() if default else {}
            second = calibrated_thresholds(second_opinion_file("lid_thresholds.tsv")) if default else {}
            profile = calibrated_thresholds(profile_file("lid_thresholds.tsv")) if default else {}
        elif config.thresholds == "none":
            shipped, second, profile = {}, {}, {}
        else:
            shipped = read_thresholds(Path(config.thresholds).read_text(encoding="utf-8"))
            second, profile = (read_thresholds(p.read_text(encoding="utf-8")) if p.is_file() else {}
                               for p in (Path(second_opinion_file(config.thresholds)), Path(profile_file(config.thresholds))))
        self.thresholds = {**shipped, **{code: Thresholds(tau) for code, tau in config.overrides.items()}}
        # The second opinion is asked only with its calibration: for the default model, or beside a given file.
        self.second = Cld2Id() if second else None
        self.second_thresholds = second
        # The profiles are used only with their floors (calibrated with the rest).
        self.profiles = lid_profile.shipped() if profile else None
        self.profile_thresholds = profile
        self._rules: dict[str, _Rule] = {}
        self._verdicts: dict[int, str | None] = {}  # per record, this batch
        self._stats: StageStats | None = None  # the batch's stats, while `run` runs
        self._second_keys: dict[str, str] = {}

    def threshold(self, code: str) -> Thresholds | None:
        """When the model's answer rejects a field of this language; None: the model is not asked."""
        if code in self.thresholds:
            return self.thresholds[code]
        return Thresholds(self.config.default_threshold) if self.lid.supports(code) else None

    def rule(self, code: str) -> _Rule:
        found = self._rules.get(code)
        if found is None:
            iso, script = code.split("_")
            second = None
            if self.second is not None:
                second = self.second_thresholds.get(code) or (Thresholds(self.config.default_threshold)
                                                               if self.second.supports(code) else None)
            supported = self.lid.supports(code) or (self.second is not None and self.second.supports(code))
            profile = self.profile_thresholds.get(code) if self.profiles is not None and self.profiles.supports(code) else None
            found = self._rules[code] = _Rule(iso, script, group_of(iso), self.threshold(code), second,
                                              iso in multi_script(), supported, self.lid.supports(code), profile)
        return found

    def rules(self, codes: list[str]) -> list[_Rule]:
        """Each code's rule (a batch has a few distinct languages: each is worked out once)."""
        for code in dict.fromkeys(codes).keys() - self._rules.keys():
            self.rule(code)
        return take(self._rules, codes)  # type: ignore[arg-type]

    def mismatches(self, preds: Readings, expected: list[str], general: np.ndarray, limits: list[Thresholds],
                   expected_prob: np.ndarray | None = None) -> np.ndarray:
        """Whether each prediction says its text is not in its expected language, by that language's
        calibrated limits (bool array): another language (outside the expected one's confusable group)
        more likely than the expected one by at least the limit for that language, or (not for general
        records) P(expected language) under the floor. For general records, code, formulas and
        quotations read as "a little English": only confident prose counts (the margin is at least
        `general_margin`). `expected_prob`: what the floor is on, where not the prediction's own (the
        second opinion's floor is on the larger of the two models' P(expected language)). Most
        predictions name the expected language itself: only those naming another are looked at one by
        one (which language, and its own limit); the comparisons are array operations."""
        labels, probs, own = preds.label, preds.prob, preds.expected_prob
        other = np.zeros(len(labels), dtype=bool)
        limit = np.zeros(len(labels))
        named = np.fromiter(map(operator.ne, labels, expected), dtype=bool, count=len(labels))
        for i in np.flatnonzero(named).tolist():
            label = labels[i]
            if label is not None and not in_group(label, expected[i]):
                other[i], limit[i] = True, limits[i].for_label(label)
        margin = probs - own  # how much more likely another language is than the expected one
        floor = np.fromiter(map(_FLOOR, limits), dtype=np.float64, count=len(limits))
        confident = other & (margin >= np.where(general, np.maximum(self.config.general_margin, limit), limit))
        return confident | (~general & ((own if expected_prob is None else expected_prob) < floor))

    def read(self, texts: list[str], expected: list[str], general: np.ndarray, rules: list[_Rule] | None = None) -> _Readings:
        """Both models' readings of the texts (long enough ones), and whether they reject each: the first
        model for every text of a language it is asked about, the second where the first is not sure.
        For a language the first model has no label for, its rejection stands only if the second, which
        knows the language, does not read the text as it. Then the n-gram profiles, where a language has one.
        Each step is a batched call and array operations over the fields (`general`: bool per field)."""
        n = len(texts)
        rules = rules or self.rules(expected)
        table = _Table(expected, self.rule)
        asked = (table.column(lambda r: r.first is not None or r.second is not None or r.profile is not None, bool)
                 & (np.fromiter(map(len, texts), dtype=np.intp, count=n) >= self.config.min_chars))
        has_first = asked & table.column(lambda r: r.first is not None, bool)
        bad = np.zeros(n, dtype=bool)
        first_p = np.zeros(n)  # P(expected language) by the first model, 0 where it is not asked
        first_at = np.flatnonzero(has_first).tolist()
        first = self.lid.read(take(texts, first_at), first_expected := take(expected, first_at))
        if first_at:
            first_p[first_at] = first.expected_prob
            bad[first_at] = self.mismatches(first, first_expected, general[first_at], list(map(_FIRST, take(rules, first_at))))
        second_at: list[int] = []
        second = NO_READINGS
        if self.second is not None:
            # Asked where the first model is not asked or not sure, unless it rejects a language it knows, or
            # names a language it knows with FIRST_DECISIVE (its group's probability).
            consult = table.column(lambda r: r.second.consult if r.second is not None else -1.0)
            first_knows = table.column(_FIRST_KNOWS, bool)
            later = asked & (consult >= 0) & (~has_first | (first_p < consult)) & (~bad | ~first_knows)
            if FIRST_DECISIVE is not None and first_at:
                names_it = np.zeros(n, dtype=bool)
                names_it[first_at] = np.fromiter(map(operator.eq, first.label, first_expected), dtype=bool, count=len(first_at))
                later &= ~(first_knows & names_it & (first_p >= FIRST_DECISIVE))
            second_at = np.flatnonzero(later).tolist()
        if second_at:
            second = self.second.read(take(texts, second_at), second_expected := take(expected, second_at))  # type: ignore[union-attr]
            own = second.expected_prob
            limits = list(map(_SECOND, take(rules, second_at)))
            # Where the first model rejects a language it has no label for, the second may read the text as it.
            bad[second_at] = np.where(bad[second_at], own < READS_AS,
                                      self.mismatches(second, second_expected, general[second_at], limits, np.maximum(own, first_p[second_at])))
        profile: dict[int, float] = {}
        at = np.flatnonzero(asked & table.column(lambda r: r.profile is not None, bool)).tolist()
        if at:  # languages neither model reads well: rejected when the text does not read like the language
            scores = self.profiles.scores(take(texts, at), take(expected, at))  # type: ignore[union-attr]
            profile = dict(zip(at, scores, strict=True))
            bad[at] |= np.array(scores) < table.column(lambda r: r.profile.floor if r.profile is not None else 0.0)[at]
        return _Readings(asked, first_at, first, first_p, second_at, second, profile, bad)

    def text_mismatch(self, text: str, expected: str) -> str | None:
        """The lid verdict for one text outside a batch (an LLM answer being validated)."""
        clean = prose(text)
        share = script_share(clean, self.rule(expected).script)
        if share is not None and share < self.config.script_min_share.get("synthesised", 0.5):
            return "script_mismatch"
        return "lid_mismatch" if self.read([clean], [expected], np.zeros(1, dtype=bool)).mismatch[0] else None

    def begin_batch(self, records: list[Record]) -> None:
        """Clean every field once, read all the long enough ones in one call per model, count the letters
        of those whose script is in doubt in one pass, and settle each record's verdict and scores."""
        # The batch's fields as columns, made by C-level maps (most records have one field or two).
        checks = [record.get(LID_CHECKS) or fields_to_check(record) for record in records]
        owner = np.repeat(np.arange(len(records)), np.fromiter(map(len, checks), dtype=np.intp, count=len(checks)))  # each field's record
        fields = list(chain.from_iterable(checks))
        names = list(map(_FIELD, fields))
        texts = proses(list(map(_TEXT, fields)))
        expected = list(map(_CODE, fields))
        tasks = list(map(_TASK, records))
        general = (np.array(tasks, dtype=object) == "general")[owner]
        min_shares = np.fromiter(map(self.config.script_min_share.get, tasks, repeat(0.5)), dtype=np.float64, count=len(tasks))[owner]
        rules = self.rules(expected)
        readings = self.read(texts, expected, general, rules)
        # A confident reading of the language itself settles its script too, unless the language is
        # written in several (Serbian, Uzbek, ...): then the letters are counted.
        settled = _sure(readings, expected) & ~_Table(expected, self.rule).column(lambda r: r.multi_script, bool)
        doubt = np.flatnonzero((min_shares != 0) & ~settled).tolist()
        shares = dict(zip(doubt, script_shares(take(texts, doubt), [rules[i].script for i in doubt]), strict=True))
        self._verdicts = self._settle(records, owner, names, rules, readings, shares, min_shares, self._stats)

    def _settle(self, records: list[Record], owner: np.ndarray, names: list[str], rules: list[_Rule], readings: _Readings,
                shares: dict[int, float | None], min_shares: np.ndarray, stats: StageStats | None) -> dict[int, str | None]:
        """Each record's verdict (by id) from its fields' readings and script shares, its scores written, a
        column at a time (no call per field: most records have one field or two); and the batch's report
        counted on the way (see _count)."""
        lids = [record["scores"].setdefault("lid", {}) for record in records]
        field_scores = take(lids, owner.tolist())  # each field's record's `scores.lid`
        for at, preds, key in ((readings.first_at, readings.first, None), (readings.second_at, readings.second, self._second_key)):
            if at:
                probs = round3(np.concatenate([preds.prob, preds.expected_prob]))
                written = list(map(list, zip(preds.label, probs[: len(at)], probs[len(at) :], strict=True)))
                keys = take(names, at) if key is None else list(map(key, take(names, at)))
                deque(map(dict.__setitem__, take(field_scores, at), keys, written), maxlen=0)
        for i, score in readings.profile.items():
            field_scores[i][f"{names[i]}:profile"] = round(score, 3)
        # Each field's finding (its script, else another language); a record's verdict is its first field's.
        finding = readings.mismatch.astype(np.int8) * 2
        for i, share in shares.items():
            if share is not None and share < min_shares[i]:
                field_scores[i].setdefault("script", {})[names[i]] = round(share, 3)
                finding[i] = 1
        verdicts: list[str | None] = [None] * len(records)
        found = np.flatnonzero(finding).tolist()
        for i, reason in zip(reversed(found), take(_REASONS, finding[found[::-1]].tolist()), strict=True):
            verdicts[owner[i]] = reason  # a record's first finding is written last
        langs = list(map(_LANG, records))
        lang_rules = self.rules(langs)
        if not all(map(_SUPPORTED, lang_rules)):
            for n, rule in enumerate(lang_rules):
                if not rule.supported:
                    lids[n]["unsupported"] = True
        if stats is not None:
            self._count(owner, names, rules, readings, langs, verdicts, stats)
        return dict(zip(map(id, records), verdicts, strict=True))

    def _second_key(self, field: str) -> str:
        """The scores key of the second opinion's reading of a field (`answer:cld2`), made once per field name."""
        key = self._second_keys.get(field)
        if key is None:
            key = self._second_keys[field] = f"{field}:{self.second.name}"  # type: ignore[union-attr]
        return key

    def _count(self, owner: np.ndarray, names: list[str], rules: list[_Rule], readings: _Readings, langs: list[str],
               verdicts: list[str | None], stats: StageStats) -> None:
        """The batch's report, counted at once (array and Counter passes, not a few dictionary updates per
        record): per language checked, unsupported, kept and rejected; the answers' expected-language
        probability in 5-point bins (of each record's last answer field read), also apart for languages
        the model has no label for."""
        answers = np.flatnonzero(readings.asked & (np.array(names, dtype=object) == "answer"))
        of = owner[answers]
        last = answers[np.append(of[1:] != of[:-1], True)] if len(answers) else answers  # each record's last answer field
        read = last[np.isin(last, readings.first_at)]  # where the fastText model read it
        bins = np.minimum((readings.first_p[read] * 20).astype(np.intp), 19)
        unknown = ~np.fromiter(map(_FIRST_KNOWS, take(rules, read.tolist())), dtype=bool, count=len(read))
        for key, counted in ((SCORE_HISTOGRAM, bins), (UNSUPPORTED_HISTOGRAM, bins[unknown])):  # P = 0 for the latter by construction: the report's plot says why
            for score_bin, n in enumerate(np.bincount(counted, minlength=len(_BINS)).tolist()):
                if n:
                    stats.note(key, _BINS[score_bin], n)
        per_lang = Counter(zip(langs, map(bool, verdicts), strict=True))
        for lang in dict.fromkeys(langs):
            kept, rejected = per_lang[lang, False], per_lang[lang, True]
            report = stats.report.get(lang) or stats.report.setdefault(lang, Counter())
            report["checked"] += kept + rejected
            if not self.rule(lang).supported:
                report["unsupported"] += kept + rejected
            for key, n in (("kept", kept), ("rejected", rejected)):
                if n:
                    report[key] += n

    def run(self, records: list[Record], stats: StageStats):
        """The base stage's run (the collector paused there), with the stats at hand for the batch's
        report (see _count)."""
        self._stats = stats
        try:
            return super().run(records, stats)
        finally:
            self._stats = None

    def apply(self, record: Record, stats: StageStats) -> str | None:
        return self._verdicts[id(record)]


def _sure(readings: _Readings, expected: list[str]) -> np.ndarray:
    """Per field, whether either model reads the text as the expected language confidently enough to settle its script."""
    sure = np.zeros(len(expected), dtype=bool)
    for at, preds, least in ((readings.first_at, readings.first, 0.5), (readings.second_at, readings.second, SECOND_SURE)):
        if at:
            sure[at] |= np.fromiter(map(operator.eq, preds.label, take(expected, at)), dtype=bool, count=len(at)) & (preds.prob >= least)
    return sure
