"""General instruction sets: Alpaca, ShareGPT/messages and seed-task layouts -> conversations.

Each adapter reads a row (a dict) and returns an `Instruction`, or a `RawError` naming the field
that is missing or has the wrong type. Column names are the layout's usual ones; a source can
rename them with `columns:` (e.g. BELLE's eval set: `{instruction: question, output: std_answer}`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from datakit.recipe import Source
from datakit.sources import rows
from datakit.sources.base import Instruction, Item, Partition, RawError, RawRow, ReadContext, Unread

ROLES = {
    "user": "user", "human": "user", "prompt": "user", "question": "user",
    "assistant": "assistant", "gpt": "assistant", "bot": "assistant", "model": "assistant", "chatgpt": "assistant",
    "system": "system",
}


class FieldError(Exception):
    def __init__(self, reason: str, detail: str):
        self.reason, self.detail = reason, detail


def _raw(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)


def _text(row: dict, column: str, required: bool = True) -> str | None:
    if column not in row or row[column] is None:
        if required:
            raise FieldError("missing_field", f"field {column!r} is missing")
        return None
    value = row[column]
    if not isinstance(value, str):
        raise FieldError("wrong_type", f"field {column!r} is {type(value).__name__}, expected a string")
    return value


class RowAdapter:
    """Shared by every row-shaped layout: partitions and row reading come from `rows`."""

    defaults: dict[str, str] = {}

    def columns(self, source: Source) -> dict[str, str]:
        given = source.columns if isinstance(source.columns, dict) else {}
        return {**self.defaults, **given}

    def partitions(self, source: Source, ctx: ReadContext) -> list[Partition]:
        if source.lang is not None and not ctx.selected(source.lang):
            return []
        return rows.partitions(source, ctx)

    def read(self, source: Source, partition: Partition, ctx: ReadContext) -> Iterator[Item]:
        cols = self.columns(source)
        for item in rows.read_rows(source, partition, ctx):
            if isinstance(item, Unread):
                yield item
                continue
            if isinstance(item, RawError):
                item.lang = source.lang
                yield item
                continue
            loc, value = item
            if not isinstance(value, dict):
                yield RawError(loc, "not_an_object", _raw(value), source.lang, f"expected an object, found {type(value).__name__}")
                continue
            try:
                yield RawRow(loc, self.example(value, cols, source))
            except FieldError as e:
                yield RawError(loc, e.reason, _raw(value), source.lang, e.detail)

    def example(self, row: dict, cols: dict[str, str], source: Source) -> Any:
        raise NotImplementedError


class Alpaca(RowAdapter):
    """`instruction`, optional `input`, `output`; optional `system` and `history` ([[q, a], ...])."""

    defaults = {"instruction": "instruction", "input": "input", "output": "output", "system": "system", "history": "history"}

    def example(self, row: dict, cols: dict[str, str], source: Source) -> Instruction:
        instruction = _text(row, cols["instruction"])
        extra = _text(row, cols["input"], required=False)
        output = _text(row, cols["output"])
        system = _text(row, cols["system"], required=False)
        messages = [{"role": "system", "content": system}] if system else []
        history = row.get(cols["history"]) or []
        if not isinstance(history, list) or not all(isinstance(t, (list, tuple)) and len(t) == 2 and all(isinstance(x, str) for x in t) for t in history):
            raise FieldError("wrong_type", f"field {cols['history']!r} must be a list of [question, answer] pairs")
        for question, answer in history:
            messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
        prompt = f"{instruction}\n\n{extra}" if extra and extra.strip() else instruction
        messages += [{"role": "user", "content": prompt}, {"role": "assistant", "content": output}]
        return Instruction(source.lang, [messages])


class Messages(RowAdapter):
    """A list of turns: OpenAI `messages` ({role, content}) or ShareGPT `conversations` ({from, value})."""

    def example(self, row: dict, cols: dict[str, str], source: Source) -> Instruction:
        column = cols.get("messages") or next((c for c in ("messages", "conversations", "conversation") if c in row), "messages")
        turns = row.get(column)
        if turns is None:
            raise FieldError("missing_field", f"field {column!r} is missing")
        if not isinstance(turns, list) or not turns:
            raise FieldError("wrong_type", f"field {column!r} must be a non-empty list of turns")
        messages = []
        for i, turn in enumerate(turns):
            if not isinstance(turn, dict):
                raise FieldError("wrong_type", f"turn {i} of {column!r} is not an object")
            role_key = cols.get("role") or ("role" if "role" in turn else "from")
            content_key = cols.get("content") or ("content" if "content" in turn else "value")
            role = ROLES.get(str(turn.get(role_key, "")).lower())
            if role is None:
                raise FieldError("unknown_role", f"turn {i} has role {turn.get(role_key)!r}")
            content = turn.get(content_key)
            if not isinstance(content, str):
                raise FieldError("wrong_type", f"turn {i} has no text in {content_key!r}")
            messages.append({"role": role, "content": content})
        return Instruction(source.lang, [messages])


class SeedTasks(RowAdapter):
    """Self-Instruct seed tasks: an `instruction` and `instances` [{input, output}], one conversation each."""

    defaults = {"instruction": "instruction", "instances": "instances"}

    def example(self, row: dict, cols: dict[str, str], source: Source) -> Instruction:
        instruction = _text(row, cols["instruction"])
        instances = row.get(cols["instances"])
        if not isinstance(instances, list) or not instances:
            raise FieldError("missing_field" if instances is None else "wrong_type", f"field {cols['instances']!r} must be a non-empty list")
        conversations = []
        for i, inst in enumerate(instances):
            if not isinstance(inst, dict) or not isinstance(inst.get("output"), str) or not isinstance(inst.get("input", ""), str):
                raise FieldError("wrong_type", f"instance {i} needs string `input` and `output`")
            extra = inst.get("input") or ""
            prompt = f"{instruction}\n\n{extra}" if extra.strip() else instruction
            conversations.append([{"role": "user", "content": prompt}, {"role": "assistant", "content": inst["output"]}])
        return Instruction(source.lang, conversations)
