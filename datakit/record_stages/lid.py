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
of), CLD2 gives a second opinion (`datakit/langid_cld2.py`), calibrated per language the same way
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
"""

from __future__ import annotations

import functools
import gc
from collections import Counter
from dataclasses import dataclass
from itertools import accumulate, chain, repeat
from pathlib import Path
from typing import NamedTuple

import numpy as np
import regex

from datakit import lid_profile
from datakit.langid import (
    LangId,
    Prediction,
    Thresholds,
    calibrated_thresholds,
    group_of,
    in_group,
    profile_file,
    read_thresholds,
    second_opinion_file,
)
from datakit.langid_cld2 import Cld2Id
from datakit.recipe import Lid as LidConfig
from datakit.record_stages.base import RecordStage
from datakit.records import Record, lid_checks
from datakit.scripts import script_count_matrix, script_counts
from datakit.stats import StageStats

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


def prose(text: str) -> str:
    """The text without code and links, whitespace collapsed (fastText reads one line)."""
    if "`" in text:
        text = _INLINE_CODE.sub(" ", _CODE_BLOCK.sub(" ", text))
    if "http" in text or "www." in text or "@" in text:
        text = _URL.sub(" ", text)
    return " ".join(text.split())


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


def round3(values: list[float]) -> list[float]:
    """`[round(v, 3) for v in values]`, the same floats, in one vectorised pass (a batch rounds about a
    thousand probabilities; `round` costs half a microsecond each). Where v * 1000 lands within 1e-6 of a
    half (far above its rounding error), the builtin settles it: it rounds the exact decimal value."""
    if not values:
        return []
    scaled = np.asarray(values, dtype=np.float64) * 1000.0
    out = (np.rint(scaled) / 1000.0).tolist()
    for i in np.flatnonzero(np.abs(scaled - np.floor(scaled) - 0.5) < 1e-6).tolist():
        out[i] = round(values[i], 3)
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


class _Finding(NamedTuple):  # a tuple: one is made per field, and a frozen dataclass costs several times as much
    """One field's readings and whether they say it is in another language."""

    first: Prediction | None
    second: Prediction | None
    mismatch: bool
    profile: float | None = None  # the n-gram profile's score, where the language has one


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

    def mismatch(self, pred: Prediction, expected: str, general: bool = False, limits: Thresholds | None = None,
                 expected_prob: float | None = None) -> bool:
        """Whether a prediction says the text is not in `expected`, by the language's calibrated limits
        (the first model's unless others are given; the second opinion's floor is on the larger of the
        two models' P(expected language), given as `expected_prob`)."""
        limits = limits or self.threshold(expected)
        if limits is None:
            return False
        expected_prob = pred.expected_prob if expected_prob is None else expected_prob
        other = pred.label is not None and not in_group(pred.label, expected)
        margin = pred.prob - pred.expected_prob  # how much more likely another language is than the expected one
        if general:
            # Code, formulas and quotations read as "a little English": only confident prose counts.
            return other and margin >= max(self.config.general_margin, limits.for_label(pred.label))
        return (other and margin >= limits.for_label(pred.label)) or expected_prob < limits.floor

    def find(self, texts: list[str], expected: list[str], general: list[bool], rules: list[_Rule] | None = None) -> list[_Finding | None]:
        """Both models' readings of the texts (long enough ones), and whether they reject each: the first
        model for every text of a language it is asked about, the second where the first is not sure.
        For a language the first model has no label for, its rejection stands only if the second, which
        knows the language, does not read the text as it."""
        out: list[_Finding | None] = [None] * len(texts)
        rules = rules or [self.rule(e) for e in expected]
        ask = [i for i, (t, r) in enumerate(zip(texts, rules, strict=True))
               if len(t) >= self.config.min_chars and (r.first or r.second or r.profile)]
        first_ask = [i for i in ask if rules[i].first is not None]
        firsts: dict[int, Prediction] = dict(zip(first_ask, self.lid.predict([texts[i] for i in first_ask],
                                                                             [expected[i] for i in first_ask]), strict=True))
        later = []
        for i in ask:
            pred = firsts.get(i)
            rule = rules[i]
            if pred is None:
                bad = False
            elif pred.label == expected[i]:  # the usual case: no other language named, only the floor can reject
                bad = not general[i] and pred.expected_prob < rule.first.floor  # type: ignore[union-attr]
            else:
                bad = self.mismatch(pred, expected[i], general[i], rule.first)
            if rule.second is not None and (pred is None or pred.expected_prob < rule.second.consult) and \
                    (not bad or not rule.first_knows):
                later.append(i)
            out[i] = _Finding(pred, None, bad)
        if later:
            for i, pred in zip(later, self.second.predict([texts[i] for i in later], [expected[i] for i in later]), strict=True):  # type: ignore[union-attr]
                first, bad = out[i].first, out[i].mismatch  # type: ignore[union-attr]
                both = max(pred.expected_prob, first.expected_prob if first else 0.0)
                if bad:  # the first model has no label for the language: the second may read it as it
                    out[i] = _Finding(first, pred, pred.expected_prob < READS_AS)
                else:
                    out[i] = _Finding(first, pred, self.mismatch(pred, expected[i], general[i], rules[i].second, both))
        profiled = [i for i in ask if rules[i].profile is not None]
        if profiled:  # languages neither model reads well: rejected when the text does not read like the language
            for i, score in zip(profiled, self.profiles.scores([texts[i] for i in profiled], [expected[i] for i in profiled]), strict=True):  # type: ignore[union-attr]
                first, second, bad = out[i].first, out[i].second, out[i].mismatch  # type: ignore[union-attr]
                out[i] = _Finding(first, second, bad or score < rules[i].profile.floor, score)  # type: ignore[union-attr]
        return out

    def text_mismatch(self, text: str, expected: str) -> str | None:
        """The lid verdict for one text outside a batch (an LLM answer being validated)."""
        clean = prose(text)
        share = script_share(clean, self.rule(expected).script)
        if share is not None and share < self.config.script_min_share.get("synthesised", 0.5):
            return "script_mismatch"
        found = self.find([clean], [expected], [False])[0]
        return "lid_mismatch" if found is not None and found.mismatch else None

    def begin_batch(self, records: list[Record]) -> None:
        """Clean every field once, read all the long enough ones in one call per model, count the letters
        of those whose script is in doubt in one pass, and settle each record's verdict and scores."""
        # The batch's fields as columns, made by C-level maps (most records have one field or two).
        checks = list(map(fields_to_check, records))
        ends = list(accumulate(map(len, checks)))  # where each record's fields end (a record's fields are contiguous)
        fields = list(chain.from_iterable(checks))
        names = [field for field, _, _ in fields]
        texts = list(map(prose, [text for _, text, _ in fields]))
        expected = [exp for _, _, exp in fields]
        general = list(chain.from_iterable(repeat(record["task"] == "general", len(c)) for record, c in zip(records, checks, strict=True)))
        rules_of, rule = self._rules, self.rule
        rules = [rules_of.get(exp) or rule(exp) for exp in expected]
        found = self.find(texts, expected, general, rules)
        min_shares = [self.config.script_min_share.get(record["task"], 0.5) for record in records]
        # A confident reading of the language itself settles its script too, unless the language is
        # written in several (Serbian, Uzbek, ...): then the letters are counted.
        doubt, start = [], 0
        for n, end in enumerate(ends):
            if min_shares[n]:
                doubt.extend(i for i in range(start, end)
                             if rules[i].multi_script or found[i] is None or not _sure(found[i], expected[i]))  # type: ignore[arg-type]
            start = end
        shares: list[float | None] = [None] * len(texts)
        for i, share in zip(doubt, script_shares([texts[i] for i in doubt], [rules[i].script for i in doubt]), strict=True):
            shares[i] = share
        self._verdicts = self._settle(records, ends, names, found, rules, shares, min_shares, self._stats)

    def _settle(self, records: list[Record], ends: list[int], names: list[str], found: list[_Finding | None],
                rules: list[_Rule], shares: list[float | None], min_shares: list[float],
                stats: StageStats | None) -> dict[int, str | None]:
        """Each record's verdict (by id) from its fields' findings and script shares, its scores written, in
        one pass over the batch's fields (no call per record: most records have one field); and the batch's
        report counted on the way (see _count)."""
        verdicts: dict[int, str | None] = {}
        bins: Counter[str] = Counter()
        unsupported_bins: Counter[str] = Counter()
        per_lang: dict[str, list[int]] = {}  # language -> [kept, rejected]
        second_key, rules_of = self._second_key, self._rules
        readings: list[list] = []  # the [label, prob, expected prob] lists written, rounded together at the end
        values: list[float] = []   # their probabilities, in order
        start = 0
        for record, end, min_share in zip(records, ends, min_shares, strict=True):
            scores = record["scores"].setdefault("lid", {})
            verdict = None
            answer = answer_rule = None
            for i in range(start, end):
                finding, field, share = found[i], names[i], shares[i]
                if finding is not None:
                    first, second, mismatch, profile = finding
                    if first is not None:
                        readings.append(reading := [first.label, 0.0, 0.0])
                        scores[field] = reading
                        values += (first.prob, first.expected_prob)
                    if second is not None:
                        readings.append(reading := [second.label, 0.0, 0.0])
                        scores[second_key(field)] = reading
                        values += (second.prob, second.expected_prob)
                    if profile is not None:
                        scores[f"{field}:profile"] = round(profile, 3)
                    if field == "answer":
                        answer, answer_rule = first, rules[i]
                else:
                    mismatch = False
                if share is not None and share < min_share:
                    scores.setdefault("script", {})[field] = round(share, 3)
                    verdict = verdict or "script_mismatch"
                elif mismatch:
                    verdict = verdict or "lid_mismatch"
            start = end
            lang = record["lang"]
            lang_rule = rules_of.get(lang) or self.rule(lang)
            if not lang_rule.supported:
                scores["unsupported"] = True
            verdicts[id(record)] = verdict
            if stats is not None:
                if answer is not None:
                    score_bin = _BINS[min(int(answer.expected_prob * 20), 19)]
                    bins[score_bin] += 1
                    if not answer_rule.first_knows:  # type: ignore[union-attr]
                        unsupported_bins[score_bin] += 1  # P = 0 by construction: the report's plot says why
                counts = per_lang.get(lang)
                if counts is None:
                    counts = per_lang[lang] = [0, 0]
                counts[1 if verdict else 0] += 1
        rounded = round3(values)
        for reading, prob, expected_prob in zip(readings, rounded[0::2], rounded[1::2], strict=True):
            reading[1], reading[2] = prob, expected_prob
        if stats is not None:
            self._count(bins, unsupported_bins, per_lang, stats)
        return verdicts

    def _second_key(self, field: str) -> str:
        """The scores key of the second opinion's reading of a field (`answer:cld2`), made once per field name."""
        key = self._second_keys.get(field)
        if key is None:
            key = self._second_keys[field] = f"{field}:{self.second.name}"  # type: ignore[union-attr]
        return key

    def _count(self, bins: Counter[str], unsupported_bins: Counter[str], per_lang: dict[str, list[int]],
               stats: StageStats) -> None:
        """The batch's report, counted at once (Counter updates per batch, not a few dictionary updates per
        record): per language checked, unsupported, kept and rejected; the answers' expected-language
        probability in 5-point bins, also apart for languages the model has no label for."""
        for key, counted in ((SCORE_HISTOGRAM, bins), (UNSUPPORTED_HISTOGRAM, unsupported_bins)):
            for score_bin, n in counted.items():
                stats.note(key, score_bin, n)
        for lang, (kept, rejected) in per_lang.items():
            report = stats.report.get(lang) or stats.report.setdefault(lang, Counter())
            report["checked"] += kept + rejected
            if not self.rule(lang).supported:
                report["unsupported"] += kept + rejected
            for key, n in (("kept", kept), ("rejected", rejected)):
                if n:
                    report[key] += n

    def run(self, records: list[Record], stats: StageStats):
        """The base stage's run, with the stats at hand for the batch's report (see _count), and the cyclic
        collector paused while it runs: the batch makes several small containers per field (readings,
        scores), and each few hundred of them would start a collection that walks the whole batch's
        records, none of which is garbage yet (about 5% of the stage's time). What the batch leaves
        behind is collected as usual once the collector runs again."""
        self._stats = stats
        collecting = gc.isenabled()  # only a run that paused it resumes it (another thread may have paused it)
        if collecting:
            gc.disable()
        try:
            return super().run(records, stats)
        finally:
            self._stats = None
            if collecting:
                gc.enable()

    def apply(self, record: Record, stats: StageStats) -> str | None:
        return self._verdicts[id(record)]


def _sure(finding: _Finding, expected: str) -> bool:
    """Whether either model reads the text as the expected language confidently enough to settle its script."""
    first, second = finding.first, finding.second
    return ((first is not None and first.label == expected and first.prob >= 0.5)
            or (second is not None and second.label == expected and second.prob >= SECOND_SURE))
