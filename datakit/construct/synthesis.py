"""LLM synthesis: zh/en general instructions translated into other languages, before the build runs.

The driver picks, for each target language, a deterministic sample of single-turn instructions from
the sources the recipe names (by a seeded hash of their position), asks the LLM (datakit.llm: one
openai client, bounded concurrency, retries, a persistent cache outside the output folder, a
budget cap) to translate the instruction and the answer, and validates each answer (non-empty, no
refusal, not untranslated, and in the target language by the same calibrated language ID as the
lid stage). The plan (requests, tokens, cost) is logged before anything is sent.

Each (instruction, language) pair becomes one line of a JSON Lines file in the work folder: the
translated conversation, or the reason it failed. That file is then read like any source (format
`synthesised`), so synthesised records go through every filter, and failed generations become
rejected records: nothing is lost and nothing is asked twice.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from datakit.construct.llm_step import checked_by_lid, step_client
from datakit.errors import DatakitError
from datakit.hashing import canonical_json
from datakit.llm import Request, translation_messages
from datakit.recipe import Recipe, Source
from datakit.records import stable_int
from datakit.sources import adapter_for
from datakit.sources.base import Instruction, RawRow, ReadContext
from datakit.store import StageDir, atomic_path

log = logging.getLogger(__name__)


def _candidates(recipe: Recipe, ctx: ReadContext) -> list[dict[str, Any]]:
    """Single-turn conversations from the synthesis sources: the first `pool` rows of each."""
    cfg = recipe.construction.synthesis
    pool_ctx = ReadContext(ctx.data_dir, ctx.mirror, cfg.pool, None, ctx.pivots, ctx.rows_per_task)
    out = []
    for source in (s for s in recipe.sources if s.name in cfg.sources):
        adapter = adapter_for(source)
        for part in adapter.partitions(source, pool_ctx):
            for item in adapter.read(source, part, pool_ctx):
                if not isinstance(item, RawRow) or not isinstance(item.example, Instruction):
                    continue
                for i, conv in enumerate(item.example.conversations):
                    if [m["role"] for m in conv] == ["user", "assistant"] and all(m["content"].strip() for m in conv):
                        out.append({"source": source.name, "loc": {**item.loc, **({"conversation": i} if i else {})},
                                    "lang": item.example.lang, "instruction": conv[0]["content"], "output": conv[1]["content"]})
    return out


def plan_pairs(recipe: Recipe, ctx: ReadContext) -> list[tuple[dict[str, Any], str]]:
    """(instruction, target language) pairs: per language, the `per_language` candidates ranked first
    by a hash seeded with the recipe seed and the language (so each language gets its own sample)."""
    cfg = recipe.construction.synthesis
    candidates = _candidates(recipe, ctx)
    if not candidates:
        raise DatakitError(f"construct.synthesis: the sources {cfg.sources} have no single-turn instructions to translate")
    pairs = []
    for lang in cfg.languages:
        if not ctx.selected(lang):
            continue
        ranked = sorted(candidates, key=lambda c: stable_int(recipe.seed, "synthesis", lang, c["source"], c["loc"]))
        pairs += [(c, lang) for c in ranked[: cfg.per_language] if c["lang"] != lang]
    return pairs


def _requests(pairs: list[tuple[dict[str, Any], str]]) -> list[Request]:
    reqs = []
    for cand, lang in pairs:
        base = f"{lang}:{cand['source']}:{canonical_json(cand['loc'])}"
        for part in ("instruction", "output"):
            reqs.append(Request(f"{base}:{part}", translation_messages(cand[part], cand["lang"], lang),
                                meta={"lang": lang, "source": cand[part]}))
    return reqs


def synthesise(recipe: Recipe, ctx: ReadContext, out: Path, fingerprint: str, lid_stage, cache_dir: str | None) -> Source | None:
    """Run the LLM step (answers come from the cache when already paid for) and return the source
    that reads its results, or None when synthesis is off."""
    cfg = recipe.construction.synthesis
    if not cfg.enabled:
        return None
    stage_dir = StageDir(out, "synthesis", fingerprint)
    rows_path = stage_dir.file("rows.jsonl")
    source = Source(name="synthesis", format="synthesised", path=str(rows_path), license=cfg.license, terms="unknown")
    if stage_dir.result("synthesis") is not None and rows_path.is_file():
        return source
    pairs = plan_pairs(recipe, ctx)
    requests = _requests(pairs)
    client = step_client(cfg, cache_dir, run_id=fingerprint[:16])
    validate = checked_by_lid(lid_stage)

    log.info("synthesis: %d instructions x languages -> %d requests to %s", len(pairs), len(requests), cfg.model)
    outcomes = client.run(requests, validator=validate, batch=cfg.batch)
    lines = []
    for i, (cand, lang) in enumerate(pairs):
        inst, outp = outcomes[2 * i], outcomes[2 * i + 1]
        origin = {"source": cand["source"], **cand["loc"]}
        failed = next((o for o in (inst, outp) if not o.ok), None)
        if failed is not None:
            lines.append({"lang": lang, "origin": origin, "reason": failed.reason, "detail": failed.detail,
                          "raw": failed.text or cand[("instruction", "output")[failed is outp]]})
            continue
        lines.append({"lang": lang, "origin": origin, "from_lang": cand["lang"], "instruction": inst.text.strip(), "output": outp.text.strip(),
                      "source_instruction": cand["instruction"], "source_output": cand["output"],
                      "generation": {**outp.provenance(cfg.model), "instruction_cache_key": inst.key}})
    with atomic_path(rows_path) as tmp:
        tmp.write_text("".join(json.dumps(line, ensure_ascii=False, sort_keys=True) + "\n" for line in lines), encoding="utf-8")
    ok = sum("reason" not in line for line in lines)
    stage_dir.complete("synthesis", {"pairs": len(pairs), "ok": ok, "failed": len(lines) - ok})
    log.info("synthesis: %d records made, %d generations rejected", ok, len(lines) - ok)
    return source
