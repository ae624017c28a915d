"""Chat formats, and which tokens of a conversation are trained.

A format is a Jinja chat template: the model's own (`tokenizer.chat_template`), or one of BayLing's:

- `bayling`  (BayLing 1 on Llama(-2)): `<s>{system}\\n\\n### Instruction:\\n{user}\\n### Response:\\n{answer}</s>`
             then `\\n### Instruction:\\n...` for the next turn.
- `bayling3` (Llama-3 header format): `<|begin_of_text|><|start_header_id|>system<|end_header_id|>\\n\\n{system}
             <|eot_id|><|start_header_id|>user<|end_header_id|>\\n\\n{user}<|eot_id|>` ... `{answer}<|eot_id|>`.

Labels come from character offsets of one rendering. For each assistant message i, the text
`render(messages[:i], add_generation_prompt)` is prompt and the rest of `render(messages[:i+1])` is the answer
(its content plus the end-of-turn token): that gives the answers' character spans in the full rendering. The full
text is tokenized once (as the model reads it), and a token is trained when its first character lies in an answer
span. Tokenizing the pieces one by one instead would tokenize each answer as the start of a text: with a
SentencePiece vocabulary (Metaspace, prepend_scheme "first": Llama-2, Mistral) every answer would then begin with
a stray "▁" token the model never sees in context. Every assistant turn of a multi-turn conversation is trained.
The template writes BOS itself; the text is tokenized without special tokens, so BOS is never doubled.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BAYLING_SYSTEM = (
    "I am an intelligent language assistant developed by the NLP Group of ICT/CAS.\n"
    "Below is a dialog consisting of instructions and responses. Write a response that completes the request."
)

# `default_system` is baked in (see `_with_default_system`) so a saved template renders alone at inference.
_BAYLING = (
    "{%- if messages[0]['role'] == 'system' -%}{%- set sys = messages[0]['content'] -%}"
    "{%- set msgs = messages[1:] -%}{%- else -%}{%- set sys = default_system -%}{%- set msgs = messages -%}{%- endif -%}"
    "{%- if bos_token -%}{{ bos_token }}{%- endif -%}"
    "{%- if sys -%}{{ sys + '\\n\\n' }}{%- endif -%}"
    "{%- for m in msgs -%}"
    "{%- if m['role'] == 'user' -%}{{ ('' if loop.first else '\\n') + '### Instruction:\\n' + m['content'] + '\\n' }}"
    "{%- elif m['role'] == 'assistant' -%}{{ '### Response:\\n' + m['content'] + eos_token }}"
    "{%- else -%}{{ raise_exception('bayling: unexpected role ' + m['role']) }}{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '### Response:\\n' }}{%- endif -%}"
)
_BAYLING3 = (
    "{%- if messages[0]['role'] == 'system' -%}{%- set sys = messages[0]['content'] -%}"
    "{%- set msgs = messages[1:] -%}{%- else -%}{%- set sys = default_system -%}{%- set msgs = messages -%}{%- endif -%}"
    "{%- if bos_token -%}{{ bos_token }}{%- endif -%}"
    "{%- if sys -%}{{ '<|start_header_id|>system<|end_header_id|>\\n\\n' + sys | trim + '<|eot_id|>' }}{%- endif -%}"
    "{%- for m in msgs -%}"
    "{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\\n\\n' + m['content'] | trim + '<|eot_id|>' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif -%}"
)
BUILTIN = {"bayling": _BAYLING, "bayling3": _BAYLING3}
# Text the tokenizer must know as single tokens for the format to mean what it says.
_MARKER = re.compile(r"<\|[^|<>\s]+\|>|</?s>")


class TemplateError(ValueError):
    """The chat format cannot be used with this tokenizer or this conversation."""


@dataclass(frozen=True)
class ChatFormat:
    name: str  # model | bayling | bayling3 | a file path
    source: str  # Jinja source, self-contained
    end_of_turn: str  # the text that closes an assistant turn (trained): "</s>", "<|eot_id|>", ...

    def render(self, tokenizer: Any, messages: list[dict], add_generation_prompt: bool = False) -> str:
        return tokenizer.apply_chat_template(messages, chat_template=self.source, tokenize=False,
                                             add_generation_prompt=add_generation_prompt)

    def prompt(self, tokenizer: Any, messages: list[dict]) -> str:
        """The text a model is given to answer the last user turn (for generation)."""
        return self.render(tokenizer, messages, add_generation_prompt=True)


def _with_default_system(source: str, system: str) -> str:
    # JSON string literals are valid Jinja string literals once non-ASCII is escaped.
    return "{%- set default_system = " + json.dumps(system, ensure_ascii=True) + " -%}" + source


def _with_system_message(source: str, system: str) -> str:
    """Give a model's own template a system prompt when the conversation has none."""
    literal = json.dumps(system, ensure_ascii=True)
    return ("{%- if messages and messages[0]['role'] != 'system' -%}{%- set messages = "
            "[{'role': 'system', 'content': " + literal + "}] + messages -%}{%- endif -%}" + source)


