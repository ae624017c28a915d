"""CLD2 (Chromium's Compact Language Detector 2, through pycld2) as language ID's second opinion.

lid.176 has no label for many of the languages datakit builds (Zulu, Hausa, Yoruba, Samoan, ...)
and reads others weakly (Galician as Portuguese, Malagasy, Somali): below any threshold that keeps
clean text, it cannot tell a Xhosa sentence labelled Zulu, or a Galician one labelled Portuguese.
CLD2 knows about 160 languages, most of those among them, ships inside its wheel (no download) and
reads a sentence in about a tenth of fastText's time. The lid stage asks it only where fastText is
not sure or is known to read other languages as the expected one (see `consult` in
`langdata/lid_cld2_thresholds.tsv`, written by datakit/calibrate_lid.py).

CLD2 gives, per text, up to three languages with the share of the text in each (percent); the share
stands in for a probability. Its labels are ISO 639-1 codes without a script where one language is
written in several (`sr`, `ku`): the text's own script completes them.
"""

from __future__ import annotations

import functools

import numpy as np
import regex

from datakit import languages
from datakit.errors import DatakitError, UnknownLanguageError
from datakit.langid import Prediction, Readings, code_group, group_of
from datakit.scripts import dominant_script, dominant_scripts, script_count_matrix, scripts_agree

# CLD2 labels whose language is another one in some script (CLD2's `ku` in Arabic script is Sorani).
_IN_SCRIPT = {("ku", "Arab"): "ckb_Arab"}
# Characters CLD2 refuses as invalid UTF-8 (controls other than tab and line breaks, lone surrogates).
_REFUSED = regex.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\p{Cs}]")


@functools.cache
def _pycld2():
    try:
        import pycld2
    except ImportError:
        raise DatakitError("language ID's second opinion needs pycld2 (`pip install pycld2`); "
                           "or set filters.lid.thresholds to none") from None
    return pycld2


class Cld2Id:
    """CLD2 behind the same interface as `langid.LangId`: `predict(texts, expected)` and `supports`."""

    name = "cld2"

    def __init__(self) -> None:
        self.cld2 = _pycld2()
        self.tags: dict[str, tuple[str, str, str] | None] = {}  # CLD2 tag -> (code, iso, script)
        detected = set(self.cld2.DETECTED_LANGUAGES)  # LANGUAGES also lists names CLD2 never answers
        for name, tag in self.cld2.LANGUAGES:
            if name not in detected:
                continue
            try:
                code = languages.code(tag)
            except UnknownLanguageError:
                continue
            self.tags[tag] = (code, *code.split("_"))  # type: ignore[assignment]
        self.known_isos = {parts[1] for parts in self.tags.values() if parts}
        self._in_group: dict[str, frozenset[str]] = {}  # expected language -> its group's tags (see _group_tags)

    def supports(self, code: str) -> bool:
        """Whether CLD2 has a label for the language (or for a language of its confusable group)."""
        return bool(group_of(code.split("_")[0]) & self.known_isos)

    def details(self, text: str) -> tuple:
        """CLD2's (name, tag, percent, score) for its three likeliest languages; none for text it refuses.
        It is given the text's UTF-8 bytes (the same reading as of the str, without its conversion)."""
        try:
            return self.cld2.detect(text.encode("utf-8"), isPlainText=True, bestEffort=True)[2]
        except (self.cld2.error, UnicodeEncodeError):
            try:
                return self.cld2.detect(_REFUSED.sub(" ", text), isPlainText=True, bestEffort=True)[2]
            except (self.cld2.error, UnicodeEncodeError):
                return ()

    def predict(self, texts: list[str], expected: list[str]) -> list[Prediction]:
        """Each text against its expected language (CLD2 reads one text per call; a recurring text once)."""
        return self.read(texts, expected).predictions()

    def read(self, texts: list[str], expected: list[str]) -> Readings:
        """`predict` as columns. Most readings name only the expected language's group: those are read in
        one pass here; the scripts of the others are counted in one pass, and they are read by `_read`."""
        distinct = dict.fromkeys(texts)
        details_of = dict(zip(distinct, map(self.details, distinct), strict=True))
        found = list(map(details_of.__getitem__, texts))
        tags, in_group = self.tags, self._in_group
        labels: list[str | None] = []
        probs: list[float] = []
        expected_probs: list[float] = []
        others = []
        for i, (details, exp) in enumerate(zip(found, expected, strict=True)):
            own = in_group.get(exp)
            if own is None:
                own = self._group_tags(exp)
            best, best_p, exp_p = None, 0.0, 0.0
            for _, tag, percent, _ in details:
                if not percent:
                    continue
                if tag in own:
                    exp_p += percent / 100
                    if best is None:
                        best, best_p = exp, percent / 100
                elif tag in tags:  # another language: the text's script matters (see _read)
                    others.append(i)
                    break
            labels.append(best)
            probs.append(best_p)
            expected_probs.append(exp_p)
        scripts: list[str | None] = [None] * len(texts)
        if others:
            for i, script in zip(others, dominant_scripts(*script_count_matrix([texts[i] for i in others])), strict=True):
                labels[i], probs[i], expected_probs[i], scripts[i] = self._read(texts[i], found[i], expected[i], script)
        return Readings(labels, np.array(probs, dtype=np.float64), np.array(expected_probs, dtype=np.float64), scripts)

    def _group_tags(self, exp: str) -> frozenset[str]:
        """The CLD2 tags of the expected language's group, worked out once per language."""
        group = code_group(exp)
        found = self._in_group[exp] = frozenset(tag for tag, parts in self.tags.items() if parts is not None and parts[1] in group)
        return found

    def _read(self, text: str, details: tuple, exp: str, known: str | None = None) -> Prediction:
        """CLD2's reading as a Prediction against the expected language (`known`: the text's dominant script,
        where it was counted already)."""
        group = code_group(exp)
        best, best_p, exp_p, script = None, 0.0, 0.0, None
        for _, tag, percent, _ in details:
            parts = self.tags.get(tag)
            if parts is None or not percent:
                continue
            code, iso, lab_script = parts
            if iso not in group:
                script = script or known or dominant_script(text)
                if script is not None and not scripts_agree(lab_script, script):
                    # CLD2 names a language, not a script: Serbian or Kurdish in the text's own script.
                    code = _IN_SCRIPT.get((tag, script)) or f"{iso}_{script}"
                    iso = code.split("_")[0]
            p = percent / 100
            if iso in group:
                exp_p += p
                if best is None:
                    best, best_p = exp, p
            elif best is None:
                best, best_p = code, p
        return Prediction(best, best_p, exp_p, script)
