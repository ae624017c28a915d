"""The builders: one function per example type, each returning the records a raw row makes."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from datakit.construct import templates as T
from datakit.construct.interactive import interactive
from datakit.construct.templates import NativeTemplates, Template
from datakit.languages import HUBS
from datakit.recipe import Recipe, Source
from datakit.records import (
    Draws,
    Record,
    RowSeed,
    new_record,
    seeded_rng,
    set_content,
    set_lid_checks,
)
from datakit.sources.base import Instruction, Parallel, QAItem, RawRow, Synthesised
from datakit.text import normalise_text


@dataclass
class Rejected:
    """A candidate record that construction could not complete, with the reason."""

    record: Record
    reason: str


Built = Record | Rejected


def _record(source: Source, row: RawRow, **fields) -> Record:
    meta = {**row.loc, **fields.pop("meta", {})}
    return new_record(source=source.name, license=source.license, meta=meta, **fields)


def _qa_dedup(record: Record, question: str, answer: str, passage: str) -> None:
    """A QA record is its question and answer: many questions share one passage, and are not
    duplicates of each other; questions are compared only with questions on the same passage."""
    set_content(record, [question, answer], scope=passage)


def _blank(text: str) -> bool:
    """Whether the text is empty once normalised. A text whose first non-space character is
    printable is not: normalising only drops control characters (never printable) and spaces, and
    no printable character composes to nothing, so nearly every text is answered without
    normalising it (one normalisation per text and direction was a twentieth of construction)."""
    stripped = text.lstrip()
    if stripped and stripped[0].isprintable():
        return False
    return not normalise_text(text, "NFC")


def _turns(user: str, assistant: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]


def general(ex: Instruction, row: RawRow, source: Source, recipe: Recipe) -> list[Built]:
    return [_record(source, row, messages=conv, lang=ex.lang, task="general",
                    meta={"conversation": i} if len(ex.conversations) > 1 else {})
            for i, conv in enumerate(ex.conversations)]


def translation_pairs(ex: Parallel, pivots: list[str], directions: list[str]) -> list[tuple[str, str]]:
    """(source, target) languages around the pivots: X->pivot and pivot->X, or the pivot pair itself."""
    pairs = []
    if ex.focus in HUBS:
        others = [p for p in pivots if p != ex.focus and p in ex.texts]
        for other in others:
            if "to_pivot" in directions:
                pairs.append((ex.focus, other))
            if "from_pivot" in directions:
                pairs.append((other, ex.focus))
        return pairs
    for pivot in pivots:
        if pivot in ex.texts:
            if "to_pivot" in directions:
                pairs.append((ex.focus, pivot))
            if "from_pivot" in directions:
                pairs.append((pivot, ex.focus))
    return pairs


def frame(own: list[Template], share: float, langs: list[str], hub_frames: dict[str, list[Template]], rng: Draws) -> Template:
    """The template around a translation: for a `share` of the records of a language X with native
    templates (`own`: those of X that fit the row's unit), one written in X; otherwise one in a hub
    language (`langs`, the recipe's `instruction_langs`; `hub_frames`: each one's templates that fit
    the unit, as `templates.choose` picks among them). The extra draw happens only where X has
    native templates, so other records are framed as before."""
    if own and rng.random() < share:
        return rng.pick(own)
    return rng.pick(hub_frames[rng.pick(langs)])


@functools.lru_cache(maxsize=64)
def _hub_frames(langs: tuple[str, ...], unit: str) -> dict[str, list[Template]]:
    """Each hub instruction language's translation templates that fit the unit (what `frame` picks
    among, as `templates.choose` would): worked out once per recipe and unit, not once per row."""
    return {lang: T.fitting(T.TRANSLATION, lang, unit) for lang in langs}


def translation(ex: Parallel, row: RawRow, source: Source, recipe: Recipe, native: NativeTemplates,
                row_seed: RowSeed | None = None) -> list[Built]:
    """Translation records for each direction around the pivots. What every direction of a row
    shares is worked out once per row: whether each text is blank, the row's native templates, the
    head of its draws' key (`row_seed`, which `parallel` shares with the interactive record)."""
    cfg = recipe.construction.translation
    pairs = translation_pairs(ex, recipe.pivots, cfg.directions)
    if not pairs and cfg.non_pivot_pairs:  # X<->Y, when the recipe asks for it
        others = sorted(c for c in ex.texts if c != ex.focus)
        pairs = [p for other in others for p in ((ex.focus, other), (other, ex.focus))]
    if not pairs:
        stub = _record(source, row, messages=[], lang=ex.focus, task="translation", meta={"text": ex.texts.get(ex.focus, "")[:1024]})
        return [Rejected(stub, "no_pivot_text")]
    texts, focus, unit, loc = ex.texts, ex.focus, ex.unit, row.loc
    focus_is_hub = focus in HUBS
    blank = {c: _blank(text) for c, text in texts.items()}  # every pair's languages are the row's
    own = [t for t in native.get(focus, ()) if t.unit in (unit, "any")]
    seeds = row_seed or RowSeed(recipe.seed, source.name, loc)
    share, langs = recipe.construction.native_templates.share, cfg.instruction_langs
    hub_frames = _hub_frames(tuple(langs), unit)
    out: list[Built] = []
    for src, tgt in pairs:
        source_text, target_text = texts[src], texts[tgt]
        if blank[src] or blank[tgt]:
            # The template around an empty source would hide it from the empty-text check.
            stub = _record(source, row, messages=_turns(source_text, target_text), lang=focus if not focus_is_hub else tgt,
                           task="translation", src_lang=src, tgt_lang=tgt)
            out.append(Rejected(stub, "empty_text"))
            continue
        template = frame(own, share, langs, hub_frames, seeds.draws(src, tgt))
        inst_lang = template.lang
        lang = tgt if focus_is_hub or src not in HUBS and tgt not in HUBS else focus
        meta = {**loc, "template": template.id, "instruction_lang": inst_lang, "unit": unit}
        if ex.joined and (joined := ex.joined.get(src) or ex.joined.get(tgt)):
            meta["joined_through"] = joined
        record = new_record(messages=_turns(T.frame_text(template, src, tgt, inst_lang, source_text), target_text),
                            lang=lang, task="translation", source=source.name, license=source.license,
                            src_lang=src, tgt_lang=tgt, meta=meta)
        # Duplicates are the same pair of texts, whatever template framed them; LID checks each side.
        set_content(record, [source_text, target_text])
        set_lid_checks(record, [("source", source_text, src), ("answer", target_text, tgt)])
        out.append(record)
    return out


