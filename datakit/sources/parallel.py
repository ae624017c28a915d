"""Parallel text: line-aligned files (NTREX), `translation` rows (OPUS on the Hub), UDHR XML.

Every parallel source is read as a star around the pivots: one partition per non-pivot language X
(its rows carry X's text and every pivot's text for the same unit), plus one partition for the
pivot pair itself. Regional variants and second references ride along as extra references of
their language, never as languages of their own.
"""

from __future__ import annotations

import functools
import itertools
import re
import sys
import threading
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cachetools
import numpy as np

from datakit import languages
from datakit.errors import SourceError, UnknownLanguageError
from datakit.hashing import file_stamp
from datakit.recipe import Source
from datakit.scripts import dominant_script, scripts_agree
from datakit.sources import base, files, rows
from datakit.sources.base import Item, Parallel, Partition, RawError, RawRow, ReadContext
from datakit.sources.instructions import RowAdapter

SCRIPT_SAMPLE_LINES = 50


def file_language(tag: str, path: Path) -> languages.Lang:
    """A file's language from its tag; when the tag has no script, the text's own script decides.

    CLDR guesses Latin for Hassaniya and Tifinagh for Tachelhit; NTREX writes both in Arabic script.
    """
    lang = languages.normalize(tag)
    explicit_script = any(len(p) == 4 and p.isalpha() for p in tag.replace("_", "-").split("-")[1:])
    if explicit_script or lang.region:
        return lang
    sample = " ".join(text for text in line_range(path, 0, SCRIPT_SAMPLE_LINES) if isinstance(text, str))
    detected = dominant_script(sample)
    if detected and not scripts_agree(lang.script, detected) and len(detected) == 4 and detected not in ("Hani", "Jpan"):
        return languages.Lang(f"{lang.iso}_{detected}", lang.region)
    return lang


@dataclass
class _LangFiles:
    primary: Path
    variants: dict[str, Path]


PAIR_HINT = ("If each file belongs to one language pair (OPUS Moses downloads: corpus.fr-en.fr + corpus.fr-en.en), capture the pair "
             r"in `files` with a named group, e.g. 'corpus\.(?P<pair>[a-z]+-[a-z]+)\.(?P<lang>[a-z]+)'; if some are second "
             "references, capture their mark with (?P<ref>...).")


def _plan_line_files(source: Source, ctx: ReadContext, found: list[tuple[Path, Any]], unknown: dict[str, str]) -> dict[str, _LangFiles]:
    """Group one-language-per-file texts by language; pick each language's primary file.

    Files whose language tag is unknown are collected in `unknown` (path -> problem). A language
    with two files that are neither regional variants nor marked second references is refused:
    line-aligned files only pair up when every language has one text, and guessing which of two
    English files goes with French would write wrong translations without a word."""
    by_code: dict[str, list[tuple[Path, languages.Lang, bool]]] = {}
    for path, match in found:
        assert match is not None
        tag = match.group("lang")
        try:
            lang = file_language(tag, path)
        except UnknownLanguageError as e:
            # Its rows are rejected (unknown_language) by the partition that reads it, not dropped.
            unknown[str(path)] = str(e)
            continue
        secondary = bool(match.groupdict().get("ref"))
        by_code.setdefault(lang.code, []).append((path, lang, secondary))
    planned = {}
    for code, entries in sorted(by_code.items()):
        # The primary reference: the file with no region and no second-reference mark; when every
        # file has one, the first by name. The rest are extra references, one per label.
        entries.sort(key=lambda e: (e[2], e[1].region is not None, e[0].name))
        labels: dict[str | None, list[Path]] = {}
        for path, lang, secondary in entries:
            labels.setdefault(f"ref:{path.name}" if secondary else lang.region, []).append(path)
        clash = next((paths for paths in labels.values() if len(paths) > 1), None)
        if clash is not None:
            names = ", ".join(rows.relative(p, ctx) for p in clash)
            raise SourceError(f"source {source.name!r}: {code} has {len(clash)} files that are neither regional variants nor "
                              f"second references ({names}); their lines cannot be paired with the other languages' lines, "
                              f"so datakit will not guess. {PAIR_HINT}")
        primary = entries[0][0]
        variants = {}
        for path, lang, secondary in entries[1:]:
            variants[f"ref:{path.name}" if secondary else (lang.region or rows.relative(path, ctx))] = path
        planned[code] = _LangFiles(primary, variants)
    return planned


