"""The recipe: what to build, as a validated YAML document.

A recipe names the sources (local paths or Hub ids and the adapter that reads them), the
languages and pivots, the construction, filter, dedup and balance settings, and the output
layout. Unknown keys, wrong types and missing files are errors that name the key or the file.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from datakit import languages
from datakit.errors import RecipeError, UnknownLanguageError
from datakit.hashing import canonical_json

SEED_TOKENS = 4  # decontamination looks for n-grams from a seed of this many tokens

Format = Literal["alpaca", "messages", "seed_tasks", "bitext", "udhr_xml", "tsv_qa", "squad", "synthesised"]
Terms = Literal["open", "share-alike", "non-commercial", "research-only", "unknown"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _lang_code(value: str) -> str:
    try:
        return languages.code(value)
    except UnknownLanguageError as e:
        raise ValueError(str(e)) from None


LangCode = Annotated[str, Field(min_length=2)]


class Join(Strict):
    """Pairs that lack the `pivot` language take its text from pairs of `sources` whose `through`
    side is the same sentence (normalised as dedup compares text): an X-en pair and an en-zh pair
    with equal English give an X-zh pair. Records made from a joined text say so in `meta`."""

    pivot: LangCode = "zho_Hans"
    through: LangCode = "eng_Latn"
    sources: list[str] = []  # the sources whose (through, pivot) pairs are used; default: this source's own

    @field_validator("pivot", "through")
    @classmethod
    def _norm(cls, v: str) -> str:
        return _lang_code(v)


class Source(Strict):
    """One input: where it is, which adapter reads it, and under what licence."""

    name: str = Field(min_length=1)
    format: Format
    path: str | None = None
    hub: str | None = None
    config: str | None = None
    configs: list[str] | None = None
    split: str = "train"
    data_files: str | list[str] | None = None
    revision: str | None = None
    lang: LangCode | None = None
    files: str | None = None
    columns: dict[str, str] | list[str] | None = None
    header: bool | None = None
    min_stage: int | None = None
    unit: Literal["sentence", "document"] = "sentence"
    license: str = Field(min_length=1)
    terms: Terms = "unknown"
    url: str | None = None
    join: Join | None = None  # bitext: complete pairs through a shared pivot sentence (see Join)
    # bitext: the language keys of a multi-way row to read, each with the language it holds; the
    # others are left out (ALT's `bg` is Bengali, not Bulgarian; its `en_tok` is no language)
    tags: dict[str, LangCode] | None = None

    @field_validator("tags")
    @classmethod
    def _tag_codes(cls, v: dict[str, str] | None) -> dict[str, str] | None:
        return None if v is None else {tag: _lang_code(code) for tag, code in v.items()}

    @field_validator("lang")
    @classmethod
    def _norm_lang(cls, v: str | None) -> str | None:
        return None if v is None else _lang_code(v)

    @field_validator("files")
    @classmethod
    def _regex(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                pattern = re.compile(v)
            except re.error as e:
                raise ValueError(f"not a regular expression: {e}") from None
            del pattern
        return v

    @field_validator("hub")
    @classmethod
    def _hub_id(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[\w.-]+/[\w.-]+", v):
            raise ValueError(f"{v!r} is not a Hub dataset id of the form org/name")
        return v

    @model_validator(mode="after")
    def _where(self) -> Source:
        if (self.path is None) == (self.hub is None):
            raise ValueError("give exactly one of `path` (local file or folder) and `hub` (Hub dataset id)")
        if self.config and self.configs:
            raise ValueError("give `config` or `configs`, not both")
        needs_lang = {"alpaca", "messages", "seed_tasks"}
        if self.format in needs_lang and self.lang is None:
            raise ValueError(f"format {self.format!r} needs `lang`, the language of its conversations")
        per_language = self.format in {"tsv_qa", "squad", "udhr_xml"} or (self.format == "bitext" and self.files is not None)
        if self.path is not None and self.format in {"tsv_qa", "squad"} and self.files is None:
            raise ValueError(f"format {self.format!r} reads one file per language: give `files`, a pattern with (?P<lang>...)")
        if per_language and self.files is not None and "(?P<lang>" not in self.files:
            raise ValueError("`files` needs a named group (?P<lang>...) that captures each file's language code")
        return self


class Translation(Strict):
    """Translation instructions from parallel text: a star graph around the pivots."""

    directions: list[Literal["to_pivot", "from_pivot"]] = ["to_pivot", "from_pivot"]
    instruction_langs: list[LangCode] = ["eng_Latn", "zho_Hans"]
    non_pivot_pairs: bool = False  # also X<->Y records from pairs without a pivot (else they are rejected)

    @field_validator("instruction_langs")
    @classmethod
    def _norm(cls, v: list[str]) -> list[str]:
        return [_lang_code(x) for x in v]


class QA(Strict):
    """Question answering from parallel QA sets: same-language and cross-lingual variants."""

    same_language: bool = True
    cross_lingual: bool = True


class Interactive(Strict):
    """Multi-turn interactive translation from sentence-level parallel text (see construct/interactive.py)."""

    share: float = Field(0.0, ge=0, le=1)   # of parallel rows that also make an interactive record
    max_revisions: int = Field(2, ge=1, le=4)


class LLMStep(Strict):
    """What every LLM step shares: one model, a budget, prices, and how to send.

    Endpoint and key come from the openai client's own variables, OPENAI_BASE_URL and OPENAI_API_KEY."""

    enabled: bool = False
    model: str = "gpt-4o-mini"
    languages: list[LangCode] = []         # target languages X
    budget_usd: float | None = Field(None, ge=0)
    prices: dict[str, dict[str, float]] = {}  # model -> {input, output} USD per 1M tokens
    params: dict[str, Any] = {"temperature": 0}
    concurrency: int = Field(4, ge=1)
    max_tokens: int = Field(1024, ge=16)
    batch: bool = False                    # the provider's Batch API for large jobs

    @field_validator("languages")
    @classmethod
    def _norm(cls, v: list[str]) -> list[str]:
        return [_lang_code(x) for x in v]


