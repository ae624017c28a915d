"""Character n-gram profiles: language ID's signal for languages no model here reads well.

Neither lid.176 nor CLD2 knows Bemba, Ewe, Pulaar, Northern Ndebele, Tahitian or Tachelhit, and both
read Xhosa, Swati, Northern Sotho and Yoruba weakly: a Kinyarwanda sentence labelled Pulaar is read
confidently as Kinyarwanda by CLD2, but clean Pulaar is read as Kinyarwanda too, so no calibrated
threshold can call it. What they lack is a model of the expected language itself. A profile is one: for a language L, the log-likelihood ratio of each
character 1-4-gram between L's text and all the other languages' text (naive Bayes, n-grams hashed
into 2^16 buckets, stored as int8). A text's score is the mean ratio over its n-grams; text in
another language scores low, and the lid stage rejects a field of L whose score is under L's floor,
calibrated on clean text the profile was not trained on (datakit/calibrate_lid.py).

Profiles are learned from NTREX-128 (news, the domain of the build's translations): lines whose
index is a multiple of `TRAIN_EVERY` train them, all other lines stay held out (bench/eval_lid.py
scores the odd lines; the calibration of its floors uses the rest of the even ones). The shipped
file holds hashed counts only, no text.

    python -m datakit.lid_profile --data-dir ../shared/corpus   # writes langdata/lid_profiles.npz
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import numpy as np

BITS = 16           # 2^16 hash buckets per language
MAX_N = 4           # character n-grams of 1..4 letters (with the spaces around each word)
ALPHA = 0.1         # additive smoothing of the counts
CLIP = 12.0         # log-likelihood ratios kept in [-CLIP, CLIP], stored as int8
TRAIN_EVERY = 4     # NTREX lines 0, 4, 8, ... train the profiles; the rest are held out
FILE = "lid_profiles.npz"
_MIX = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing: the top BITS bits of h * _MIX are the bucket
_BASE = np.uint64(1000003)


def ngram_buckets(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Every character n-gram (1..MAX_N) of every text, lower-cased, with a space around it, as
    (bucket, index of its text): one vectorised pass over all texts (no Python loop per n-gram)."""
    joined = "\x00".join(" " + " ".join(t.lower().replace("\x00", " ").split()) + " " for t in texts)  # NUL: between texts
    cp = np.frombuffer(joined.encode("utf-32-le", "surrogatepass"), dtype=np.uint32).astype(np.uint64)
    letter = cp != 0
    text_id = np.cumsum(~letter)
    buckets, ids = [], []
    h = cp.copy()
    inside = letter  # whether the n-gram starting here lies within one text: none of its characters is a NUL
    for n in range(1, MAX_N + 1):
        m = len(cp) - n + 1
        if m <= 0:
            break
        if n > 1:
            h = h[:m] * _BASE + cp[n - 1 :]
            inside = inside[:m] & letter[n - 1 :]
        b = h + np.uint64(n)
        b *= _MIX
        b >>= np.uint64(64 - BITS)
        buckets.append(b[inside].view(np.int64))  # under 2**BITS: the same numbers as signed
        ids.append(text_id[:m][inside])
    return np.concatenate(buckets), np.concatenate(ids)


def bucket_counts(texts: Sequence[str]) -> np.ndarray:
    return np.bincount(ngram_buckets(texts)[0], minlength=1 << BITS).astype(np.float64)


def _log_p(counts: np.ndarray) -> np.ndarray:
    return np.log((counts + ALPHA) / (counts.sum() + ALPHA * len(counts)))


def train(texts: dict[str, list[str]], langs: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """Profiles of `langs`, each against the text of all the other languages in `texts`."""
    counts = {code: bucket_counts(items) for code, items in sorted(texts.items())}
    total = sum(counts.values())
    codes = sorted(langs)
    scale = 127 / CLIP
    tables = np.stack([np.round(np.clip(_log_p(counts[c]) - _log_p(total - counts[c]), -CLIP, CLIP) * scale)
                       for c in codes]).astype(np.int8)
    return codes, tables


class Profiles:
    """Profiles behind a small interface: `supports(code)` and `scores(texts, expected)`."""

    name = "profile"

    def __init__(self, path: str | Path | None = None):
        source = Path(path) if path else resources.files("datakit.langdata").joinpath(FILE)
        with source.open("rb") as f, np.load(f, allow_pickle=False) as data:
            self.codes = [str(c) for c in data["codes"]]
            self.tables = data["tables"].astype(np.float32) * np.float32(CLIP / 127)
        self._flat = self.tables.reshape(-1)  # [language << BITS | bucket]: one gather per batch, not a 2-D fancy index
        self.index = {c: i for i, c in enumerate(self.codes)}

    def supports(self, code: str) -> bool:
        return code in self.index

    def scores(self, texts: Sequence[str], expected: Sequence[str]) -> list[float]:
        """Each text's mean log-likelihood ratio of its expected language against all others (every
        expected language must have a profile); a text without letters scores 0."""
        if not texts:
            return []
        buckets, ids = ngram_buckets(texts)
        rows = np.fromiter(map(self.index.__getitem__, expected), dtype=np.int64, count=len(expected)) << BITS
        total = np.bincount(ids, weights=self._flat[rows[ids] | buckets], minlength=len(texts))
        n = np.bincount(ids, minlength=len(texts))
        return (total / np.maximum(n, 1)).tolist()


@functools.cache
def shipped() -> Profiles | None:
    """The profiles that ship with datakit (None where the file is absent)."""
    return Profiles() if resources.files("datakit.langdata").joinpath(FILE).is_file() else None


def ntrex_lines(data_dir: Path) -> dict[str, list[str]]:
    """NTREX-128's lines per language (index = line number; one file per language, the plain one
    before regional variants)."""
    from datakit.sources.parallel import file_language

    out = {}
    for path in sorted((data_dir / "ntrex128/NTREX-128").glob("newstest2019-*.txt")):
        if "ref-2" in path.name:
            continue
        lang = file_language(path.name.split(".")[-2], path)
        if lang.region is None or lang.code not in out:
            out[lang.code] = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    return out


def split(lines: dict[str, list[str]], train_part: bool) -> dict[str, list[str]]:
    """The lines that train the profiles (`train_part`), or those held out from them."""
    return {code: [t for i, t in enumerate(ls) if t and (i % TRAIN_EVERY == 0) == train_part] for code, ls in lines.items()}


def weak_languages(texts: dict[str, list[str]]) -> list[str]:
    """The languages neither the default fastText model nor CLD2 reads well: on their (training) text,
    neither names the language's group first for at least WEAK of it (calibrate_lid's measure of a
    weakly read language); those without a label in either model among them."""
    from datakit.langid import WEAK, LangId, top1_rate
    from datakit.langid_cld2 import Cld2Id
    from datakit.models import resolve_lid_model

    models = (LangId(str(resolve_lid_model(None))), Cld2Id())
    return [code for code, items in sorted(texts.items())
            if max(top1_rate(model.predict(items, [code] * len(items)), code) for model in models) < WEAK]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--out", default=str(Path(__file__).parent / "langdata" / FILE))
    args = ap.parse_args(argv)
    texts = split(ntrex_lines(Path(args.data_dir)), train_part=True)
    codes, tables = train(texts, weak_languages(texts))
    with open(args.out, "wb") as f:
        np.savez_compressed(f, codes=np.array(codes), tables=tables)
    print(f"profiles for {len(codes)} languages ({', '.join(codes)}) from {sum(map(len, texts.values()))} NTREX lines "
          f"of {len(texts)} languages: {Path(args.out).stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
