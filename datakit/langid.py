"""Language identification with fastText: batched prediction mapped onto the contract's codes.

A fastText LID model answers with its own labels (`__label__sw`, GlotLID's `__label__swh_Latn`);
`LangId` maps them once through the language registry, so a prediction is compared with a
record's `lang` as codes, and confusable languages are compared as groups (a Bosnian sentence
read as Croatian is not a mislabelled record). Predictions whose language is written in another
script than the text itself are discarded: lid.176 reads tone-marked Yoruba as Russian, which no
Latin-script text can be.

Whether a prediction is confident enough to call a record mislabelled depends on the language:
per-language thresholds, calibrated on clean reference translations (NTREX-128 and the UDHR) so
that at most about half a percent of clean text would be rejected, ship in
`langdata/lid_thresholds.tsv` (see datakit/calibrate_lid.py). A second opinion (CLD2,
datakit/langid_cld2.py) has its own beside it (`lid_thresholds.cld2.tsv`), and so do the character n-gram
profiles of languages neither model reads well (datakit/lid_profile.py, `lid_thresholds.profile.tsv`).
"""

from __future__ import annotations

import functools
import operator
from collections import deque
from dataclasses import dataclass
from importlib import resources
from itertools import chain, repeat
from typing import NamedTuple

import numpy as np

from datakit import languages
from datakit.errors import UnknownLanguageError
from datakit.models import load_fasttext
from datakit.scripts import dominant_scripts, script_count_matrix, scripts_agree

NEVER = 1.01  # a threshold no probability reaches
WEAK = 0.9  # a model reads a language weakly when it names the language's group first for less of its clean text


@functools.cache
def confusable_groups() -> dict[str, frozenset[str]]:
    """ISO 639-3 code -> the group of languages a LID model cannot be expected to tell apart."""
    text = resources.files("datakit.langdata").joinpath("confusable.txt").read_text(encoding="utf-8")
    groups: dict[str, frozenset[str]] = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            members = frozenset(line.split())
            for m in members:
                groups[m] = groups.get(m, frozenset()) | members
    return groups


def group_of(iso: str) -> frozenset[str]:
    return confusable_groups().get(iso, frozenset([iso]))


@functools.cache
def code_group(code: str) -> frozenset[str]:
    """The confusable group of a contract code's language (`srp_Latn` -> {bos, hrv, srp, cnr}), once per code."""
    return group_of(code.split("_")[0])


def in_group(label: str, code: str) -> bool:
    """Whether a predicted contract code is the expected one's language or in its confusable group."""
    return label == code or label[: label.index("_")] in code_group(code)


@dataclass(frozen=True)
class Thresholds:
    """When a language's field is rejected: another language predicted more likely than the expected
    one by `other` or more (or by its own entry in `pairs`), or the expected language's probability
    under `floor`. A second opinion's thresholds also say when it is asked (`consult`)."""

    other: float
    floor: float = 0.0
    pairs: tuple[tuple[str, float], ...] = ()
    consult: float = NEVER  # a second opinion: asked when the first model's P(expected) is under this

    @functools.cached_property
    def _by_label(self) -> dict[str, float]:
        return dict(self.pairs)

    def for_label(self, label: str) -> float:
        return self._by_label.get(label, self.other)


def read_thresholds(text: str) -> dict[str, Thresholds]:
    """Parse a thresholds TSV as calibrate_lid writes it."""
    out = {}
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            fields = line.split("\t")
            floor = float(fields[4]) if len(fields) > 4 else 0.0
            pairs = tuple((k, float(v)) for k, v in (p.split("=") for p in fields[5].split(",") if p)) if len(fields) > 5 else ()
            consult = float(fields[6]) if len(fields) > 6 else NEVER
            out[fields[0]] = Thresholds(float(fields[3]), floor, pairs, consult)
    return out


@functools.cache
def calibrated_thresholds(name: str = "lid_thresholds.tsv") -> dict[str, Thresholds]:
    """The shipped per-language thresholds, calibrated for the default model (lid.176.ftz), or with
    `second_opinion_file(...)` for CLD2 beside it."""
    path = resources.files("datakit.langdata").joinpath(name)
    return read_thresholds(path.read_text(encoding="utf-8")) if path.is_file() else {}


def second_opinion_file(path: str) -> str:
    """Where the second opinion's thresholds for a thresholds file are: beside it (`x.tsv` -> `x.cld2.tsv`)."""
    return path.removesuffix(".tsv") + ".cld2.tsv"


def profile_file(path: str) -> str:
    """Where the n-gram profiles' floors (datakit/lid_profile.py) for a thresholds file are: `x.tsv` -> `x.profile.tsv`."""
    return path.removesuffix(".tsv") + ".profile.tsv"