class Synthesis(LLMStep):
    """zh/en general instructions translated into other languages by an LLM (see construct/synthesis.py)."""

    sources: list[str] = []                # general sources (by name) whose instructions are translated
    per_language: int = Field(50, ge=1)    # instructions per target language
    pool: int = Field(5000, ge=1)          # rows read from each source to choose from
    license: str = "see-sources"


class NativeTemplates(LLMStep):
    """Translation instructions written in X itself: our English templates translated into X by the
    LLM, each checked (placeholders kept, language ID) before any record uses it (construct/native.py)."""

    share: float = Field(0.25, ge=0, le=1)  # of X<->hub translation records framed in X


class Construct(Strict):
    translation: Translation = Translation()
    interactive: Interactive = Interactive()
    qa: QA = QA()
    synthesis: Synthesis = Synthesis()
    native_templates: NativeTemplates = NativeTemplates()


class Normalise(Strict):
    form: Literal["NFC", "NFKC", "none"] = "NFC"


class Length(Strict):
    min_chars: int = Field(1, ge=1)
    max_chars: int = Field(20000, ge=1)
    max_turns: int = Field(64, ge=2)


class Lid(Strict):
    """fastText language ID per field (see datakit/record_stages/lid.py)."""

    enabled: bool = True
    model: str = "default"          # the cached lid.176.ftz; or a path; or a Hub id org/name[/file]
    thresholds: str = "default"     # shipped calibration for the default model; a TSV path; or none
    default_threshold: float = Field(0.6, gt=0, le=1.01)  # languages the calibration does not cover
    overrides: dict[str, float] = {}  # per-language thresholds, e.g. {swh_Latn: 0.7}
    min_chars: int = Field(15, ge=1)  # shorter fields: script check only
    # Weighted share of a field's letters that must be in the expected language's script, per task.
    # Translation text is the language and nothing else; QA passages name people and places in other
    # scripts; general answers may be code or formulas, which have no language (0: not checked).
    script_min_share: dict[str, float] = {"translation": 0.5, "interactive_translation": 0.5, "synthesised": 0.5,
                                          "cross_lingual_qa": 0.2, "general": 0.0}
    # General answers are rejected only when another language is this much more likely than theirs.
    general_margin: float = Field(0.5, gt=0, le=1.01)

    @field_validator("overrides")
    @classmethod
    def _codes(cls, v: dict[str, float]) -> dict[str, float]:
        return {_lang_code(k): x for k, x in v.items()}


