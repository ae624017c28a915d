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
"""

from __future__ import annotations

import functools
from pathlib import Path

import regex

from datakit.langid import LangId, Prediction, Thresholds, calibrated_thresholds, group_of, read_thresholds
from datakit.recipe import Lid as LidConfig
from datakit.record_stages.base import RecordStage
from datakit.records import Record, lid_checks
from datakit.scripts import script_counts
from datakit.stats import StageStats

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




class LanguageId(RecordStage):
    name = "lid"

    def __init__(self, config: LidConfig, model_path: str):
        self.config = config
        self.lid = LangId(model_path)
        if config.thresholds == "default":
            shipped = calibrated_thresholds() if config.model == "default" else {}
        elif config.thresholds == "none":
            shipped = {}
        else:
            shipped = read_thresholds(Path(config.thresholds).read_text(encoding="utf-8"))
        self.thresholds = {**shipped, **{code: Thresholds(tau) for code, tau in config.overrides.items()}}
        self._pending: dict[int, list] = {}

    def threshold(self, code: str) -> Thresholds | None:
        """When the model's answer rejects a field of this language; None: the model is not asked."""
        if code in self.thresholds:
            return self.thresholds[code]
        return Thresholds(self.config.default_threshold) if self.lid.supports(code) else None

    def mismatch(self, pred: Prediction, expected: str, general: bool = False) -> bool:
        """Whether a prediction says the text is not in `expected`, by the language's calibrated limits."""
        limits = self.threshold(expected)
        if limits is None:
            return False
        other = pred.label is not None and pred.label.split("_")[0] not in group_of(expected.split("_")[0])
        margin = pred.prob - pred.expected_prob  # how much more likely another language is than the expected one
        if general:
            # Code, formulas and quotations read as "a little English": only confident prose counts.
            return other and margin >= max(self.config.general_margin, limits.for_label(pred.label))
        return (other and margin >= limits.for_label(pred.label)) or pred.expected_prob < limits.floor

    def text_mismatch(self, text: str, expected: str) -> str | None:
        """The lid verdict for one text outside a batch (an LLM answer being validated)."""
        clean = prose(text)
        script = expected.split("_")[1]
        share = script_share(clean, script)
        if share is not None and share < self.config.script_min_share.get("synthesised", 0.5):
            return "script_mismatch"
        if len(clean) < self.config.min_chars or self.threshold(expected) is None:
            return None
        pred = self.lid.predict([clean], [expected])[0]
        return "lid_mismatch" if self.mismatch(pred, expected) else None

    def begin_batch(self, records: list[Record]) -> None:
        """Clean every field once, and predict all the long enough ones in one call."""
        jobs = []
        self._fields: dict[int, list[tuple[str, str, str]]] = {}
        for record in records:
            fields = [(field, prose(text), expected) for field, text, expected in fields_to_check(record)]
            self._fields[id(record)] = fields
            for field, clean, expected in fields:
                if len(clean) >= self.config.min_chars and self.threshold(expected) is not None:
                    jobs.append((id(record), field, clean, expected))
        preds = self.lid.predict([j[2] for j in jobs], [j[3] for j in jobs]) if jobs else []
        self._pending: dict[int, dict[str, Prediction]] = {}
        for (key, field, _, _), pred in zip(jobs, preds, strict=True):
            self._pending.setdefault(key, {})[field] = pred

    def apply(self, record: Record, stats: StageStats) -> str | None:
        preds = self._pending.get(id(record), {})
        scores = record["scores"].setdefault("lid", {})
        verdict = None
        for field, clean, expected in self._fields[id(record)]:
            iso, script = expected.split("_")
            pred = preds.get(field)
            # A confident prediction of the language itself settles its script too, unless the
            # language is written in several (Serbian, Uzbek, ...): then the letters are counted.
            sure = pred is not None and pred.label == expected and pred.prob >= 0.5 and iso not in multi_script()
            share = None if sure else script_share(clean, script)
            if pred is not None:
                scores[field] = [pred.label, round(pred.prob, 3), round(pred.expected_prob, 3)]
            if share is not None and share < self.config.script_min_share.get(record["task"], 0.5):
                scores.setdefault("script", {})[field] = round(share, 3)
                verdict = verdict or "script_mismatch"
                continue
            if pred is None:
                continue
            if self.mismatch(pred, expected, general=record["task"] == "general"):
                verdict = verdict or "lid_mismatch"
        lang = record["lang"]
        answer = preds.get("answer")
        if answer is not None:  # the distribution of the answers' expected-language probability, for the report
            score_bin = f"{min(int(answer.expected_prob * 20), 19) * 5:02d}"
            stats.note(SCORE_HISTOGRAM, score_bin)
            if not self.lid.supports(next(e for f, _, e in self._fields[id(record)] if f == "answer")):
                stats.note(UNSUPPORTED_HISTOGRAM, score_bin)  # P = 0 by construction: the report's plot says why
        stats.note(lang, "checked")
        if not self.lid.supports(lang):
            stats.note(lang, "unsupported")
            scores["unsupported"] = True
        stats.note(lang, "rejected" if verdict else "kept")
        return verdict