def _check_alignment(source: Source, ctx: ReadContext, planned: dict[str, _LangFiles]) -> None:
    """Line counts of the files that will be paired: a hub file that disagrees stops the build
    (every language would be rejected), any other file that disagrees is named in a warning
    (its rows are rejected as `misaligned`, its extra references left out)."""
    codes = [c for c in planned if c in ctx.pivots or ctx.selected(c)]
    counts = {c: line_count(planned[c].primary) for c in codes}
    pivots = [p for p in ctx.pivots if p in counts]
    tally = Counter(counts.values())
    usual = max(sorted(tally), key=tally.__getitem__)  # the count most files have (the smaller on a tie)
    name = {c: rows.relative(planned[c].primary, ctx) for c in codes}
    odd = [p for p in pivots if counts[p] != usual and tally[usual] > tally[counts[p]]]
    if not odd and len({counts[p] for p in pivots}) > 1:
        odd = pivots  # two hub files disagree and nothing says which one is right
    if odd:
        raise SourceError(f"source {source.name!r}: hub file " + " and ".join(f"{name[p]} ({counts[p]} lines)" for p in odd)
                          + f" does not line up: {tally[usual]} of the {len(codes)} files have {usual} lines. Every language "
                          "is paired with the hub line by line, so all of them would be rejected as misaligned; fix the file "
                          "(a line missing or added?)")
    if not pivots:
        return
    hub = pivots[0]
    for code in codes:
        if code in ctx.pivots:
            continue
        if counts[code] != counts[hub]:
            base.warn(source.name, name[code], "misaligned",
                      f"{counts[code]} lines where the hub file {name[hub]} has {counts[hub]}: its lines cannot be paired, "
                      f"so every {code} row is rejected as misaligned")
    for code in codes:
        for label, path in planned[code].variants.items():
            n = line_count(path)
            if n != counts[hub]:
                base.warn(source.name, rows.relative(path, ctx), "misaligned",
                          f"{n} lines where the hub file {name[hub]} has {counts[hub]}: left out as an extra {code} reference ({label})")


def star_partitions(source: Source, ctx: ReadContext, codes: list[str], params_for, prefix: str = "") -> list[Partition]:
    """One partition per selected non-pivot language, plus the pivot pair when both pivots are there."""
    pivots = [p for p in ctx.pivots if p in codes]
    if not pivots:
        raise SourceError(f"source {source.name!r}: none of the pivot languages {list(ctx.pivots)} is in it; found {sorted(codes)[:12]}")
    parts = [Partition(source.name, prefix + code, params_for(code), (code,)) for code in codes if code not in ctx.pivots and ctx.selected(code)]
    if len(pivots) == 2:
        parts.append(Partition(source.name, prefix + "+".join(pivots), params_for(pivots[1]), tuple(pivots)))
    return parts


