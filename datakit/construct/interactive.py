"""Interactive translation: a translation, then the user asks for revisions, turn by turn (BayLing 1).

Offline, only revisions whose correct answer the data holds are made, and each answer is checked
to satisfy its request before the record is built:
- `another_language`: "now into Chinese": the other pivot's reference of the same line;
- `regional_variant`: "make it British English": the variant reference (NTREX has eng-GB/US/IN,
  por-BR, fra-CA, spa-MX);
- `include_words`: the first answer is an alternative reference (a regional variant or second
  translation); the user asks for words the primary reference has and it lacks; the answer is
  the primary reference, which contains them;
- `use_term`: likewise, for one multi-word term (a name, a phrase) of the primary reference.
Revisions that need generation (shorter, more formal) come only from an LLM step.
"""

from __future__ import annotations

import unicodedata

import regex

from datakit.construct import templates as T
from datakit.languages import HUBS, display_name, variant_name
from datakit.records import Record, RowSeed, new_record, set_content, set_lid_checks
from datakit.sources.base import Parallel, RawRow
from datakit.text import dedup_text

_WORD = regex.compile(r"\b[\p{L}][\p{L}\p{M}'’-]{3,}\b")
_LETTER = regex.compile(r"\p{L}")
_TERM = regex.compile(r"\b(?:\p{Lu}[\p{L}\p{M}'’-]+)(?:\s+\p{Lu}[\p{L}\p{M}'’-]+)+\b")

REVISIONS = {
    "another_language": {
        "eng_Latn": ["Now translate it into {lang}.", "Could you also give me the {lang} version?", "And in {lang}?"],
        "zho_Hans": ["现在把它翻译成{lang}。", "再给我一个{lang}版本。", "用{lang}怎么说？"],
    },
    "regional_variant": {
        "eng_Latn": ["Please adapt the translation for {variant} readers.", "Rewrite it in {variant}.", "Can you make that {variant}?"],
        "zho_Hans": ["请改成{variant}的说法。", "请把译文改为{variant}。", "能换成{variant}吗？"],
    },
    "include_words": {
        "eng_Latn": ["Revise the translation so that it uses the words {words}.", "Please rework it to include {words}."],
        "zho_Hans": ["请修改译文，使其包含这些词：{words}。", "请重新翻译，译文里要用到{words}。"],
    },
    "use_term": {
        "eng_Latn": ['Please use the term "{term}" in the translation.', 'Use "{term}" there, please.'],
        "zho_Hans": ["译文中请使用“{term}”这个说法。", "请在译文里用“{term}”。"],
    },
}


def _quote(words: list[str], lang: str) -> str:
    if lang == "zho_Hans":
        return "、".join(f"“{w}”" for w in words)
    quoted = [f'"{w}"' for w in words]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]


def _plain(text: str) -> str:
    """Text as a reader compares words: NFKC, case-folded, one apostrophe."""
    return unicodedata.normalize("NFKC", text).casefold().replace("’", "'").replace("‘", "'")


def lacks(first: str, wanted: str) -> bool:
    """Whether the first answer lacks a word or term in any case or spelling of its apostrophe, even
    inside a longer word ("marca" is not asked for where the answer says "marcas")."""
    return _plain(wanted) not in _plain(first)


def _missing_words(primary: str, other: str, rng, n: int = 2) -> list[str]:
    """Words of the primary reference that the alternative lacks."""
    candidates = sorted({w for w in _WORD.findall(primary) if lacks(other, w) and holds("include_words", primary, {"words": [w]})})
    rng.shuffle(candidates)
    return candidates[:n]


def _missing_term(primary: str, other: str, rng) -> str | None:
    terms = sorted({t for t in _TERM.findall(primary) if lacks(other, t)})
    return rng.pick(terms) if terms else None


def stands_alone(word: str, text: str) -> bool:
    r"""Whether `word` occurs in `text` with no letter right before or after it: what the pattern
    `(?<!\p{L})word(?!\p{L})` finds, without compiling a pattern per candidate word (those
    compiles took a quarter of the time of the interactive records)."""
    end = len(text)
    start = text.find(word)
    while start != -1:
        after = start + len(word)
        if not (start and _LETTER.match(text, start - 1)) and not (after < end and _LETTER.match(text, after)):
            return True
        start = text.find(word, start + 1)
    return False


def holds(kind: str, answer: str, detail: dict) -> bool:
    """Whether an answer satisfies its revision request (every record is built only if it does)."""
    if kind == "include_words":
        return all(stands_alone(w, answer) for w in detail["words"])
    if kind == "use_term":
        return detail["term"] in answer
    return answer == detail["reference"]


def changes(previous: str, answer: str) -> bool:
    """Whether a revised answer differs from the one before in its words, not in quotes or spaces
    alone (a "British English" reference that differs only in its quotation marks changes nothing)."""
    return dedup_text(previous) != dedup_text(answer)