class Quality(Strict):
    """Heuristic quality checks (see datakit/record_stages/quality.py)."""

    enabled: bool = True
    max_dup_lines: float = Field(0.3, ge=0, le=1)       # share of an answer's lines repeating an earlier one
    max_dup_paragraphs: float = Field(0.3, ge=0, le=1)
    max_dup_ngrams: float = Field(0.4, ge=0, le=1)      # share of tokens in repeated word 5-grams / char 10-grams
    max_urls: int = Field(5, ge=0)
    max_url_share: float = Field(0.3, ge=0, le=1)
    pii: Literal["redact", "reject", "keep"] = "redact"  # e-mail addresses and phone numbers in answers
    pii_translations: Literal["keep", "redact", "reject"] = "keep"  # records rendering a source: both sides alike
    min_length_ratio: float = Field(1 / 3, gt=0)         # translation target/source, Han/kana/Hangul weighted
    max_length_ratio: float = Field(3.0, gt=0)
    ratio_min_length: int = Field(20, ge=1)              # shorter pairs: ratio not checked
    untranslated_min_chars: int = Field(20, ge=1)
    numbers_reject_tasks: list[str] = ["synthesised"]    # numbers are scored for all, rejected for these


class EvalSet(Strict):
    """An evaluation set to keep out of the training data: local file(s) or a Hub dataset."""

    name: str = Field(min_length=1)
    path: str | None = None
    hub: str | None = None
    config: str | None = None
    split: str = "test"
    fields: list[str] = ["text"]     # string or list-of-strings fields holding the items' text
    id_field: str = "question_id"

    @model_validator(mode="after")
    def _where(self) -> EvalSet:
        if (self.path is None) == (self.hub is None):
            raise ValueError("give exactly one of `path` and `hub`")
        return self


class Decontaminate(Strict):
    """Reject training records that contain evaluation items (see datakit/record_stages/decontaminate.py)."""

    sets: list[EvalSet] = []
    word_ngram: int = Field(8, ge=SEED_TOKENS)   # word n-grams for spaced scripts
    char_ngram: int = Field(12, ge=SEED_TOKENS)  # character n-grams for unspaced scripts
    min_words: int = Field(5, ge=SEED_TOKENS)    # shorter items are not indexed (they would match everywhere)
    min_chars: int = Field(8, ge=SEED_TOKENS)


class Judge(Strict):
    """An optional LLM judge with a 1-5 rubric (see datakit/record_stages/judge.py); endpoint and key from
    OPENAI_BASE_URL / OPENAI_API_KEY in every worker's environment."""

    enabled: bool = False
    model: str = "gpt-4o-mini"
    threshold: int = Field(3, ge=1, le=5)          # scores below it reject the record
    tasks: list[str] = ["general", "synthesised"]  # which records are judged
    rubric: str | None = None                      # default: datakit.llm.judge.DEFAULT_RUBRIC
    budget_usd: float | None = Field(None, ge=0)
    prices: dict[str, dict[str, float]] = {}
    params: dict[str, Any] = {"temperature": 0}
    concurrency: int = Field(4, ge=1)


class Filters(Strict):
    normalise: Normalise = Normalise()
    length: Length = Length()
    lid: Lid = Lid()
    quality: Quality = Quality()
    decontaminate: Decontaminate = Decontaminate()
    judge: Judge = Judge()