class Bitext(RowAdapter):
    """Line-aligned parallel text: a folder of one-language files (`files` names the language), or
    rows with a `translation` column mapping language codes to text (OPUS on the Hub).

    With a `(?P<pair>...)` group in `files`, each pair's files are aligned with one another only
    (OPUS Moses downloads: corpus.fr-en.fr + corpus.fr-en.en, corpus.de-en.de + corpus.de-en.en);
    without it, every file is aligned with the hub files."""

    defaults = {"translation": "translation"}

    def partitions(self, source: Source, ctx: ReadContext) -> list[Partition]:
        if source.hub is not None or source.files is None:
            return rows.partitions(source, ctx) if source.hub is None else self._hub_parts(source, ctx)
        unknown: dict[str, str] = {}
        found = rows.matching_files(source, rows.local_root(source, ctx))
        groups: dict[str, list[tuple[Path, Any]]] = {}
        pairwise = "pair" in re.compile(source.files).groupindex
        for path, match in found:
            groups.setdefault(match.group("pair") if pairwise else "", []).append((path, match))
        parts = []
        for pair, entries in sorted(groups.items()):
            planned = _plan_line_files(source, ctx, entries, unknown)
            if pairwise and not any(p in planned for p in ctx.pivots):
                base.warn(source.name, pair, "no_pivot", f"the pair's files ({', '.join(rows.relative(p, ctx) for p, _ in entries)}) "
                          f"hold none of the hub languages {list(ctx.pivots)}: nothing is built from them")
                continue
            _check_alignment(source, ctx, planned)

            def params(code: str, planned: dict[str, _LangFiles] = planned) -> dict[str, Any]:
                pivot_codes = {p for p in ctx.pivots if p in planned}
                texts = {c: str(planned[c].primary) for c in sorted({code, *pivot_codes})}
                variants = {c: {k: str(v) for k, v in planned[c].variants.items()} for c in texts if planned[c].variants}
                return {"texts": texts, "variants": variants}

            parts += star_partitions(source, ctx, list(planned), params, prefix=f"{pair}/" if pair else "")
        if ctx.langs is None:  # a language selection leaves out files whose language is not known
            parts += [Partition(source.name, f"unknown:{Path(path).name}", {"unknown": path, "problem": problem})
                      for path, problem in sorted(unknown.items())]
        return self._split(parts, ctx)

    def _hub_parts(self, source: Source, ctx: ReadContext) -> list[Partition]:
        return rows.partitions(source, ctx)

    @staticmethod
    def _split(parts: list[Partition], ctx: ReadContext) -> list[Partition]:
        """Cut each language's files into line ranges of rows_per_task (or the first N for --sample)."""
        out = []
        for part in parts:
            focus_file = part.params["unknown"] if "unknown" in part.params else part.params["texts"][part.langs[-1]]
            n = line_count(Path(focus_file))
            if ctx.sample is not None:
                n = min(n, ctx.sample)
            for start in range(0, max(n, 1), ctx.rows_per_task):
                count = min(ctx.rows_per_task, n - start)
                key = part.key if start == 0 and count == n else f"{part.key}:{start + 1}"
                out.append(Partition(part.source, key, {**part.params, "start": start, "count": count}, part.langs))
        return out

    def read(self, source: Source, partition: Partition, ctx: ReadContext) -> Iterator[Item]:
        p = partition.params
        if "unknown" in p:
            path = Path(p["unknown"])
            for item in itertools.islice(files.iter_lines(path), p["start"], p["start"] + p["count"]):
                raw = item.text if isinstance(item, files.Line) else item.raw
                line = item.number if isinstance(item, files.Line) else item.loc["line"]
                yield RawError({"file": rows.relative(path, ctx), "line": line}, "unknown_language", raw, None, p["problem"])
        elif "texts" in p:
            yield from _read_aligned(source, partition, ctx, unit=source.unit)
        else:
            yield from super().read(source, partition, ctx)

    def example(self, row: dict, cols: dict[str, str], source: Source) -> Parallel:
        """A `translation` column mapping language codes to texts (OPUS), or, without one, a wide row
        whose columns are language codes (a TSV with columns `en` and `sw`, a JSON row {"fr": .., "zh": ..})."""
        from datakit.sources.instructions import FieldError

        if cols["translation"] in row:
            pair = row[cols["translation"]]
        else:
            pair = {k: v for k, v in row.items() if _is_language(k)}
        if isinstance(pair, dict) and source.tags is not None:
            pair = {tag: text for tag, text in pair.items() if tag in source.tags}
        if not isinstance(pair, dict) or len(pair) < 2:
            raise FieldError("missing_field" if not pair else "wrong_type",
                             f"field {cols['translation']!r} (language code -> text), or two columns named by language codes"
                             + (f", with at least two of the keys {sorted(source.tags)}" if source.tags else ""))
        texts = {}
        for tag, text in pair.items():
            try:
                code = source.tags[tag] if source.tags else languages.code(tag)
            except UnknownLanguageError as e:
                raise FieldError("unknown_language", str(e)) from None
            if not isinstance(text, str):
                raise FieldError("wrong_type", f"text for {tag!r} is not a string")
            texts[code] = text
        non_pivot = sorted(c for c in texts if c not in languages.HUBS)
        focus = non_pivot[0] if non_pivot else "zho_Hans"  # a pair without a pivot is the builder's to judge
        return Parallel(focus, texts, source.unit)