def resolve_format(template: str, tokenizer: Any, system_prompt: str | None = None) -> ChatFormat:
    """Pick the chat format for `template` (auto | model | bayling | bayling3 | path.jinja) and check it fits."""
    name = template
    if template == "auto":
        name = "model" if getattr(tokenizer, "chat_template", None) else "bayling"
    if name == "model":
        source = getattr(tokenizer, "chat_template", None)
        if not source:
            raise TemplateError("template 'model': this tokenizer has no chat template; "
                                "use template: bayling (or bayling3 for a Llama-3 vocabulary)")
        if isinstance(source, dict):  # several named templates: the default one
            source = source.get("default") or next(iter(source.values()))
        if system_prompt:
            source = _with_system_message(source, system_prompt)
    elif name in BUILTIN:
        system = BAYLING_SYSTEM if system_prompt is None else system_prompt
        source = _with_default_system(BUILTIN[name], system)
    else:
        path = Path(template)
        if not path.is_file():
            raise TemplateError(f"template {template!r}: no such file")
        source = path.read_text(encoding="utf-8")
        if system_prompt:
            source = _with_system_message(source, system_prompt)
    fmt = ChatFormat(name=name, source=source, end_of_turn="")
    return ChatFormat(name=name, source=source, end_of_turn=_check_format(fmt, tokenizer))


def _check_format(fmt: ChatFormat, tokenizer: Any) -> str:
    """Render a probe conversation: every marker must be one token, and an answer must end with one. Returns it."""
    probe = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    try:
        text = fmt.render(tokenizer, probe)
        prompt = fmt.prompt(tokenizer, probe[:1])
    except Exception as e:  # a Jinja error or raise_exception from the template itself
        raise TemplateError(f"template {fmt.name!r} does not render a simple conversation: {e}") from e
    for marker in sorted(set(_MARKER.findall(text))):
        ids = tokenizer(marker, add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            raise TemplateError(
                f"model/template mismatch: template {fmt.name!r} writes {marker!r}, which the tokenizer "
                f"{getattr(tokenizer, 'name_or_path', '') or ''} splits into {len(ids)} tokens, so it is not a token "
                "of this model; use the model's own template (template: model) or one made for its vocabulary")
    if not text.startswith(prompt):
        raise TemplateError(f"template {fmt.name!r}: the generation prompt is not a prefix of the conversation")
    answer = text[len(prompt):]
    start = answer.find("Hello")
    end_of_turn = answer[start + len("Hello"):].strip() if start >= 0 else ""
    if not end_of_turn:
        raise TemplateError(f"template {fmt.name!r} ends an assistant turn with no end-of-turn token, so a model "
                            "trained on it would not learn to stop")
    return end_of_turn


def conversation_pieces(fmt: ChatFormat, tokenizer: Any, messages: list[dict]) -> list[tuple[str, bool]]:
    """Split the rendered conversation into (text, trained) pieces; their concatenation is the full rendering.

    Messages after the last assistant turn are dropped (nothing to learn from them).
    """
    pieces: list[tuple[str, bool]] = []
    done = ""
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt = fmt.render(tokenizer, messages[:i], add_generation_prompt=True)
        full = fmt.render(tokenizer, messages[: i + 1])
        if not prompt.startswith(done) or not full.startswith(prompt):
            raise TemplateError(
                f"template {fmt.name!r} is not prefix-stable: rendering turn {i} changes the text of earlier turns "
                "(e.g. a template that drops past reasoning), so turns cannot be labelled separately; "
                "use template: bayling3 or bayling, or a template file that renders turns independently")
        pieces.append((prompt[len(done):], False))
        pieces.append((full[len(prompt):], True))
        done = full
    return pieces


def _trained_flags(offsets: list[tuple[int, int]], pieces: list[tuple[str, bool]]) -> list[bool]:
    """A token is trained when its first character lies in a trained piece (of the pieces' concatenation)."""
    bounds, trained, t = [], [], 0
    for text, is_trained in pieces:
        t += len(text)
        bounds.append(t)
        trained.append(is_trained)
    flags = []
    k = 0
    for start, _ in offsets:
        while k < len(bounds) - 1 and start >= bounds[k]:
            k += 1
        flags.append(trained[k])
    return flags


def tokenize_conversations(fmt: ChatFormat, tokenizer: Any, conversations: list[list[dict]]
                           ) -> list[tuple[list[int], list[bool]]]:
    """Token ids and a trained-flag per token for each conversation (empty for one with no assistant turn)."""
    if not getattr(tokenizer, "is_fast", False):
        raise TemplateError("labels come from character offsets, which only fast (Rust) tokenizers give; "
                            "load the model's tokenizer.json (AutoTokenizer with use_fast=True)")
    all_pieces = [conversation_pieces(fmt, tokenizer, msgs) for msgs in conversations]
    texts = ["".join(text for text, _ in pieces) for pieces in all_pieces]
    encoded = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True) if texts else None
    bos = getattr(tokenizer, "bos_token_id", None)
    out = []
    for k, pieces in enumerate(all_pieces):
        if not pieces:
            out.append(([], []))
            continue
        ids = list(encoded["input_ids"][k])
        if bos is not None and len(ids) > 1 and ids[0] == bos and ids[1] == bos:
            raise TemplateError(f"template {fmt.name!r} starts with BOS twice; the model would train on a double BOS")
        out.append((ids, _trained_flags(encoded["offset_mapping"][k], pieces)))
    return out
