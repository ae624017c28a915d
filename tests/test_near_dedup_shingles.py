"""Near-dedup shingles: the batch path (`text_shingles`, `unspaced_texts`) that the datatrove steps
use gives what the per-text path gives, on every language of NTREX-128, so a change of speed is
never a change of signatures."""

from __future__ import annotations

from pathlib import Path

import pytest

from datakit.corpus_steps import near_dedup as nd
from datakit.scripts import mostly_unspaced
from datakit.text import dedup_text

PARAMS = nd.minhash_params(0.8, 128)


def reference_shingles(text: str, word_n: int, char_n: int) -> frozenset[str]:
    """The definition, one position at a time: character n-grams of the normalised text without
    spaces for mostly unspaced scripts, word n-grams otherwise; a text shorter than an n-gram is one
    shingle."""
    norm = dedup_text(text)
    if mostly_unspaced(text):
        chars = norm.replace(" ", "")
        return frozenset(chars[i : i + char_n] for i in range(max(1, len(chars) - char_n + 1)))
    words = norm.split()
    return frozenset(" ".join(words[i : i + word_n]) for i in range(max(1, len(words) - word_n + 1)))


@pytest.fixture(scope="module")
def ntrex_texts(corpus: Path) -> list[str]:
    """Every line of every NTREX-128 language, and each two consecutive lines as one text; plus the
    edge cases: empty, one character, fewer words or characters than an n-gram."""
    texts = ["", " ", "a", "ab cd", "a b c", "一二三", "一二三四", "東京は 大きい", "!!!", "ภาษาไทย abc"]
    for path in sorted((corpus / "ntrex128/NTREX-128").glob("newstest2019-ref.*.txt")):
        lines = path.read_text(encoding="utf-8").splitlines()
        texts += lines[:200]
        texts += [" ".join(lines[i : i + 2]) for i in range(200, 400, 2)]
    return texts


def test_batch_shingles_are_the_per_text_shingles(ntrex_texts):
    norms = [dedup_text(t) for t in ntrex_texts]
    batch = nd.text_shingles(ntrex_texts, norms, PARAMS)
    assert batch == [reference_shingles(t, PARAMS.word_ngram, PARAMS.char_ngram) for t in ntrex_texts]
    assert batch == [nd.shingles([t], PARAMS) for t in ntrex_texts]


def test_batch_script_test_agrees_with_mostly_unspaced(ntrex_texts):
    unspaced = nd.unspaced_texts(ntrex_texts).tolist()
    assert unspaced == [mostly_unspaced(t) for t in ntrex_texts]
    assert 0 < sum(unspaced) < len(unspaced)  # both kinds are there


def test_other_ngram_sizes(ntrex_texts):
    params = nd.minhash_params(0.7, 64, word_ngram=2, char_ngram=3)
    texts = ntrex_texts[::7]
    assert nd.text_shingles(texts, [dedup_text(t) for t in texts], params) == [reference_shingles(t, 2, 3) for t in texts]
