"""Prompts datakit sends for synthesis; kept here so the test server and the stages agree on them."""

from __future__ import annotations

from datakit.languages import display_name

TRANSLATOR_SYSTEM = "You are a professional translator. Translate faithfully and fluently."


def translation_messages(text: str, src_lang: str, tgt_lang: str) -> list[dict[str, str]]:
    """Ask for a translation of `text` (contract codes, e.g. eng_Latn -> swh_Latn), and nothing else.

    The text comes last, after a blank line, so a reader (or the test server) can take it back out.
    """
    src, tgt = display_name(src_lang), display_name(tgt_lang)
    return [
        {"role": "system", "content": TRANSLATOR_SYSTEM},
        {"role": "user", "content": f"Translate the following {src} text into {tgt}. "
                                    f"Reply with the translation only.\n\n{text}"},
    ]


def template_messages(template: str, tgt_lang: str) -> list[dict[str, str]]:
    """Ask for one of our English instruction templates in another language, placeholders kept.

    The template comes after the first blank line and runs to the end (it may hold blank lines).
    """
    tgt = display_name(tgt_lang)
    return [
        {"role": "system", "content": TRANSLATOR_SYSTEM},
        {"role": "user", "content": f"Translate the following English instruction template into {tgt}. "
                                    "Keep every placeholder in braces, such as {src}, {tgt} and {text}, exactly as it is: "
                                    "{src} and {tgt} stand for language names, {text} for the text to translate. "
                                    f"Reply with the translated template only.\n\n{template}"},
    ]