class Prediction(NamedTuple):  # a tuple: one is made per text, and a frozen dataclass costs 3x as much
    label: str | None       # best prediction consistent with the text's script (contract code), or None
    prob: float             # its probability
    expected_prob: float    # total probability of the expected language's group
    script: str | None      # the text's dominant script, when it was needed


class Readings(NamedTuple):
    """A batch's predictions as columns (what `Prediction` holds per text): for a stage that works on
    arrays, without a Python object per text."""

    label: list[str | None]
    prob: np.ndarray
    expected_prob: np.ndarray
    script: list[str | None]

    def predictions(self) -> list[Prediction]:
        """The same, one Prediction per text (made in C)."""
        return list(map(_new_prediction, zip(self.label, self.prob.tolist(), self.expected_prob.tolist(), self.script, strict=True)))


NO_READINGS = Readings([], np.zeros(0), np.zeros(0), [])  # of no text


def top1_rate(preds: list[Prediction], code: str) -> float:
    """The share of a language's clean text a model reads as the language's group first."""
    group = group_of(code.split("_")[0])
    return float(np.mean([p.label is not None and p.label.split("_")[0] in group for p in preds])) if preds else 0.0


class LangId:
    """A fastText LID model (lid.176, GlotLID, ...) whose labels are read as contract codes."""

    name = "fasttext"

    def __init__(self, model_path: str, k: int = 5):
        self.model = load_fasttext(model_path)
        self.k = k
        self.codes: list[str | None] = []
        for raw in self.model.get_labels():
            tag = raw.removeprefix("__label__")
            try:
                self.codes.append(languages.code(tag))
            except UnknownLanguageError:
                self.codes.append(None)
        # label -> (code, iso, script), worked out once, not per prediction
        self.parts = {raw: (code, *code.split("_")) for raw, code in zip(self.model.get_labels(), self.codes, strict=True) if code}
        self.known_isos = {c.split("_")[0] for c in self.codes if c}
        self._member_labels: dict[str, frozenset[str]] = {}
        self.label_id = {raw: i for i, raw in enumerate(self.model.get_labels())}
        self._member_row: dict[str, int] = {}  # expected language -> its row of _member_matrix
        self._member_matrix = np.zeros((0, len(self.label_id) + 1), dtype=bool)  # [language, label or pad]: label in its group
        self._code_of: list[str | None] = [self.parts[raw][0] if raw in self.parts else None for raw in self.label_id] + [None]  # per label id, and the pad
        self._coded = np.array([code is not None for code in self._code_of], dtype=bool)
        self._fit: dict[str | None, np.ndarray] = {}  # dominant script -> which labels fit it (see _fits)

    def supports(self, code: str) -> bool:
        """Whether the model has a label for the language (or for a language of its confusable group)."""
        return bool(group_of(code.split("_")[0]) & self.known_isos)

    def predict(self, texts: list[str], expected: list[str]) -> list[Prediction]:
        """One batched call for all distinct texts (single lines: see stages.lid.prose); each text
        compared with its expected language. A text that recurs (a translation's source is the answer
        of the opposite direction) is predicted once. See `read`."""
        return self.read(texts, expected).predictions()

    def read(self, texts: list[str], expected: list[str]) -> Readings:
        """`predict` as columns. The labels and probabilities of the whole batch are read as arrays: the
        expected language's probability and whether the top label is in its group, for every text at once;
        the texts whose top label is another language are read apart (their script decides which label
        counts: see _read_others)."""
        if not texts:
            return NO_READINGS
        distinct = list(dict.fromkeys(texts))  # in first-seen order
        index = dict(zip(distinct, range(len(distinct)), strict=True))
        labels, probs = self._predict(distinct)
        # fastText leaves out labels of negligible probability (fewer than k for 1-2% of texts): rows are
        # padded with a label that is no language (`pad`, never a member) of probability 0.
        lengths = np.fromiter(map(len, labels), dtype=np.intp, count=len(labels))
        pad = len(self.label_id)
        ids = np.full((len(labels), self.k), pad, dtype=np.intp)
        p = np.zeros((len(labels), self.k))
        rows_of = np.repeat(np.arange(len(labels)), lengths)
        cols_of = np.arange(len(rows_of)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        ids[rows_of, cols_of] = np.fromiter(map(self.label_id.__getitem__, chain.from_iterable(labels)), dtype=np.intp, count=len(rows_of))
        p[rows_of, cols_of] = np.concatenate(probs)
        rows = np.fromiter(map(index.__getitem__, texts), dtype=np.intp, count=len(texts))
        label_ids, p = ids[rows], p[rows]
        expected_rows = self._expected_rows(expected)  # first: it may add rows to the matrix
        member = self._member_matrix[expected_rows[:, None], label_ids]
        expected_p = np.zeros(len(texts))
        for j in range(self.k):  # in label order, as a loop over each text's labels would add them
            expected_p += np.where(member[:, j], p[:, j], 0.0)
        # The usual case: the top label is in the expected language's group, and no script is needed.
        label: list[str | None] = list(expected)
        prob, script = p[:, 0].copy(), [None] * len(texts)
        others = np.flatnonzero(~member[:, 0])
        if len(others):
            at = others.tolist()
            other_label, other_prob, other_script = self._read_others(
                take(texts, at), label_ids[others], p[others], member[others], take(expected, at))
            deque(map(label.__setitem__, at, other_label), maxlen=0)
            deque(map(script.__setitem__, at, other_script), maxlen=0)
            prob[others] = other_prob
        return Readings(label, prob, expected_p, script)

    def _predict(self, texts: list[str]) -> tuple[list, list]:
        """`model.predict(texts, k)`, one call for the batch, without the wrapper's check of each text (one
        check of the batch instead, with the same error; fastText reads one line per text)."""
        if any(map(operator.contains, texts, repeat("\n"))):
            raise ValueError("predict processes one line at a time (remove '\\n')")
        return self.model.f.multilinePredict(list(map(operator.add, texts, repeat("\n"))), self.k, 0.0, "strict")

    def _read_others(self, texts: list[str], label_ids: np.ndarray, p: np.ndarray, member: np.ndarray,
                     expected: list[str]) -> tuple[list[str | None], np.ndarray, list[str | None]]:
        """Texts whose top label is not their expected language's group, read as array operations: the
        first label that is in the group, or of another language consistent with the text's script (the
        scripts of all these texts counted in one pass; which labels fit which script worked out once).
        Gives the label, probability and script columns."""
        scripts = dominant_scripts(*script_count_matrix(texts))
        distinct = list(dict.fromkeys(scripts))
        fits = np.stack([self._fits(script) for script in distinct])[
            np.fromiter(map({s: n for n, s in enumerate(distinct)}.__getitem__, scripts), dtype=np.intp, count=len(scripts))[:, None],
            label_ids]
        named = self._coded[label_ids]  # a label of a language: the text's script is looked at
        ok = member | (named & fits)
        at = (np.arange(len(texts)), ok.argmax(1))
        found = ok[at]
        # The text's script goes with the prediction where a label of a language was reached before it was settled.
        before = np.cumsum(named, axis=1) - named  # labels of a language before each position
        looked = np.where(found, (before[at] > 0) | ~member[at], named.any(1))
        code_of = self._code_of
        labels = [(exp if is_member else code_of[label]) if is_found else None
                  for exp, is_found, is_member, label in zip(expected, found.tolist(), member[at].tolist(), label_ids[at].tolist(), strict=True)]
        return labels, np.where(found, p[at], 0.0), [script if seen else None for script, seen in zip(scripts, looked.tolist(), strict=True)]

    def _fits(self, script: str | None) -> np.ndarray:
        """Per label (and the pad), whether the label, of another language than the expected one, may be read
        for text of this dominant script (None: no letters): a language of the script (see scripts_agree), or
        any language for text without letters, except Japanese, which only text with kana is (Han text
        without kana is Chinese, whatever lid.176 says). As a reading of each text's labels in order decides it."""
        found = self._fit.get(script)
        if found is None:
            found = self._fit[script] = np.array(
                [code is not None and not (code.split("_")[1] == "Jpan" and script != "Jpan")
                 and (script is None or scripts_agree(code.split("_")[1], script)) for code in self._code_of], dtype=bool)
        return found

    def _expected_rows(self, expected: list[str]) -> np.ndarray:
        """Each expected language's row of `_member_matrix` (a row added the first time a language is seen)."""
        rows = self._member_row
        for exp in sorted(set(expected) - rows.keys()):
            members = self._members(exp)
            rows[exp] = len(rows)
            line = np.array([[raw in members for raw in self.label_id] + [False]])
            self._member_matrix = np.concatenate([self._member_matrix, line])
        return np.fromiter(map(rows.__getitem__, expected), dtype=np.intp, count=len(expected))

    def _members(self, exp: str) -> frozenset[str]:
        """The model's raw labels in the expected language's group, worked out once per language."""
        found = self._member_labels.get(exp)
        if found is None:
            group = code_group(exp)
            found = self._member_labels[exp] = frozenset(raw for raw, (_, iso, _) in self.parts.items() if iso in group)
        return found


def take(values: list, at: list[int]) -> list:
    """values[i] for each i of `at`, in C (a batch's column at some of its rows)."""
    return list(map(values.__getitem__, at))


_new_prediction = functools.partial(tuple.__new__, Prediction)