def qa(ex: QAItem, row: RawRow, source: Source, recipe: Recipe) -> list[Built]:
    cfg = recipe.construction.qa
    x = ex.focus
    out: list[Built] = []
    if _blank(ex.question[x]) or _blank(ex.answer[x]) or (ex.kind == "extractive" and _blank(ex.context.get(x, ""))):
        stub = _record(source, row, messages=_turns(ex.question[x], ex.answer[x]), lang=x, task="cross_lingual_qa")
        return [Rejected(stub, "empty_text")]
    if cfg.same_language:
        user = f"{ex.context[x]}\n\n{ex.question[x]}" if ex.kind == "extractive" else ex.question[x]
        record = _record(source, row, messages=_turns(user, ex.answer[x]), lang=x, task="cross_lingual_qa",
                         meta={"variant": "same_language", "kind": ex.kind})
        # Extractive answers are spans of the passage (names, numbers): the passage is checked instead.
        set_lid_checks(record, [("question", ex.question[x], x)] + ([("context", ex.context[x], x)] if ex.kind == "extractive" else []))
        _qa_dedup(record, ex.question[x], ex.answer[x], ex.context.get(x, ""))
        out.append(record)
    if cfg.cross_lingual:
        for pivot in recipe.pivots:
            if pivot == x or pivot not in ex.answer:
                continue
            rng = seeded_rng(recipe.seed, source.name, row.loc, x, pivot)
            if ex.kind == "extractive":
                template = T.choose(T.QA_EXTRACTIVE, pivot, "any", rng)
                user = template.render(**T.frame_names(x, pivot, pivot),
                                       context=ex.context[x], question=ex.question[pivot])
                answer = ex.answer[pivot]
            else:
                template = T.choose(T.QA_MATH, pivot, "any", rng)
                user = template.render(**T.frame_names(x, pivot, pivot), question=ex.question[x])
                answer = T.MATH_ANSWER[pivot].format(answer=ex.answer[x])
            record = _record(source, row, messages=_turns(user, answer), lang=x, task="cross_lingual_qa",
                             src_lang=x, tgt_lang=pivot,
                             meta={"variant": "cross_lingual", "kind": ex.kind, "template": template.id, "instruction_lang": pivot})
            given = ex.context[x] if ex.kind == "extractive" else ex.question[x]
            checks = [("context" if ex.kind == "extractive" else "question", given, x)]
            set_lid_checks(record, checks + [("answer", answer, pivot)] * (ex.kind == "math"))
            _qa_dedup(record, ex.question[pivot] if ex.kind == "extractive" else ex.question[x], answer, ex.context.get(x, ""))
            out.append(record)
    return out


def parallel(ex: Parallel, row: RawRow, source: Source, recipe: Recipe, native: NativeTemplates) -> list[Built]:
    """Translation records around the pivots, and for a share of the rows an interactive record."""
    row_seed = RowSeed(recipe.seed, source.name, row.loc)
    built = translation(ex, row, source, recipe, native, row_seed)
    cfg = recipe.construction
    if cfg.interactive.share > 0 and Rejected not in map(type, built):  # every direction made
        record = interactive(ex, row, source.name, source.license, recipe.seed, recipe.pivots,
                             cfg.translation.instruction_langs, cfg.interactive.max_revisions, cfg.interactive.share,
                             row_seed=row_seed)
        if record is not None:
            built.append(record)
    return built


def synthesised(ex: Synthesised, row: RawRow, source: Source, recipe: Recipe) -> list[Built]:
    record = _record(source, row, messages=ex.conversation, lang=ex.lang, task="synthesised",
                     meta={**ex.origin, **ex.generation})
    # Checked like a translation: the answer against the one it was translated from (length, numbers).
    set_content(record, [ex.source_conversation[-1]["content"], ex.conversation[-1]["content"]])
    set_lid_checks(record, [("prompt", ex.conversation[0]["content"], ex.lang), ("answer", ex.conversation[-1]["content"], ex.lang)])
    return [record]


BUILDERS = {Instruction: general, QAItem: qa, Synthesised: synthesised}


def build(row: RawRow, source: Source, recipe: Recipe, native: NativeTemplates | None = None) -> list[Built]:
    """The records (and rejected candidates) one raw row makes; `native` holds the templates in
    languages other than zh/en that the LLM step made (construct/native.py), if any."""
    if isinstance(row.example, Parallel):
        return parallel(row.example, row, source, recipe, native or {})
    return BUILDERS[type(row.example)](row.example, row, source, recipe)