class NearDedup(Strict):
    """MinHash LSH near-duplicate removal (see datakit/corpus_steps/near_dedup.py)."""

    enabled: bool = True
    threshold: float = Field(0.8, gt=0, lt=1)  # estimated Jaccard similarity of shingle sets
    num_perm: int = Field(128, ge=16, le=512)  # bands x rows are chosen from the threshold
    word_ngram: int = Field(3, ge=1)           # shingles in spaced scripts
    char_ngram: int = Field(4, ge=1)           # shingles in unspaced scripts (zh, ja, th, ...)


class Dedup(Strict):
    exact: bool = True
    near: NearDedup = NearDedup()


class Balance(Strict):
    """Target size and mix (see datakit/corpus_steps/balance.py)."""

    target_size: int | None = Field(None, ge=1)     # None: keep everything that passes
    temperature: float = Field(1.0, gt=0)          # across languages inside a group: p ~ n^(1/T)
    min_per_language: int = Field(0, ge=0)          # floor per language (when it has that many)
    max_per_language: int | None = Field(None, ge=1)  # cap per language
    task_weights: dict[str, float] = {}             # a language's quota split over tasks; default: by size
    max_repeat: int = Field(1, ge=1)                # >1: translations may be repeated (re-rendered with another template)
    mix: dict[Literal["zh", "en", "cross_lingual"], float] = {"zh": 0.432, "en": 0.262, "cross_lingual": 0.306}

    @field_validator("mix")
    @classmethod
    def _sums_to_one(cls, v: dict[str, float]) -> dict[str, float]:
        if any(x < 0 for x in v.values()):
            raise ValueError("mix ratios cannot be negative")
        if abs(sum(v.values()) - 1.0) > 1e-6:
            raise ValueError(f"mix ratios must sum to 1, they sum to {sum(v.values()):.4f}")
        return v


class Validation(Strict):
    """A small validation split per language, chosen by a seeded hash of the id."""

    fraction: float = Field(0.01, ge=0, le=0.5)
    min_rows: int = Field(1, ge=0)          # per language with a split
    max_rows: int = Field(200, ge=0)
    min_language_rows: int = Field(100, ge=1)  # languages with fewer records have no validation split


class Output(Strict):
    validation: Validation = Validation()
    shard_max_rows: int = Field(100_000, ge=1)
    shard_max_bytes: int = Field(256 * 2**20, ge=1024)
    row_group_rows: int = Field(2_000, ge=1)
    compression: Literal["zstd", "snappy", "gzip", "none"] = "zstd"


class Recipe(Strict):
    name: str
    description: str = ""
    seed: int = 0
    pivots: list[LangCode] = ["eng_Latn", "zho_Hans"]
    data_dir: str | None = None
    sources: list[Source] = Field(min_length=1)
    construction: Construct = Field(Construct(), alias="construct")
    filters: Filters = Filters()
    dedup: Dedup = Dedup()
    balance: Balance = Balance()
    output: Output = Output()

    @field_validator("pivots")
    @classmethod
    def _pivots(cls, v: list[str]) -> list[str]:
        codes = [_lang_code(x) for x in v]
        if not codes or any(c not in languages.HUBS for c in codes):
            raise ValueError(f"pivots must be among the hubs {list(languages.HUBS)}")
        return codes

    @model_validator(mode="after")
    def _synthesis_sources(self) -> Recipe:
        names = {s.name: s for s in self.sources}
        for name in self.construction.synthesis.sources:
            if name not in names:
                raise ValueError(f"construct.synthesis.sources: no source named {name!r}")
            if names[name].format not in ("alpaca", "messages", "seed_tasks"):
                raise ValueError(f"construct.synthesis.sources: {name!r} is not a general instruction source")
        for source in self.sources:
            if source.join is None:
                continue
            if source.format != "bitext":
                raise ValueError(f"sources ({source.name}).join: only bitext sources can be joined")
            for name in source.join.sources:
                if name not in names or names[name].format != "bitext":
                    raise ValueError(f"sources ({source.name}).join.sources: no bitext source named {name!r}")
        return self

    @field_validator("sources")
    @classmethod
    def _unique_names(cls, v: list[Source]) -> list[Source]:
        seen = set()
        for s in v:
            if s.name in seen:
                raise ValueError(f"two sources are named {s.name!r}; names must be unique")
            seen.add(s.name)
        return v

    def fingerprint(self) -> str:
        return hashlib.sha256(canonical_json(self.model_dump(mode="json", by_alias=True)).encode()).hexdigest()


