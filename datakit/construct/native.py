"""Translation instructions in X itself: our English templates translated into X by the LLM.

BayLing-style data frames most translation requests in a hub language; a model should also follow a
request written in X. An English frame with an X language name dropped in is not that, so the
frames in X come from our English templates translated by the LLM once per (template, language),
before the build runs. Each translation is checked before any record uses it: the generic answer
checks (non-empty, no refusal, not untranslated), the placeholders exactly those of the English
template ({text} once, no stray braces), and the calibrated language ID of the lid stage on the
frame's own words. A template that fails is left out for that language, with its reason in the
work file and the log; records then fall back to the zh/en templates. Answers sit in the LLM cache
(outside the output folder): a rebuild sends nothing twice.

The accepted templates are saved in the prepare stage's work folder (`native_templates/.../
templates.json`), so a resumed build frames every record exactly as the interrupted one did.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from pathlib import Path

from datakit.construct.llm_step import checked_by_lid, step_client
from datakit.construct.templates import SLOT, TRANSLATION, NativeTemplates, Template
from datakit.llm import Request
from datakit.llm.prompts import template_messages
from datakit.recipe import Recipe
from datakit.sources.base import ReadContext
from datakit.store import StageDir, atomic_path

log = logging.getLogger(__name__)

_PLACEHOLDER = re.compile(r"\{(\w+)\}")

def placeholders(text: str) -> Counter:
    return Counter(_PLACEHOLDER.findall(text))


def shape_problem(text: str, english: str) -> str | None:
    """Why a translated template cannot be used as a frame (placeholders changed), or None."""
    want, got = placeholders(english), placeholders(text)
    if got != want:
        return f"placeholders {dict(sorted(got.items()))}, expected {dict(sorted(want.items()))}"
    rest = _PLACEHOLDER.sub("", text)
    if "{" in rest or "}" in rest:
        return "a brace outside the placeholders"
    if SLOT in text:  # what stands for the text while a frame is filled (templates.frame_parts)
        return "a NUL character"
    return None


def frame_words(text: str) -> str:
    """The template's own words, what language ID judges: the placeholders taken out."""
    return " ".join(_PLACEHOLDER.sub(" ", text).split())


def native_id(template: Template, lang: str) -> str:
    return f"{template.id}@{lang}"


def _requests(languages: list[str]) -> list[Request]:
    english = [t for t in TRANSLATION if t.lang == "eng_Latn"]
    return [Request(native_id(t, lang), template_messages(t.text, lang),
                    meta={"lang": lang, "source": t.text, "template": t})
            for lang in languages for t in english]


def translate_templates(recipe: Recipe, ctx: ReadContext, out: Path, fingerprint: str, lid_stage,
                        cache_dir: str | None) -> NativeTemplates:
    """The accepted templates per language (empty when the step is off); the LLM is asked only for
    what its cache does not hold, and not at all when this build already saved its templates."""
    cfg = recipe.construction.native_templates
    languages = [lang for lang in cfg.languages if ctx.selected(lang) and lang not in recipe.pivots]
    if not cfg.enabled or not languages:
        return {}
    stage_dir = StageDir(out, "native_templates", fingerprint)
    path = stage_dir.file("templates.json")
    if stage_dir.result("native_templates") is None or not path.is_file():
        requests = _requests(languages)
        client = step_client(cfg, cache_dir, run_id=f"{fingerprint[:16]}-templates")
        validate = checked_by_lid(lid_stage, shape=lambda text, req: shape_problem(text.strip(), req.meta["source"]), prose=frame_words)
        log.info("native templates: %d English templates x %d languages -> %d requests to %s",
                 len(requests) // len(languages), len(languages), len(requests), cfg.model)
        outcomes = client.run(requests, validator=validate, batch=cfg.batch)
        accepted, rejected = [], []
        for request, outcome in zip(requests, outcomes, strict=True):
            english: Template = request.meta["template"]
            entry = {"id": request.id, "lang": request.meta["lang"], "unit": english.unit, "from": english.id,
                     "text": (outcome.text or "").strip(), "llm_cache_key": outcome.key}
            if outcome.ok:
                accepted.append(entry)
            else:
                rejected.append({**entry, "reason": outcome.reason, "detail": outcome.detail})
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps({"accepted": accepted, "rejected": rejected}, ensure_ascii=False, indent=1, sort_keys=True),
                           encoding="utf-8")
        reasons = Counter(r["reason"] for r in rejected)
        stage_dir.complete("native_templates", {"accepted": len(accepted), "rejected": dict(sorted(reasons.items()))})
        log.info("native templates: %d accepted, %d left out %s", len(accepted), len(rejected), dict(sorted(reasons.items())))
    return load_templates(path)


def load_templates(path: Path) -> NativeTemplates:
    saved = json.loads(path.read_text(encoding="utf-8"))
    by_lang: dict[str, list[Template]] = {}
    for e in saved["accepted"]:
        by_lang.setdefault(e["lang"], []).append(Template(e["id"], e["lang"], e["unit"], e["text"]))
    return {lang: tuple(ts) for lang, ts in sorted(by_lang.items())}


def template_report(out: Path, fingerprint: str) -> dict | None:
    """What the step made, for stats.json and the card: per language, accepted and left out by reason."""
    path = StageDir(out, "native_templates", fingerprint).file("templates.json")
    if not path.is_file():
        return None
    saved = json.loads(path.read_text(encoding="utf-8"))
    report: dict[str, dict] = {}
    for e in saved["accepted"]:
        report.setdefault(e["lang"], {"accepted": 0, "left_out": {}})["accepted"] += 1
    for e in saved["rejected"]:
        left = report.setdefault(e["lang"], {"accepted": 0, "left_out": {}})["left_out"]
        left[e["reason"]] = left.get(e["reason"], 0) + 1
    return dict(sorted(report.items()))