def _is_language(tag: str) -> bool:
    try:
        languages.normalize(tag)
        return True
    except UnknownLanguageError:
        return False


def line_count(path: Path) -> int:
    """`files.count_lines`, counted once per file as it stands (`file_stamp`): every partition of a
    star reads the same hub files, and counting them again per partition was an eighth of reading."""
    stamp = file_stamp(path)
    return files.count_lines(path) if stamp is None else _count_once(str(path), stamp)


@functools.lru_cache(maxsize=4096)
def _count_once(path: str, stamp: tuple[int, ...]) -> int:
    return files.count_lines(Path(path))


# What a process keeps of the hub files' line ranges, in bytes of the kept strings: NTREX's hub
# ranges are about half a MB each, and a few of them serve every partition of a star; a local
# aligned file's range of 200,000 lines is tens of MB, and a range larger than this is not kept.
HUB_RANGES_KEPT = 64 << 20


def _range_bytes(lines: tuple[str | RawError, ...]) -> int:
    return sum(map(sys.getsizeof, lines))


_hub_ranges: cachetools.LRUCache = cachetools.LRUCache(maxsize=HUB_RANGES_KEPT, getsizeof=_range_bytes)


def hub_range(path: Path, start: int, count: int) -> tuple[str | RawError, ...]:
    """`line_range` of a file that every partition of a star reads (a hub file, a hub's variant):
    the ranges read last are kept (up to HUB_RANGES_KEPT bytes), so the partitions of one line
    range share one read (and their rows share the hub's strings)."""
    stamp = file_stamp(path)
    return tuple(line_range(path, start, count)) if stamp is None else _hub_range(str(path), stamp, start, count)


@cachetools.cached(_hub_ranges, lock=threading.Lock())  # a range too large to keep is returned, not kept
def _hub_range(path: str, stamp: tuple[int, ...], start: int, count: int) -> tuple[str | RawError, ...]:
    return tuple(line_range(Path(path), start, count))


def forget_files() -> None:
    """Drop the line counts and hub ranges this process keeps, as a fresh worker starts (a
    benchmark's pass counts and reads every file again, like a build's first task)."""
    _count_once.cache_clear()
    _hub_range.cache_clear()


def line_range(path: Path, start: int, count: int) -> list[str | RawError]:
    """Lines start + 1 .. start + count of a file (fewer at its end): what
    `islice(files.iter_lines(path), start, start + count)` gives, each Line's text in its place.
    The range's bytes are decoded at once (an LF never sits inside a UTF-8 sequence, so the block
    is valid exactly when each line is); a range holding bad UTF-8 is read line by line, so each
    bad line is its own RawError. (A Line object and a decode per line were nearly half of reading.)"""
    with files.open_binary(path) as f:
        raws = list(itertools.islice(f, start, start + count))
    block = b"".join(raws)
    if start == 0 and block.startswith(files.BOM):
        block = block[len(files.BOM) :]
    try:
        text = block.decode("utf-8")
    except UnicodeDecodeError:
        return [item.text if isinstance(item, files.Line) else item
                for item in itertools.islice(files.iter_lines(path), start, start + count)]
    # CRLF: one CR before each LF goes, as files.iter_lines takes it off (and off a last line without LF).
    lines = (text.replace("\r\n", "\n") if "\r" in text else text).split("\n")[: len(raws)]  # a range ending in LF splits into one more, empty, piece
    if lines and lines[-1].endswith("\r") and not raws[-1].endswith(b"\n"):
        lines[-1] = lines[-1][:-1]
    return lines


def _raw(item: str | RawError | None) -> str:
    return item if isinstance(item, str) else getattr(item, "raw", "")