def _loc(loc: tuple[Any, ...], data: dict[str, Any]) -> str:
    """`sources.3.format` -> `sources[3] (mgsm).format`: name the key the way the user wrote it."""
    parts: list[str] = []
    node: Any = data
    for item in loc:
        if isinstance(item, int):
            label = f"[{item}]"
            if isinstance(node, list) and item < len(node) and isinstance(node[item], dict) and "name" in node[item]:
                label += f" ({node[item]['name']})"
            parts.append(label)
        else:
            parts.append(("." if parts else "") + str(item))
        node = node[item] if isinstance(node, (list, dict)) and _has(node, item) else None
    return "".join(parts) or "(top level)"


def _has(node: Any, item: Any) -> bool:
    return (isinstance(node, list) and isinstance(item, int) and item < len(node)) or (isinstance(node, dict) and item in node)


def parse_recipe(data: Any, origin: str) -> Recipe:
    if not isinstance(data, dict):
        raise RecipeError(f"{origin}: a recipe is a YAML mapping, found {type(data).__name__}")
    try:
        return Recipe.model_validate(data)
    except ValidationError as e:
        lines = []
        for err in e.errors():
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown key"
            elif err["type"] == "missing":
                msg = "required key is missing"
            lines.append(f"  {_loc(err['loc'], data)}: {msg}")
        raise RecipeError(f"{origin}: invalid recipe\n" + "\n".join(lines)) from None


def _read_yaml(path: Path) -> Any:
    if not path.is_file():
        raise RecipeError(f"recipe file not found: {path}")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        at = f" (line {where.line + 1}, column {where.column + 1})" if where else ""
        raise RecipeError(f"{path}: not valid YAML{at}: {getattr(e, 'problem', e)}") from None
    except UnicodeDecodeError as e:
        raise RecipeError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None


def _merge(base: Any, over: Any) -> Any:
    """A recipe over the one it extends: mappings merge key by key, anything else replaces."""
    if isinstance(base, dict) and isinstance(over, dict):
        return {**base, **{k: _merge(base.get(k), v) for k, v in over.items()}}
    return over


def _resolve(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    data = _read_yaml(path)
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: a recipe is a YAML mapping, found {type(data).__name__}")
    parent = data.pop("extends", None)
    if parent is None:
        return data
    base_path = (path.parent / str(parent)).resolve()
    if base_path in seen:
        raise RecipeError(f"{path}: extends: {parent} makes a cycle")
    base = _resolve(base_path, (*seen, base_path))
    if "data_dir" in base and "data_dir" not in data and not Path(base["data_dir"]).is_absolute():
        base["data_dir"] = str(Path(os.path.relpath(base_path.parent / base["data_dir"], path.parent)))
    return _merge(base, data)


def load_recipe(path: str | Path) -> Recipe:
    """Load and validate a recipe; `extends: other.yaml` takes another recipe and changes some of it."""
    path = Path(path)
    return parse_recipe(_resolve(path), str(path))


def with_overrides(recipe: Recipe, **changes: Any) -> Recipe:
    """A copy of the recipe with top-level or dotted keys replaced, validated again."""
    data = recipe.model_dump(mode="json", by_alias=True)
    for dotted, value in changes.items():
        node = data
        *head, last = dotted.split(".")
        for key in head:
            node = node.setdefault(key, {})
        node[last] = value
    return parse_recipe(data, "recipe (with command-line overrides)")
