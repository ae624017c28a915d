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
`langdata/lid_thresholds.tsv` (see datakit/calibrate_lid.py).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources

from datakit import languages
from datakit.errors import UnknownLanguageError
from datakit.models import load_fasttext
from datakit.scripts import dominant_script, scripts_agree


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


@dataclass(frozen=True)
class Thresholds:
    """When a language's field is rejected: another language predicted more likely than the expected
    one by `other` or more (or by its own entry in `pairs`), or the expected language's probability
    under `floor`."""

    other: float
    floor: float = 0.0
    pairs: tuple[tuple[str, float], ...] = ()

    def for_label(self, label: str) -> float:
        return dict(self.pairs).get(label, self.other)


def read_thresholds(text: str) -> dict[str, Thresholds]:
    """Parse a thresholds TSV as calibrate_lid writes it."""
    out = {}
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            fields = line.split("\t")
            floor = float(fields[4]) if len(fields) > 4 else 0.0
            pairs = tuple((k, float(v)) for k, v in (p.split("=") for p in fields[5].split(",") if p)) if len(fields) > 5 else ()
            out[fields[0]] = Thresholds(float(fields[3]), floor, pairs)
    return out


@functools.cache
def calibrated_thresholds() -> dict[str, Thresholds]:
    """The shipped per-language thresholds, calibrated for the default model (lid.176.ftz)."""
    path = resources.files("datakit.langdata").joinpath("lid_thresholds.tsv")
    return read_thresholds(path.read_text(encoding="utf-8")) if path.is_file() else {}


@dataclass(frozen=True)
class Prediction:
    label: str | None       # best prediction consistent with the text's script (contract code), or None
    prob: float             # its probability
    expected_prob: float    # total probability of the expected language's group
    script: str | None      # the text's dominant script, when it was needed


class LangId:
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

    def supports(self, code: str) -> bool:
        """Whether the model has a label for the language (or for a language of its confusable group)."""
        return bool(group_of(code.split("_")[0]) & self.known_isos)

    def predict(self, texts: list[str], expected: list[str]) -> list[Prediction]:
        """One batched call for all texts (single lines: see stages.lid.prose); each compared with its
        expected language."""
        labels, probs = self.model.predict(texts, k=self.k)
        out = []
        parts = self.parts
        unknown = object()
        for text, labs, ps, exp in zip(texts, labels, probs, expected, strict=True):
            script = unknown  # the text's script is looked at only when another language is named
            group = group_of(exp.split("_")[0])
            best, best_p, exp_p = None, 0.0, 0.0
            for lab, p in zip(labs, ps.tolist(), strict=True):
                found = parts.get(lab)
                if found is None:
                    continue
                code, iso, lab_script = found
                if iso in group:
                    exp_p += p
                    if best is None:
                        best, best_p = exp, p
                    continue
                if best is not None:
                    continue
                if script is unknown:
                    script = dominant_script(text)
                if lab_script == "Jpan" and script != "Jpan":
                    continue  # Japanese prose has kana; Han text without any is Chinese (lid.176 says otherwise)
                if script is None or scripts_agree(lab_script, script):
                    best, best_p = code, p
            out.append(Prediction(best, float(best_p), float(exp_p), None if script is unknown else script))
        return out
