"""Question answering sets parallel across languages: MGSM-style TSV and SQuAD-style JSON.

One file per language (`files` names the language); questions are aligned across files by line
(TSV) or by question id (SQuAD). Each language's partition yields that language's questions with
the pivots' versions of the same question beside them, for the cross-lingual variants.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from datakit import languages
from datakit.errors import SourceError, UnknownLanguageError
from datakit.recipe import Source
from datakit.sources import files, rows
from datakit.sources.base import Item, Partition, QAItem, RawError, RawRow, ReadContext, Unread


def _per_language_files(source: Source, ctx: ReadContext) -> dict[str, Path]:
    root = rows.local_root(source, ctx)
    found: dict[str, Path] = {}
    for path, match in rows.matching_files(source, root):
        assert match is not None
        try:
            code = languages.code(match.group("lang"))
        except UnknownLanguageError as e:
            raise SourceError(f"source {source.name!r}: {rows.relative(path, ctx)}: {e}") from None
        if code in found:
            raise SourceError(f"source {source.name!r}: two files for {code}: {found[code].name} and {path.name}")
        found[code] = path
    return found


def _partitions(source: Source, ctx: ReadContext) -> list[Partition]:
    found = _per_language_files(source, ctx)
    pivots = {p: str(found[p]) for p in ctx.pivots if p in found}
    return [
        Partition(source.name, code, {"file": str(path), "pivots": pivots}, (code,))
        for code, path in sorted(found.items())
        if ctx.selected(code)
    ]


class TsvQA:
    """`question<TAB>answer` per line (MGSM); the answer is kept exactly as the reference writes it."""

    def partitions(self, source: Source, ctx: ReadContext) -> list[Partition]:
        return _partitions(source, ctx)

    def _rows(self, path: Path, limit: int | None) -> Iterator[tuple[dict, list[str] | dict] | RawError]:
        for n, item in enumerate(files.iter_csv(path, "\t", header=False, columns=["question", "answer"])):
            if limit is not None and n >= limit:
                return
            yield item

    def read(self, source: Source, partition: Partition, ctx: ReadContext) -> Iterator[Item]:
        focus = partition.langs[0]
        path = Path(partition.params["file"])
        pivot_rows = {code: {loc["line"]: row for loc, row in (r for r in self._rows(Path(p), None) if not isinstance(r, RawError))}
                      for code, p in partition.params["pivots"].items() if code != focus}
        for item in self._rows(path, ctx.sample):
            if isinstance(item, RawError):
                item.loc["file"], item.lang = rows.relative(path, ctx), focus
                yield item
                continue
            loc, row = item
            loc["file"] = rows.relative(path, ctx)
            question = {focus: row["question"]}
            answer = {focus: row["answer"]}
            for code, by_line in pivot_rows.items():
                if loc["line"] in by_line:
                    question[code] = by_line[loc["line"]]["question"]
                    answer[code] = by_line[loc["line"]]["answer"]
            yield RawRow(loc, QAItem(focus, "math", question, answer))


class Squad:
    """SQuAD v1.1 JSON (XQuAD): paragraphs with questions and answer spans, aligned by question id.

    A SQuAD file is one JSON document, not a list of rows, so each file is parsed whole; such files
    are evaluation-sized. Large SQuAD-shaped data on the Hub comes as rows (id, context, question,
    answers) and is read row by row.
    """

    def partitions(self, source: Source, ctx: ReadContext) -> list[Partition]:
        if source.hub is not None:
            if source.lang is None:
                raise SourceError(f"source {source.name!r}: a Hub SQuAD source needs `lang`")
            return rows.partitions(source, ctx)
        return _partitions(source, ctx)

    @staticmethod
    def _questions(path: Path) -> dict[str, tuple[str, str, str] | tuple[str, str]]:
        """Question id -> (context, question, answer), or -> (reason, detail) for a question that
        cannot be read (a field missing or of the wrong type): one rejected row, never a crash."""
        try:
            with files.open_binary(path) as f:
                doc = json.loads(f.read().decode("utf-8-sig"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise SourceError(f"{path}: not a readable SQuAD JSON file ({e})") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
            raise SourceError(f"{path}: a SQuAD file is an object with a `data` list")
        out: dict[str, tuple[str, str, str] | tuple[str, str]] = {}
        for a, article in enumerate(doc["data"]):
            paragraphs = article.get("paragraphs") if isinstance(article, dict) else None
            if not isinstance(paragraphs, list):
                out[f"data[{a}]"] = ("wrong_type", f"data[{a}] is not an object with a `paragraphs` list")
                continue
            for i, para in enumerate(paragraphs):
                qas = para.get("qas") if isinstance(para, dict) else None
                if not isinstance(qas, list):
                    out[f"data[{a}].paragraphs[{i}]"] = ("wrong_type", f"data[{a}].paragraphs[{i}] is not an object with a `qas` list")
                    continue
                context = para.get("context")
                for j, qa in enumerate(qas):
                    where = f"data[{a}].paragraphs[{i}].qas[{j}]"
                    qid = str(qa.get("id", where)) if isinstance(qa, dict) else where
                    out[qid] = _squad_question(qa, context, where)
        return out

    def read(self, source: Source, partition: Partition, ctx: ReadContext) -> Iterator[Item]:
        if source.hub is not None:
            yield from self._read_rows(source, partition, ctx)
            return
        focus = partition.langs[0]
        path = Path(partition.params["file"])
        own = self._questions(path)
        pivots = {code: self._questions(Path(p)) for code, p in partition.params["pivots"].items() if code != focus}
        for n, (qid, found) in enumerate(own.items()):
            if ctx.sample is not None and n >= ctx.sample:
                return
            loc = {"file": rows.relative(path, ctx), "id": qid}
            if len(found) == 2:
                yield RawError(loc, found[0], "", focus, found[1])
                continue
            context, question, answer = found
            item = QAItem(focus, "extractive", {focus: question}, {focus: answer}, {focus: context})
            for code, qs in pivots.items():
                other = qs.get(qid)
                if other is not None and len(other) == 3:  # a pivot's unreadable question is rejected by its own partition
                    item.context[code], item.question[code], item.answer[code] = other
            yield RawRow(loc, item)

    def _read_rows(self, source: Source, partition: Partition, ctx: ReadContext) -> Iterator[Item]:
        for item in rows.read_rows(source, partition, ctx):
            if isinstance(item, (RawError, Unread)):
                yield item
                continue
            loc, row = item
            raw = json.dumps(row, ensure_ascii=False, default=str)
            if not isinstance(row, dict):
                yield RawError(loc, "not_an_object", raw, source.lang, f"expected an object, found {type(row).__name__}")
                continue
            answers = row.get("answers")
            texts = answers.get("text") if isinstance(answers, dict) else None
            problem = _squad_problem(row.get("context"), row.get("question"), texts[0] if isinstance(texts, list) and texts else None)
            if problem is not None:
                yield RawError(loc, problem[0], raw, source.lang, problem[1] + " (needs context, question and answers.text)")
                continue
            lang = source.lang
            yield RawRow(loc, QAItem(lang, "extractive", {lang: row["question"]}, {lang: texts[0]}, {lang: row["context"]}))


def _squad_problem(context: object, question: object, answer: object) -> tuple[str, str] | None:
    """(reason, detail) when a SQuAD question's context, question or first answer is not a string."""
    for field, value in (("context", context), ("question", question), ("answer text", answer)):
        if value is None:
            return ("missing_field", f"{field} is missing")
        if not isinstance(value, str):
            return ("wrong_type", f"{field} is {type(value).__name__}, expected a string")
    return None


def _squad_question(qa: object, context: object, where: str) -> tuple[str, str, str] | tuple[str, str]:
    """One `qas` entry of a SQuAD file: (context, question, answer), or (reason, detail) naming what is wrong."""
    if not isinstance(qa, dict):
        return ("wrong_type", f"{where} is {type(qa).__name__}, expected an object")
    answers = qa.get("answers")
    if answers is not None and not isinstance(answers, list):
        return ("wrong_type", f"{where}.answers is {type(answers).__name__}, expected a list")
    first = answers[0] if answers else None
    if first is not None and not isinstance(first, dict):
        return ("wrong_type", f"{where}.answers[0] is {type(first).__name__}, expected an object")
    problem = _squad_problem(context, qa.get("question"), first.get("text") if first else None)
    if problem is not None:
        return (problem[0], f"{where}: {problem[1]}")
    return (context, qa["question"], first["text"])  # type: ignore[index,return-value]
