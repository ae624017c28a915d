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
"""

from __future__ import annotations

import functools
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import regex

from datakit.langid import (
    LangId,
    Prediction,
    Thresholds,
    calibrated_thresholds,
    group_of,
    in_group,
    read_thresholds,
    second_opinion_file,
)
from datakit.langid_cld2 import Cld2Id
from datakit.recipe import Lid as LidConfig
from datakit.record_stages.base import RecordStage
from datakit.records import Record, lid_checks
from datakit.scripts import script_counts
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


def script_share(text: str, script: str) -> float | None:
    """Weighted share of the text's letters in `script` (Han counts for Hans and Hant; None: no letters)."""
    counts = script_counts(text)
    if not counts:
        return None
    weights = {s: n * _DENSE.get(s, 1.0) for s, n in counts.items()}
    accepted = {script, "Hani"} if script in ("Hans", "Hant") else {script, "Hani", "Jpan"} if script == "Jpan" else \
        {script, "Hang", "Hani"} if script in ("Kore", "Hang") else {script}
    return sum(w for s, w in weights.items() if s in accepted) / sum(weights.values())


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


@dataclass(frozen=True)
class _Finding:
    """One field's readings and whether they say it is in another language."""

    first: Prediction | None
    second: Prediction | None
    mismatch: bool


class LanguageId(RecordStage):
    name = "lid"

    def __init__(self, config: LidConfig, model_path: str):
        self.config = config
        self.lid = LangId(model_path)
        if config.thresholds == "default":
            default = config.model == "default"
            shipped = calibrated_thresholds() if default else {}
            second = calibrated_thresholds(second_opinion_file("lid_thresholds.tsv")) if default else {}
        elif config.thresholds == "none":
            shipped, second = {}, {}
        else:
            shipped = read_thresholds(Path(config.thresholds).read_text(encoding="utf-8"))
            beside = Path(second_opinion_file(config.thresholds))
            second = read_thresholds(beside.read_text(encoding="utf-8")) if beside.is_file() else {}
        self.thresholds = {**shipped, **{code: Thresholds(tau) for code, tau in config.overrides.items()}}
        # The second opinion is asked only with its calibration: for the default model, or beside a given file.
        self.second = Cld2Id() if second else None
        self.second_thresholds = second
        self._rules: dict[str, _Rule] = {}
        self._checks: dict[int, list[tuple[str, str, str, _Rule, _Finding | None]]] = {}  # per record, this batch

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
            found = self._rules[code] = _Rule(iso, script, group_of(iso), self.threshold(code), second,
                                              iso in multi_script(), supported, self.lid.supports(code))
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
        ask = [i for i, (t, r) in enumerate(zip(texts, rules, strict=True)) if len(t) >= self.config.min_chars and (r.first or r.second)]
        first_ask = [i for i in ask if rules[i].first is not None]
        firsts: dict[int, Prediction] = dict(zip(first_ask, self.lid.predict([texts[i] for i in first_ask],
                                                                             [expected[i] for i in first_ask]), strict=True))
        later = []
        for i in ask:
            pred = firsts.get(i)
            rule = rules[i]
            bad = pred is not None and self.mismatch(pred, expected[i], general[i], rule.first)
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
        """Clean every field once, and read all the long enough ones in one call per model."""
        texts, expected, general, rules = [], [], [], []
        per_record = []
        rule = self.rule
        for record in records:
            fields = [(field, prose(text), exp, rule(exp)) for field, text, exp in fields_to_check(record)]
            per_record.append(fields)
            is_general = record["task"] == "general"
            for _, clean, exp, rule_ in fields:
                texts.append(clean)
                expected.append(exp)
                general.append(is_general)
                rules.append(rule_)
        found = iter(self.find(texts, expected, general, rules))
        self._checks = {id(record): [(*field, next(found)) for field in fields] for record, fields in zip(records, per_record, strict=True)}

    def apply(self, record: Record, stats: StageStats) -> str | None:
        scores = record["scores"].setdefault("lid", {})
        verdict = None
        min_share = self.config.script_min_share.get(record["task"], 0.5)
        answer = answer_rule = None
        for field, clean, expected, rule, finding in self._checks[id(record)]:
            first = second = None
            if finding is not None:
                first, second = finding.first, finding.second
                if first is not None:
                    scores[field] = [first.label, round(first.prob, 3), round(first.expected_prob, 3)]
                if second is not None:
                    scores[f"{field}:{self.second.name}"] = [second.label, round(second.prob, 3), round(second.expected_prob, 3)]  # type: ignore[union-attr]
                if field == "answer":
                    answer, answer_rule = first, rule
            # A confident reading of the language itself settles its script too, unless the language
            # is written in several (Serbian, Uzbek, ...): then the letters are counted.
            sure = not rule.multi_script and ((first is not None and first.label == expected and first.prob >= 0.5)
                                              or (second is not None and second.label == expected and second.prob >= SECOND_SURE))
            share = None if sure or not min_share else script_share(clean, rule.script)
            if share is not None and share < min_share:
                scores.setdefault("script", {})[field] = round(share, 3)
                verdict = verdict or "script_mismatch"
                continue
            if finding is not None and finding.mismatch:
                verdict = verdict or "lid_mismatch"
        lang = record["lang"]
        if answer is not None:  # the answers' expected-language probability, for the report
            score_bin = f"{min(int(answer.expected_prob * 20), 19) * 5:02d}"
            stats.note(SCORE_HISTOGRAM, score_bin)
            if not answer_rule.first_knows:  # type: ignore[union-attr]
                stats.note(UNSUPPORTED_HISTOGRAM, score_bin)  # P = 0 by construction: the report's plot says why
        counts = stats.report.get(lang) or stats.report.setdefault(lang, Counter())
        counts["checked"] += 1
        if not self.rule(lang).supported:
            counts["unsupported"] += 1
            scores["unsupported"] = True
        counts["rejected" if verdict else "kept"] += 1
        return verdict