_WORD_KINDS = ("include_words", "use_term")


def interactive(ex: Parallel, row: RawRow, source_name: str, license_: str, seed: int, pivots: list[str],
                instruction_langs: list[str], max_revisions: int, share: float, row_seed: RowSeed | None = None) -> Record | None:
    """The row's interactive record, or None (not drawn for the `share`, or no revision it can
    make). `row_seed`, when the caller has one for the row, is `RowSeed(seed, source_name, row.loc)`."""
    rng = (row_seed or RowSeed(seed, source_name, row.loc)).draws("interactive")
    if ex.unit != "sentence" or rng.random() >= share:
        return None
    x = ex.focus
    pairs = [(x, p) for p in pivots if p in ex.texts and p != x] + [(p, x) for p in pivots if p in ex.texts and p != x]
    if not pairs:
        return None
    src, tgt = rng.pick(pairs)
    inst = rng.pick(instruction_langs)
    template = T.choose(T.TRANSLATION, inst, ex.unit, rng)
    primary = ex.texts[tgt]
    alternatives = sorted((ex.variants.get(tgt) or {}).items())
    first_answer, turns = primary, []

    options = []
    others = [p for p in pivots if p in ex.texts and p not in (src, tgt)]
    if others:
        options.append("another_language")
    regional = [(label, text) for label, text in alternatives if len(label) == 2 and changes(primary, text)]
    if regional:
        options.append("regional_variant")
    alt = next(((label, text) for label, text in alternatives if changes(primary, text)), None)
    if alt is not None:
        options += list(_WORD_KINDS)
    if not options:
        return None
    rng.shuffle(options)
    # Word and term requests revise an alternative first answer: they go first, or not at all. A
    # revision that cannot be made (nothing the first answer lacks) gives way to the next option.
    chosen = sorted(options[:max_revisions], key=lambda k: k not in _WORD_KINDS)
    if "include_words" in chosen and "use_term" in chosen:
        chosen.remove("use_term")
    queue = chosen + [k for k in options if k not in chosen]
    current = primary
    for kind in queue:
        if len(turns) == max_revisions:
            break
        phrasing = rng.pick(REVISIONS[kind][inst])
        if kind in _WORD_KINDS:
            if turns or alt is None:
                continue
            if kind == "include_words":
                words = _missing_words(primary, alt[1], rng)
                if not words:
                    continue
                detail, request = {"words": words}, T.fill(phrasing, inst, words=_quote(words, inst))
            else:
                term = _missing_term(primary, alt[1], rng)
                if term is None:
                    continue
                detail, request = {"term": term}, T.fill(phrasing, inst, term=term)
            answer, lang_of_answer = primary, tgt
        elif kind == "another_language":
            other = rng.pick(others)
            answer, lang_of_answer = ex.texts[other], other
            detail, request = {"reference": answer, "lang": other}, T.fill_name(phrasing, inst, "lang", display_name(other, inst))
        else:
            label, text = rng.pick(regional)
            answer, lang_of_answer = text, tgt
            detail = {"reference": text, "variant": label}
            request = T.fill_name(phrasing, inst, "variant", variant_name(tgt, label, inst))
        previous = alt[1] if kind in _WORD_KINDS else current
        if not changes(previous, answer) or not holds(kind, answer, detail):
            continue  # a revision changes the answer, and satisfies its request
        if kind in _WORD_KINDS:
            first_answer = alt[1]
        turns.append((kind, request, answer, lang_of_answer, detail))
        current = answer
    if not turns:
        return None
    messages = [{"role": "user", "content": T.frame_text(template, src, tgt, inst, ex.texts[src])}, {"role": "assistant", "content": first_answer}]
    for _, request, answer, _, _ in turns:
        messages += [{"role": "user", "content": request}, {"role": "assistant", "content": answer}]
    lang = tgt if x in HUBS else x
    record = new_record(messages=messages, lang=lang, task="interactive_translation", source=source_name, license=license_,
                        src_lang=src, tgt_lang=tgt,
                        meta={**row.loc, "template": template.id, "instruction_lang": inst, "unit": ex.unit,
                              **({"joined_through": ex.joined.get(src) or ex.joined[tgt]} if {src, tgt} & set(ex.joined) else {}),
                              "revisions": [{"kind": k, **{d: v for d, v in det.items() if d != "reference"}} for k, _, _, _, det in turns]})
    set_content(record, [ex.texts[src], first_answer, *(a for _, _, a, _, _ in turns)])
    set_lid_checks(record, [("source", ex.texts[src], src), ("answer", first_answer, tgt),
                            *((f"revision{i + 1}", a, lang_a) for i, (_, _, a, lang_a, _) in enumerate(turns))])
    return record