def _read_aligned(source: Source, partition: Partition, ctx: ReadContext, unit: str) -> Iterator[Item]:
    """Walk the focus file and the pivot files in lockstep over the partition's line range: each
    file's lines of the range are read at once (`line_range`), rows are made from them line by line.
    With a band (reading by quota), rows are made only where the line's position is in it (a line's
    position needs only its number), and the others are passed over as one `Passed`: a top-up round
    of a local build read every line of every NTREX file again to keep a few of them."""
    p = partition.params
    focus = partition.langs[-1]
    texts = {code: Path(path) for code, path in p["texts"].items()}
    variant_files = {(code, label): Path(path) for code, vs in p.get("variants", {}).items() for label, path in vs.items()}
    every = {**{(c, None): f for c, f in texts.items()}, **variant_files}
    counts = {key: line_count(f) for key, f in every.items()}
    reference = counts[(focus, None)]
    start, count = p["start"], p["count"]
    focus_name = rows.relative(texts[focus], ctx)
    wanted: list[int] | range = range(count)
    band = ctx.band(partition)
    if band is not None:  # reading by quota: the rows outside the band are passed over, not made
        inside, passed = band.split(band.positions({"file": focus_name}, "line", range(start + 1, start + count + 1)))
        wanted = np.flatnonzero(inside).tolist()
        yield passed
    focus_lines = line_range(texts[focus], start, count)
    bad_core = sorted(key for key, n in counts.items() if key[1] is None and n != reference)
    if bad_core:
        key = bad_core[0]
        detail = f"{rows.relative(every[key], ctx)} has {counts[key]} lines, {focus_name} has {reference}"
        for i in wanted:
            item = focus_lines[i] if i < len(focus_lines) else None
            yield RawError({"file": focus_name, "line": start + i + 1}, "misaligned", _raw(item), focus, detail)
        return
    codes = list(texts)
    core = [focus_lines if code == focus else hub_range(texts[code], start, count) for code in codes]
    # A variant file that does not line up is left out (its lines are not read).
    variants_at = [(key, (line_range if key[0] == focus else hub_range)(path, start, count))
                   for key, path in variant_files.items() if counts[key] == reference]
    for i in wanted:  # every file holds the range (their counts agree)
        row = [lines[i] for lines in core]
        loc = {"file": focus_name, "line": start + i + 1}
        error = next((t for t in row if not isinstance(t, str)), None)  # a line of bad UTF-8 in any file
        if error is not None:
            yield RawError(loc, error.reason, error.raw, focus, f"{error.loc.get('file', '')}: {error.detail}".strip(": "))
            continue
        variants: dict[str, dict[str, str]] = {}
        for (code, label), lines in variants_at:
            if isinstance(text := lines[i], str):
                variants.setdefault(code, {})[label] = text
        yield RawRow(loc, Parallel(focus, dict(zip(codes, row, strict=True)), unit, variants))


# ------------------------------------------------------------------------------ UDHR

UDHR_NS = "{http://www.unhchr.ch/udhr}"


@dataclass(frozen=True)
class UdhrFile:
    key: str
    tag: str
    stage: int
    name: str


def _udhr_index(root: Path) -> list[UdhrFile]:
    index = root / "index.xml"
    if not index.is_file():
        raise SourceError(f"UDHR folder {root} has no index.xml")
    try:
        tree = ET.parse(index)
    except ET.ParseError as e:
        raise SourceError(f"{index}: not well-formed XML ({e})") from None
    out = []
    for el in tree.getroot().iter("udhr"):
        iso, script = el.get("iso639-3", "und"), el.get("iso15924", "")
        out.append(UdhrFile(el.get("f", ""), f"{iso}_{script}" if script else iso, int(el.get("stage", "0") or 0), el.get("n", "")))
    return out


# A dash or bullet some translations put before each list item or recital ("- atu bele moris",
# "–O vezañ"): the pivots' files have none, so a record would have it on one side only.
LIST_MARKER = re.compile(r"^[-\u2010-\u2015\u2022\u2043\u00b7*]+\s*")


# What the UDHR files write where a translation lacks a paragraph: such an article is not a
# translation of the whole pivot article (and "[missing]" is no text to learn).
UDHR_MISSING = "[missing]"


