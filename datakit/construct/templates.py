"""Instruction templates for translation, written by us in English and Chinese.

Varied in wording and layout (instruction first or last, labelled fields, a terse pair, a polite
request), because a model tuned on one phrasing learns the phrasing. Languages are named by
their names in the template's own language (`datakit.languages.display_name`); `fill` makes the
frame agree with the name: "an English translation", and in Chinese a name kept in Latin letters
(a language Chinese has no name for) set off from the Han characters by spaces, as Chinese
typesetting does with embedded Latin words. Sentence templates say "sentence"; document templates
ask to keep the paragraphs; `any` fits both.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Literal

import regex

from datakit.languages import display_name, indefinite_article
from datakit.records import Draws


@dataclass(frozen=True)
class Template:
    id: str
    lang: str
    unit: Literal["sentence", "document", "any"]
    text: str
    # Its frames cut where the text goes, per (source, target, instruction language): filled in by
    # `frame_parts`, looked up here rather than through a cache keyed (and hashed) by the template.
    cut: dict[tuple[str, str, str], tuple[str, ...]] = field(default_factory=dict, init=False, repr=False, compare=False)

    def render(self, **fields: str) -> str:
        return fill(self.text, self.lang, **fields)


# Fields that hold a language's name: the frame around them agrees with the name.
NAME_FIELDS = frozenset({"src", "tgt", "lang", "variant"})
_FIELD = regex.compile(r"\{(\w+)\}")
_ARTICLE = regex.compile(r"\b([Aa])n? \{(\w+)\}")
_NARROW = regex.compile(r"[^\p{Han}\s\u3000-\u303f\uff00-\uffef]")  # Latin letters, digits, ASCII punctuation
_HAN = regex.compile(r"\p{Han}")


def fill(text: str, frame_lang: str, /, **fields: str) -> str:
    """`text` with every `{field}` replaced (a KeyError names a field left unfilled). In English
    frames "a {tgt}" takes the article its name needs; in Chinese frames a name in Latin letters
    is spaced from the Han characters next to it ("翻译成 Achuar-Shiwiar，谢谢")."""

    def article(m: regex.Match) -> str:
        if m[2] not in NAME_FIELDS:
            return m[0]
        return f"{m[1]}{'n' if indefinite_article(fields[m[2]]) == 'an' else ''} {{{m[2]}}}"

    if frame_lang == "eng_Latn":
        text = _ARTICLE.sub(article, text)

    def value(m: regex.Match) -> str:
        v = fields[m[1]]
        if frame_lang.startswith("zho_") and m[1] in NAME_FIELDS and v:
            before, after = text[m.start() - 1 : m.start()], text[m.end() : m.end() + 1]
            if _NARROW.match(v[0]) and _HAN.match(before):
                v = " " + v
            if _NARROW.match(v[-1]) and _HAN.match(after):
                v = v + " "
        return v

    return _FIELD.sub(value, text)


@functools.lru_cache(maxsize=4096)
def fill_name(text: str, frame_lang: str, field: str, name: str) -> str:
    """`fill(text, frame_lang, **{field: name})` for a sentence whose one field is a language's
    name (an interactive revision request): few of them, so each is filled once, not per record."""
    return fill(text, frame_lang, **{field: name})


# Templates in other languages, made by the LLM step (construct/native.py): language -> templates.
NativeTemplates = dict[str, tuple[Template, ...]]

_EN = "eng_Latn"
_ZH = "zho_Hans"

TRANSLATION = [
    Template("en-s01", _EN, "sentence", "Translate the following {src} sentence into {tgt}.\n\n{text}"),
    Template("en-a02", _EN, "any", "Translate from {src} to {tgt}:\n{text}"),
    Template("en-a03", _EN, "any", "{text}\n\nTranslate the text above into {tgt}."),
    Template("en-s04", _EN, "sentence", "What is the {tgt} translation of this {src} sentence?\n\n{text}"),
    Template("en-a05", _EN, "any", "Please provide a {tgt} translation of the following {src} text.\n\n{text}"),
    Template("en-s06", _EN, "sentence", "{src}: {text}\n{tgt}:"),
    Template("en-a07", _EN, "any", "I need this in {tgt}. Could you translate it for me?\n\n{text}"),
    Template("en-a08", _EN, "any", "Render the following {src} text in {tgt}, keeping its meaning and tone.\n\n{text}"),
    Template("en-a09", _EN, "any", "Source language: {src}\nTarget language: {tgt}\nText:\n{text}\n\nTranslate the text."),
    Template("en-s10", _EN, "sentence", "How would you say this in {tgt}?\n{text}"),
    Template("en-d11", _EN, "document", "Translate the following {src} passage into {tgt}, keeping its paragraphs.\n\n{text}"),
    Template("en-d12", _EN, "document", "Here is a document in {src}:\n\n{text}\n\nTranslate the whole document into {tgt}."),
    Template("zh-s01", _ZH, "sentence", "将下面的{src}句子翻译成{tgt}。\n\n{text}"),
    Template("zh-a02", _ZH, "any", "请把以下{src}文本翻译为{tgt}：\n{text}"),
    Template("zh-a03", _ZH, "any", "{text}\n\n把上面这段话翻译成{tgt}。"),
    Template("zh-s04", _ZH, "sentence", "这句{src}用{tgt}怎么说？\n\n{text}"),
    Template("zh-a05", _ZH, "any", "请提供下文的{tgt}译文：\n\n{text}"),
    Template("zh-s06", _ZH, "sentence", "{src}：{text}\n{tgt}："),
    Template("zh-a07", _ZH, "any", "帮我把这段{src}翻译成{tgt}，谢谢。\n\n{text}"),
    Template("zh-a08", _ZH, "any", "将以下{src}内容译为{tgt}，保持原意和语气。\n\n{text}"),
    Template("zh-a09", _ZH, "any", "源语言：{src}\n目标语言：{tgt}\n原文：\n{text}\n\n请翻译上述原文。"),
    Template("zh-s10", _ZH, "sentence", "翻译成{tgt}：{text}"),
    Template("zh-d11", _ZH, "document", "请将下面这篇{src}文章翻译成{tgt}，保留段落结构。\n\n{text}"),
    Template("zh-d12", _ZH, "document", "以下是一份{src}文件：\n\n{text}\n\n请将全文翻译成{tgt}。"),
]

# Cross-lingual QA: the passage (or problem) in one language, the question and answer in another.
QA_EXTRACTIVE = [
    Template("en-q01", _EN, "any", "Read the {src} passage below and answer the question in {tgt}.\n\nPassage:\n{context}\n\nQuestion: {question}"),
    Template("en-q02", _EN, "any", "{context}\n\nBased on the text above, answer in {tgt}: {question}"),
    Template("en-q03", _EN, "any", "Question: {question}\nAnswer it briefly in {tgt}, using this {src} text:\n{context}"),
    Template("zh-q01", _ZH, "any", "阅读下面的{src}短文，并用{tgt}回答问题。\n\n短文：\n{context}\n\n问题：{question}"),
    Template("zh-q02", _ZH, "any", "{context}\n\n根据上文，用{tgt}回答：{question}"),
    Template("zh-q03", _ZH, "any", "问题：{question}\n请根据这段{src}文字，用{tgt}简短作答：\n{context}"),
]

QA_MATH = [
    Template("en-m01", _EN, "any", "Solve this math problem written in {src}. Give the final answer in {tgt}.\n\n{question}"),
    Template("en-m02", _EN, "any", "{question}\n\nWork out the answer and reply in {tgt}."),
    Template("zh-m01", _ZH, "any", "解答下面这道用{src}写的数学题，并用{tgt}给出最终答案。\n\n{question}"),
    Template("zh-m02", _ZH, "any", "{question}\n\n请算出答案，用{tgt}回答。"),
]

# The answer sentence around a number, in the language the instruction asked for.
MATH_ANSWER = {_EN: "The answer is {answer}.", _ZH: "答案是 {answer}。"}


def frame_names(src_lang: str, tgt_lang: str, inst_lang: str) -> dict[str, str]:
    """The language names a frame in `inst_lang` fills in: one function for building, interactive
    records and re-framing repeats, so a frame can be taken apart again (construct/rerender.py)."""
    return {"src": display_name(src_lang, inst_lang), "tgt": display_name(tgt_lang, inst_lang)}


SLOT = "\x00"  # stands for the text while a frame is filled; never in a template


def frame_parts(template: Template, src_lang: str, tgt_lang: str, inst_lang: str) -> tuple[str, ...]:
    """The template with its language names filled in, cut where `{text}` goes. The names and the
    spacing around them do not depend on the text, so a frame is filled once per template and
    language pair (kept in `template.cut`), not once per record (filling was a tenth of construction)."""
    key = (src_lang, tgt_lang, inst_lang)
    parts = template.cut.get(key)
    if parts is None:
        if SLOT in template.text:
            raise ValueError(f"template {template.id} holds a NUL character")
        parts = template.cut[key] = tuple(template.render(**frame_names(src_lang, tgt_lang, inst_lang), text=SLOT).split(SLOT))
    return parts


def frame_text(template: Template, src_lang: str, tgt_lang: str, inst_lang: str, text: str) -> str:
    """`template.render(**frame_names(src_lang, tgt_lang, inst_lang), text=text)`, from the cut frame."""
    return text.join(frame_parts(template, src_lang, tgt_lang, inst_lang))


# (list, language, unit) -> the fitting templates, for this module's lists (each is held here, so
# its id stays its own).
_FITTING: dict[tuple[int, str, str], tuple[list[Template], list[Template]]] = {}


def fitting(templates: list[Template], lang: str, unit: str) -> list[Template]:
    """The templates of `templates` in `lang` that fit the unit, worked out once per list, language
    and unit."""
    key = (id(templates), lang, unit)
    known = _FITTING.get(key)
    if known is None or known[0] is not templates:
        known = _FITTING[key] = (templates, [t for t in templates if t.lang == lang and t.unit in (unit, "any")])
    return known[1]


def choose(templates: list[Template], lang: str, unit: str, rng: Draws) -> Template:
    """A template in `lang` that fits the unit, picked by the row's own seeded draws."""
    return rng.pick(fitting(templates, lang, unit))