@functools.lru_cache(maxsize=8)
def udhr_articles(path: Path) -> dict[int, str]:
    """Article number -> text (paragraphs, list items in order, one per line, without list markers);
    0 is the preamble."""
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        raise SourceError(f"{path}: not well-formed XML ({e})") from None
    articles = {}
    for el in root:
        if el.tag == UDHR_NS + "preamble":
            number = 0
        elif el.tag == UDHR_NS + "article":
            try:
                number = int(el.get("number", ""))
            except ValueError:
                continue
        else:
            continue
        paras = [LIST_MARKER.sub("", " ".join("".join(p.itertext()).split())) for p in el.iter(UDHR_NS + "para")]
        text = "\n".join(p for p in paras if p)
        if text:
            articles[number] = text
    return articles


class UdhrXml:
    """The UDHR corpus: index.xml lists each translation's language and completeness stage; every
    article (and the preamble) is one document-level parallel unit, aligned by article number."""

    def _files(self, source: Source, ctx: ReadContext) -> tuple[Path, dict[str, tuple[UdhrFile, str | None, str]]]:
        root = rows.local_root(source, ctx)
        entries = {}
        for f in _udhr_index(root):
            if source.min_stage is not None and f.stage < source.min_stage:
                continue
            try:
                code, problem = languages.code(f.tag), ""
            except UnknownLanguageError as e:
                code, problem = None, str(e)
            entries[f.key] = (f, code, problem)
        return root, entries

    def partitions(self, source: Source, ctx: ReadContext) -> list[Partition]:
        root, entries = self._files(source, ctx)
        pivot_keys = {}
        for pivot in ctx.pivots:
            candidates = sorted((-f.stage, len(f.key), f.key) for f, code, _ in entries.values() if code == pivot)
            if candidates:
                pivot_keys[pivot] = candidates[0][2]
        if not pivot_keys:
            raise SourceError(f"source {source.name!r}: no UDHR file for any pivot {list(ctx.pivots)}")
        parts = []
        for key, (_f, code, problem) in sorted(entries.items()):
            if key in pivot_keys.values() or code in pivot_keys:
                continue  # the pivot files themselves; other files of a pivot language are dialects we skip
            if (code is None and ctx.langs is not None) or (code is not None and not ctx.selected(code)):
                continue  # a language selection leaves out files whose language is not known
            parts.append(Partition(source.name, key, {"key": key, "code": code, "problem": problem, "pivots": pivot_keys, "root": str(root)}, (code,) if code else ()))
        if len(pivot_keys) == 2:
            zh = pivot_keys["zho_Hans"]
            parts.append(Partition(source.name, "+".join(pivot_keys), {"key": zh, "code": "zho_Hans", "problem": "", "pivots": pivot_keys, "root": str(root)}, tuple(pivot_keys)))
        return parts

    def read(self, source: Source, partition: Partition, ctx: ReadContext) -> Iterator[Item]:
        p = partition.params
        root = Path(p["root"])
        path = root / f"udhr_{p['key']}.xml"
        if not path.is_file():
            raise SourceError(f"source {source.name!r}: {path} is listed in index.xml but missing")
        articles = udhr_articles(path)
        numbers = sorted(articles)
        if ctx.sample is not None:
            numbers = numbers[: ctx.sample]
        rel = rows.relative(path, ctx)
        if p["code"] is None:
            for n in numbers:
                yield RawError({"file": rel, "article": n}, "unknown_language", articles[n], None, p["problem"])
            return
        pivots = {code: udhr_articles(root / f"udhr_{key}.xml") for code, key in p["pivots"].items()}
        for n in numbers:
            if UDHR_MISSING in articles[n]:
                yield RawError({"file": rel, "article": n}, "missing_text", articles[n], p["code"],
                               "the file marks part of this article [missing]: not a translation of the whole article")
                continue
            texts = {p["code"]: articles[n]}
            texts.update({code: arts[n] for code, arts in pivots.items() if n in arts and UDHR_MISSING not in arts[n]})
            yield RawRow({"file": rel, "article": n}, Parallel(p["code"], texts, "document"))
