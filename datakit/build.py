"""`python -m datakit.build`: from a recipe and its sources to a Hub-ready sharded corpus.

Read top-down, this is the whole build:
  1. load the recipe and check every source can be reached before anything runs;
  2. plan partitions and run each as a task (`partition.py`: read -> construct -> per-record
     stages -> work files);
  3. the whole-corpus steps on compact keys (`corpus_steps/run.py`: exact dedup, near dedup, balance);
  4. plan shards by language and write them, sorted by id (`write/shards.py`);
  5. write rejected/, stats.json, the dataset card and manifest.json, and print the funnel.
Every phase's outputs are content-addressed task outputs (`store.py`), so a re-run resumes.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import logging
import os
import shlex
import shutil
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
from rich.console import Console
from rich.logging import RichHandler

import datakit
from datakit import languages
from datakit.console import print_funnel, print_plan
from datakit.construct.native import template_report, translate_templates
from datakit.construct.rerender import rerender
from datakit.construct.synthesis import synthesise
from datakit.corpus_steps import near_dedup
from datakit.corpus_steps.balance import validation_rows
from datakit.corpus_steps.file_cache import WorkFileCache
from datakit.corpus_steps.memory import prefer_jemalloc
from datakit.corpus_steps.run import CorpusResult, cells_after_dedup, run_corpus_steps
from datakit.engine import Engine
from datakit.engine.dask import DaskEngine
from datakit.errors import DatakitError, RecipeError, SourceError
from datakit.hashing import canonical_json
from datakit.models import resolve_lid_model
from datakit.output_folder import STATE, WrittenFiles, check_resume, open_output_folder
from datakit.partition import PartitionJob, PartitionResult, count_rows, process_partition
from datakit.quota import read_by_quota
from datakit.recipe import Recipe, load_recipe, with_overrides
from datakit.record_stages.decontaminate import Index, build_index, save_index
from datakit.record_stages.lid import LanguageId
from datakit.record_stages.order import StageResources, stage_names
from datakit.resources import pipeline_path
from datakit.sources import adapter_for
from datakit.sources.base import Partition, ReadContext, SourceWarning, collect_warnings
from datakit.sources.hub import check_reachable
from datakit.sources.join import build_join_index
from datakit.sources.rows import local_root
from datakit.stats import StageStats
from datakit.store import WORK_DIR, StageDir, atomic_path, prune, write_json
from datakit.write.card import render_card
from datakit.write.manifest import build_manifest, file_entry
from datakit.write.shards import expand_copies, plan_shards, write_shard

if TYPE_CHECKING:  # datatrove is imported only when its engine is chosen (make_engine)
    from datakit.engine.datatrove import DatatroveEngine

log = logging.getLogger("datakit")

DEFAULT_RECIPE = "bayling2.yaml"


@dataclass
class BuildOptions:
    recipe: str | None = None
    data_dir: str | None = None
    mirror: str | None = None
    langs: str = "all"
    output: str = "out"
    sample: int | None = None
    workers: int | None = None
    scheduler: str | None = None
    strict: bool = False
    overwrite: bool = False
    dry_run: bool = False
    engine: str = "dask"
    cache_dir: str | None = None
    rows_per_task: int = 200_000
    overrides: dict[str, Any] = field(default_factory=dict)
    command: str = "python -m datakit.build"


@dataclass
class BuildResult:
    out: Path
    stats: dict[str, Any]
    manifest: dict[str, Any]
    seconds: float


# ---------------------------------------------------------------------------- 1. recipe


def resolve_recipe(opts: BuildOptions) -> tuple[Recipe, Path]:
    path = Path(opts.recipe) if opts.recipe else pipeline_path(DEFAULT_RECIPE)
    recipe = load_recipe(path)
    if opts.overrides:
        recipe = with_overrides(recipe, **opts.overrides)
    return recipe, path


def check_options(opts: BuildOptions) -> None:
    """Values a reader would otherwise trip on deep inside (islice, Dask's cluster), checked at the edge."""
    if opts.sample is not None and opts.sample < 1:
        raise DatakitError(f"--sample must be a positive number of rows (got {opts.sample}); leave it out to read everything")
    if opts.workers is not None and opts.workers < 1:
        raise DatakitError(f"--workers must be at least 1 (got {opts.workers}); leave it out for one per CPU core")
    if opts.rows_per_task < 1:
        raise DatakitError(f"--rows-per-task must be at least 1 (got {opts.rows_per_task})")
    if not opts.langs.strip(" ,"):
        raise DatakitError("--langs is empty: give 'all', a comma list of codes or a group name (see --help)")


def read_context(recipe: Recipe, recipe_path: Path, opts: BuildOptions) -> ReadContext:
    if opts.data_dir:
        data_dir = Path(opts.data_dir)
    elif recipe.data_dir:
        data_dir = Path(recipe.data_dir)
        data_dir = data_dir if data_dir.is_absolute() else (recipe_path.parent / data_dir)
    else:
        data_dir = None
    if data_dir is not None and not data_dir.is_dir():
        raise DatakitError(f"data folder not found: {data_dir}")
    mirror = Path(opts.mirror) if opts.mirror else None
    if mirror is not None and not mirror.is_dir():
        raise DatakitError(f"mirror folder not found: {mirror}")
    return ReadContext(data_dir=data_dir.resolve() if data_dir else None, mirror=mirror.resolve() if mirror else None,
                       sample=opts.sample, langs=languages.resolve_langs(opts.langs),
                       pivots=tuple(recipe.pivots), rows_per_task=opts.rows_per_task, seed=recipe.seed)


def check_sources(recipe: Recipe, ctx: ReadContext) -> None:
    """Every local path exists and every Hub id answers (or is mirrored), before any work starts."""
    for source in recipe.sources:
        if source.hub is not None:
            check_reachable(source, ctx.mirror)
        else:
            local_root(source, ctx)


def input_fingerprint(recipe: Recipe, ctx: ReadContext) -> str:
    """What the sources are: local files by name, size and modification time; Hub ids by revision."""
    h = hashlib.sha256()
    for source in recipe.sources:
        h.update(source.name.encode())
        if source.hub is not None:
            h.update(f"{source.hub}@{source.revision}".encode())
            continue
        root = local_root(source, ctx)
        for p in sorted([root] if root.is_file() else root.rglob("*")):
            if p.is_file():
                st = p.stat()
                h.update(f"{p.relative_to(root) if p != root else p.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()


def fingerprints(recipe: Recipe, ctx: ReadContext, lid_model: str | None, decontamination: Index | None) -> dict[str, str]:
    """One fingerprint per phase, each folding in the ones before: change a setting, redo from there."""
    r = recipe.model_dump(mode="json", by_alias=True)
    prepare_part = {k: r[k] for k in ("seed", "pivots", "sources", "construct", "filters")}
    model = (Path(lid_model).name, Path(lid_model).stat().st_size) if lid_model else None
    evals = hashlib.sha256(str(sorted(decontamination.grams)).encode()).hexdigest() if decontamination else None
    context = {"sample": ctx.sample, "langs": sorted(ctx.langs) if ctx.langs else None, "rows_per_task": ctx.rows_per_task,
               "lid_model": model, "eval_sets": evals, "minhash": near_dedup.ALGORITHM}

    def h(*parts: Any) -> str:
        return hashlib.sha256(canonical_json([datakit.__version__, *parts]).encode()).hexdigest()

    fp = {"prepare": h(prepare_part, context, input_fingerprint(recipe, ctx))}
    fp["exact_dedup"] = h(fp["prepare"], r["dedup"]["exact"])
    fp["near_dedup"] = h(fp["exact_dedup"], r["dedup"]["near"])
    fp["write"] = h(fp["near_dedup"], r["balance"], r["seed"], r["output"])
    return fp


# ---------------------------------------------------------------------------- 2. partitions


def plan_partitions(recipe: Recipe, ctx: ReadContext) -> list[Partition]:
    parts = []
    for source in recipe.sources:
        found = adapter_for(source).partitions(source, ctx)
        log.info("source %-18s %4d task%s", source.name, len(found), "" if len(found) == 1 else "s")
        parts.extend(found)
    return parts


def check_selection(recipe: Recipe, ctx: ReadContext, parts: list[Partition]) -> list[SourceWarning]:
    """Selected languages (--langs) that no source has data for: an error when none of them has
    any (the build would hold only the hubs), else a warning naming them. Where a source's
    languages only show in its rows (a Hub bitext without configs), a warning is all it can be."""
    if ctx.langs is None:
        return []
    asked = sorted(ctx.langs - set(ctx.pivots))
    langs_of = {s.name: s.lang for s in recipe.sources}
    found = {code for p in parts for code in p.langs} | {lang for lang in langs_of.values() if lang}
    unknown = any(not p.langs and not langs_of.get(p.source) for p in parts)
    missing = [c for c in asked if c not in found]
    if missing and len(missing) == len(asked) and not unknown:
        raise DatakitError(f"--langs: no source has data for {', '.join(missing)}; the build would hold only the hubs "
                           f"{', '.join(ctx.pivots)}. Languages with data: {_some(sorted(found - set(ctx.pivots)))}")
    if not missing:
        return []
    return [SourceWarning("", "--langs", "no_data", f"no source {'is known to have' if unknown else 'has'} data for "
                          f"{', '.join(missing)}: selected, but nothing is built for {'it' if len(missing) == 1 else 'them'}")]


def _some(codes: list[str], n: int = 12) -> str:
    return ", ".join(codes[:n]) + (f" and {len(codes) - n} more" if len(codes) > n else "") if codes else "none"


def contributed_nothing(recipe: Recipe, parts: list[Partition], counts: Counter) -> list[SourceWarning]:
    """Sources, and languages they were planned for, with no record in data/: named, so that a
    loss by rejection (misaligned, unreadable, filtered) is never only a cell in a table."""
    rows_of: Counter = Counter()
    langs_written = set()
    for (_, lang, _, source), n in counts.items():
        rows_of[source] += n
        langs_written.add(lang)
    found = [SourceWarning(s.name, s.hub or s.path or "", "no_records", "no record of this source is in data/: see stats.json "
                           "(`sources`) and rejected/ for where its rows went") for s in recipe.sources if rows_of[s.name] == 0]
    planned = sorted({code for p in parts for code in p.langs} - langs_written)
    if planned:
        found.append(SourceWarning("", "languages", "no_records", f"no record in data/ for {_some(planned)}, though sources were "
                                   "read for them: see stats.json and rejected/ for why"))
    return found


def log_warnings(warnings: list[SourceWarning]) -> None:
    for w in warnings:
        log.warning("%s", w)


# ---------------------------------------------------------------------------- 5. finalise


def collect_rejected(out: Path, owned: WrittenFiles, partitions: list[PartitionResult], corpus_files: dict[str, list[str]]) -> list[Path]:
    """Materialise out/rejected/<stage>/<task>.parquet from the task outputs (hard links where
    possible), in place of the rejected files an earlier build wrote there."""
    pairs = [(stage, Path(f)) for p in partitions for stage, f in p.rejected_files.items()]
    pairs += [(stage, Path(f)) for stage, fs in corpus_files.items() for f in fs]
    targets = [(out / "rejected" / stage / src.name, src) for stage, src in pairs]
    owned.remove(under="rejected/")
    owned.add(dst.relative_to(out).as_posix() for dst, _ in targets)
    for dst, src in targets:
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.unlink(missing_ok=True)
        try:
            os.link(src, dst)
        except OSError:
            shutil.copyfile(src, dst)
    return [dst for dst, _ in targets]


def assemble_stats(recipe: Recipe, partitions: list[PartitionResult], corpus: CorpusResult) -> dict[str, Any]:
    """stats.json: per stage, per-record stages summed over tasks then the corpus steps; the same per
    source; each stage checked against the identity and against what the stage before it kept."""
    names = stage_names(recipe)
    totals = {name: StageStats(name) for name in names}
    per_source: dict[str, dict[str, StageStats]] = {}
    for p in partitions:
        src = per_source.setdefault(p.source, {name: StageStats(name) for name in names})
        for s in p.stats:
            st = StageStats.from_json(s)
            totals[st.name].merge(st)
            src[st.name].merge(StageStats.from_json(s))
    stages = [totals[n] for n in names] + corpus.stages
    for i, st in enumerate(stages):
        if not st.balanced:
            raise AssertionError(f"stats identity broken at stage {st.name}: {st.to_json()}")
        if i and stages[i - 1].kept != st.in_:
            raise AssertionError(f"stage {st.name} received {st.in_} records, {stages[i - 1].name} kept {stages[i - 1].kept}")
    sources = {}
    for name in sorted(per_source):
        extra = corpus.per_source.get(name, [StageStats("exact_dedup"), StageStats("balance")])
        sources[name] = [s.to_json() for s in [*per_source[name].values(), *extra]]
    return {"stages": [s.to_json() for s in stages], "sources": sources, "shortfall": corpus.shortfall,
            "quotas": corpus.quotas}


def write_profile(out: Path, partitions: list[PartitionResult], phases: dict[str, float]) -> None:
    """Where the time went: CPU seconds per per-record stage (summed over tasks) and wall seconds
    per phase, logged and kept in .datakit/profile.json (not in stats.json: timings vary)."""
    per_stage: Counter = Counter()
    for p in partitions:
        if not p.reused:
            per_stage.update(p.seconds)
    profile = {"task_cpu_seconds": {k: round(v, 1) for k, v in per_stage.most_common()},
               "phase_wall_seconds": {k: round(v, 1) for k, v in phases.items()}}
    write_json(out / WORK_DIR / "profile.json", profile)
    if per_stage:
        log.info("profile (task CPU s): %s", ", ".join(f"{k} {v:.0f}" for k, v in per_stage.most_common()))


def split_rows(selected: pa.Table, recipe: Recipe) -> pa.Table:
    """Every row that goes into data/ (repeats included), each with its split."""
    rows = expand_copies(selected.select(["part", "row", "id", "lang", "nbytes", "copies"]))
    v = recipe.output.validation
    chosen = pa.array(np.flatnonzero(rows.column("copy").to_numpy() == 0))
    val = np.zeros(rows.num_rows, dtype=bool)
    if v.fraction > 0 and v.max_rows > 0:
        val[chosen.to_numpy()] = validation_rows(rows.column("id").take(chosen), rows.column("lang").take(chosen), fraction=v.fraction,
                                                 min_rows=v.min_rows, max_rows=v.max_rows, min_language_rows=v.min_language_rows,
                                                 seed=recipe.seed)
    return rows.append_column("split", pa.array(np.where(val, "validation", "train")))


def data_counts(selected: pa.Table, file_sources: list[str]) -> Counter:
    """Rows written per (group, lang, task, source), repeats included, counted in Arrow."""
    counts: Counter = Counter()
    if selected.num_rows == 0:
        return counts
    per_part = selected.group_by(["group", "lang", "task", "part"]).aggregate([("copies", "sum")])
    for g, lang, t, part, n in zip(*(per_part.column(c).to_pylist() for c in ("group", "lang", "task", "part", "copies_sum")), strict=True):
        counts[(g, lang, t, file_sources[part])] += n
    return counts


def source_entries(recipe: Recipe, counts: Counter) -> list[dict[str, Any]]:
    """What the manifest says of each source: where it is from (a Hub source with its pinned revision),
    its licence and terms, rows in data/."""
    rows = Counter()
    for (_, _, _, source), n in counts.items():
        rows[source] += n
    return [{"name": s.name, "from": s.hub or s.path, **({"revision": s.revision} if s.hub else {}), "license": s.license,
             "terms": s.terms, "url": s.url, "rows": rows[s.name]} for s in recipe.sources]


# ---------------------------------------------------------------------------- the build


class _DatatroveOnDask:
    """datatrove's engine whose ranks run on a Dask cluster (the local one, or --scheduler's)."""

    def __init__(self, opts: BuildOptions, work_dir: Path, console: Console):
        self.dask = DaskEngine(opts.workers, opts.scheduler, console)
        self.opts, self.work_dir = opts, work_dir

    def __enter__(self) -> DatatroveEngine:
        from datakit.engine.datatrove import DatatroveEngine

        self.dask.__enter__()
        return DatatroveEngine(self.opts.workers, self.work_dir, client=self.dask.client).__enter__()

    def __exit__(self, *exc: Any) -> None:
        self.dask.__exit__(*exc)


def run_partitions(engine: Engine, jobs: list[PartitionJob], label: str = "prepare") -> list[PartitionResult]:
    """Partition tasks: as datakit's steps in a datatrove pipeline on the datatrove engine, as plain
    tasks elsewhere (the same files either way)."""
    if not isinstance(engine, DaskEngine):  # datatrove's (imported only when it is chosen, see make_engine)
        from datakit.datatrove_steps.partition import partition_pipeline
        from datakit.engine.datatrove import DatatroveEngine

        if isinstance(engine, DatatroveEngine):
            return engine.run_pipeline(label, jobs, partition_pipeline)
    return engine.map(process_partition, jobs, label)


def make_engine(opts: BuildOptions, out: Path, fp: dict[str, str], console: Console):
    """Dask (the default: a LocalCluster, or --scheduler's cluster) or datatrove (its
    LocalPipelineExecutor, or its ranks on Dask with --scheduler)."""
    if opts.engine == "dask":
        return DaskEngine(opts.workers, opts.scheduler, console)
    from datakit.engine.datatrove import DatatroveEngine

    work_dir = out / WORK_DIR / "datatrove" / fp["write"][:16]
    if opts.scheduler:
        return _DatatroveOnDask(opts, work_dir, console)
    return DatatroveEngine(opts.workers, work_dir)


def run_build(opts: BuildOptions, console: Console | None = None) -> BuildResult:
    console = console or Console(stderr=True)
    started = time.perf_counter()
    prefer_jemalloc()
    check_options(opts)
    recipe, recipe_path = resolve_recipe(opts)
    ctx = read_context(recipe, recipe_path, opts)
    check_sources(recipe, ctx)
    out = Path(opts.output)
    open_output_folder(out, opts.overwrite)
    lid_model = str(resolve_lid_model(recipe.filters.lid.model, ctx.mirror)) if recipe.filters.lid.enabled else None
    decontamination = build_index(recipe.filters.decontaminate, ctx.data_dir, ctx.mirror) if recipe.filters.decontaminate.sets else None
    fp = fingerprints(recipe, ctx, lid_model, decontamination)
    log.info("recipe %s (%s), seed %d, languages: %s%s", recipe.name, recipe_path, recipe.seed,
             "all" if ctx.langs is None else f"{len(ctx.langs)} selected", f", sample {ctx.sample} rows per source" if ctx.sample else "")
    check_resume(out, fp)
    write_json(out / WORK_DIR / STATE, {"status": "running", "fingerprints": fp, "command": opts.command})

    lid_stage = LanguageId(recipe.filters.lid, lid_model) if lid_model else None
    synthesis = synthesise(recipe, ctx, out, fp["prepare"], lid_stage, opts.cache_dir)
    if synthesis is not None:  # its results are read like one more source
        recipe = recipe.model_copy(update={"sources": [*recipe.sources, synthesis]})
    native = translate_templates(recipe, ctx, out, fp["prepare"], lid_stage, opts.cache_dir)
    joins = {s.name: str(build_join_index(recipe, s, ctx, StageDir(out, "join", fp["prepare"]).file(f"{s.name}.sqlite")))
             for s in recipe.sources if s.join is not None}

    index_file = save_index(decontamination, StageDir(out, "prepare", fp["prepare"]).file("_index", "decontamination.pickle")) if decontamination else None
    resources = StageResources(lid_model=lid_model, contamination=index_file, llm_cache=opts.cache_dir, run_id=fp["prepare"][:16])
    with collect_warnings() as warnings:
        planned = plan_partitions(recipe, ctx)
    warnings += check_selection(recipe, ctx, planned)
    log_warnings(warnings)
    if opts.strict and warnings:
        raise SourceError(f"--strict: {warnings[0]}" + (f" (and {len(warnings) - 1} more warnings)" if len(warnings) > 1 else ""))
    owned = WrittenFiles(out)
    with make_engine(opts, out, fp, console) as engine:
        jobs = [PartitionJob(recipe=recipe, partition=p, ctx=ctx, out=str(out), fingerprint=fp["prepare"], strict=opts.strict,
                             resources=resources, native=native, join_index=joins.get(p.source)) for p in planned]
        phase_seconds = {}
        clock = time.perf_counter()
        cache = WorkFileCache()  # what dedup reads of the work files: once for every check of reading by quota and the corpus steps
        reading = read_by_quota(recipe, jobs, functools.partial(run_partitions, engine), functools.partial(engine.map, count_rows),
                                functools.partial(cells_after_dedup, recipe, cache=cache))
        partitions = reading.results
        phase_seconds["prepare (wall)"], clock = time.perf_counter() - clock, time.perf_counter()
        # Without a target nothing was read before: the cache would only hold near-dedup columns.
        corpus = run_corpus_steps(recipe, partitions, fp, out, engine, reading.quotas, cache if reading.quotas is not None else None)
        phase_seconds["dedup + balance (wall)"], clock = time.perf_counter() - clock, time.perf_counter()
        if opts.dry_run:
            print_plan(console, recipe, corpus.available, corpus.quotas, corpus.shortfall)
            return BuildResult(out, {"stages": [s.to_json() for s in corpus.stages], "plan": corpus.quotas}, {}, time.perf_counter() - started)
        selected = corpus.selected
        native_of = native or {}
        shard_jobs = plan_shards(split_rows(selected, recipe), corpus.files, recipe.output, str(out), fp["write"],
                                 repeat_for=lambda lang: functools.partial(rerender, seed=recipe.seed, native=native_of.get(lang, ())))
        owned.add(job.path for job in shard_jobs)
        written = engine.map(write_shard, shard_jobs, "write")
        phase_seconds["write shards (wall)"] = time.perf_counter() - clock

    write_profile(out, partitions, phase_seconds)
    owned.remove(under="data/", keep={w.path for w in written})
    rejected_paths = collect_rejected(out, owned, partitions, corpus.rejected_files)
    stats = assemble_stats(recipe, partitions, corpus)
    counts = data_counts(selected, corpus.file_sources)
    late = contributed_nothing(recipe, planned, counts)
    log_warnings(late)
    if warnings or late:  # what contributed nothing, and why: in the log, here and in the card
        stats["warnings"] = [w.to_json() for w in [*warnings, *late]]
    joined = Counter()
    for w in written:
        joined[w.path.split("/")[1]] += w.joined
    if joins:  # per language: records whose pivot text was joined through another language
        stats["joined"] = {lang: n for lang, n in sorted(joined.items()) if n}
    if reading.quotas is not None:  # what reading by quota read of each source
        stats["reading"] = {"rounds": reading.rounds, "sources": {n: s.to_json() for n, s in reading.sources.items()},
                            **({"metadata_mismatches": reading.mismatches} if reading.mismatches else {})}
    templates = template_report(out, fp["prepare"])
    if templates is not None:  # what the LLM made of our templates, per language
        stats["native_templates"] = templates
    owned.add(["stats.json", "README.md", "manifest.json"])
    write_json(out / "stats.json", stats)
    build_info = {"langs": "all" if ctx.langs is None else sorted(ctx.langs), "sample": ctx.sample,
                  "stages": [s["name"] for s in stats["stages"]]}
    data_files = [out / w.path for w in written]
    manifest = build_manifest(out, recipe_hash=recipe.fingerprint(), recipe_name=recipe.name, seed=recipe.seed, build=build_info,
                              files=data_files + rejected_paths + [out / "stats.json"])
    manifest["sources"] = source_entries(recipe, counts)
    splits: dict[str, list[str]] = {}
    for job in shard_jobs:
        if job.split not in splits.setdefault(job.lang, []):
            splits[job.lang].append(job.split)
    card = render_card(recipe=recipe, counts=counts, splits=splits, stats=stats,
                       manifest=manifest, command=opts.command)
    with atomic_path(out / "README.md") as tmp:
        tmp.write_text(card, encoding="utf-8")
    # matplotlib, imported here: a worker process imports this module first (it is the main module)
    from datakit.write.report import write_report

    report = write_report(out, stats=stats, counts=counts, mix=dict(recipe.balance.mix), title=recipe.name,
                          seed=recipe.seed, target_size=recipe.balance.target_size,
                          groups=np.repeat(selected.column("group").to_numpy(zero_copy_only=False), selected.column("copies").to_numpy()),
                          nbytes=np.repeat(selected.column("nbytes").to_numpy(), selected.column("copies").to_numpy()))
    report_files = sorted((out / "report").iterdir())
    owned.add(p.relative_to(out).as_posix() for p in report_files)
    manifest["files"] += [file_entry(out, p) for p in [out / "README.md", *report_files]]
    manifest["files"].sort(key=lambda e: e["path"])
    write_json(out / "manifest.json", manifest)
    prune(out, {stage: {fp[{"synthesis": "prepare", "native_templates": "prepare", "join": "prepare", "datatrove": "write"}.get(stage, stage)]}
                for stage in ("prepare", "exact_dedup", "near_dedup", "write", "synthesis", "native_templates", "join", "datatrove")})
    write_json(out / WORK_DIR / STATE, {"status": "complete", "fingerprints": fp, "command": opts.command})
    seconds = time.perf_counter() - started
    print_funnel(console, stats)
    made = stats["stages"][1]["kept"]
    log.info("wrote %s rows in %d files to %s (%d languages) in %.1f s (%.0f records/s constructed)", f"{manifest['rows']:,}",
             len(written), out, len(splits), seconds, made / max(seconds, 1e-9))
    log.info("report: %s", report.resolve())
    if stats["shortfall"]:
        log.warning("shortfall: the data could not fill every quota: %s", ", ".join(f"{k} {v:,}" for k, v in stats["shortfall"].items()))
    return BuildResult(out, stats, manifest, seconds)


# ---------------------------------------------------------------------------- command line


def parse_mix(text: str) -> dict[str, float]:
    mix = {}
    for item in text.split(","):
        name, _, value = item.partition("=")
        try:
            mix[name.strip()] = float(value)
        except ValueError:
            raise RecipeError(f"--mix: {item!r} is not group=ratio (e.g. zh=0.432,en=0.262,cross_lingual=0.306)") from None
    return mix


def make_parser() -> argparse.ArgumentParser:
    groups = ", ".join(languages.group_names())
    p = argparse.ArgumentParser(
        prog="python -m datakit.build",
        description="Build a multilingual instruction-tuning corpus (BayLing 2 recipe) as sharded Parquet with a dataset card.",
    )
    p.add_argument("--recipe", help=f"recipe YAML (default: pipelines/{DEFAULT_RECIPE}, the full BayLing 2 recipe on Hub sources)")
    p.add_argument("--data-dir", help="folder that the recipe's relative `path:` entries are resolved against")
    p.add_argument("--mirror", help="local mirror of Hub datasets: Hub id org/name is read from DIR/org/name")
    p.add_argument("--langs", default="all", help=f"'all', a comma list of language codes, or named groups: {groups}. The hubs eng_Latn and zho_Hans are always built")
    p.add_argument("--output", default="out", help="output folder (a Hugging Face dataset repository layout); default: out")
    p.add_argument("--sample", type=int, metavar="N", help="read only the first N rows of every source (per language for parallel sources): a quick build")
    p.add_argument("--workers", type=int, metavar="N", help="local Dask worker processes (default: one per CPU core)")
    p.add_argument("--scheduler", metavar="ADDRESS", help="attach to an existing Dask cluster instead of starting a local one")
    p.add_argument("--engine", choices=["dask", "datatrove"], default="dask",
                   help="dask (default): stages as Dask tasks; datatrove: stages as datatrove PipelineSteps under its "
                        "LocalPipelineExecutor (or on Dask with --scheduler). Same output bytes either way")
    p.add_argument("--seed", type=int, help="override the recipe's seed")
    p.add_argument("--target-size", type=int, metavar="N", help="override balance.target_size")
    p.add_argument("--mix", help="override balance.mix, e.g. zh=0.432,en=0.262,cross_lingual=0.306")
    p.add_argument("--temperature", type=float, help="override balance.temperature")
    p.add_argument("--cache-dir", help="the LLM response cache (default: ~/.cache/datakit/llm, or $DATAKIT_CACHE_DIR/llm)")
    p.add_argument("--dry-run", action="store_true", help="print the balance plan (available vs selected per group, language and task) and stop before writing the corpus")
    p.add_argument("--strict", action="store_true", help="stop at the first unreadable input row instead of rejecting it")
    p.add_argument("--overwrite", action="store_true", help="start clean: remove a previous build in the output folder")
    p.add_argument("--rows-per-task", type=int, default=200_000, help=argparse.SUPPRESS)
    p.add_argument("-v", "--verbose", action="store_true", help="more logging")
    return p


ENGINE_FLAGS = {"--workers", "--scheduler", "--engine", "--cache-dir", "-v", "--verbose"}


def command_line(argv: list[str]) -> str:
    """The command as the card shows it: engine-only flags left out, so the card does not depend on them."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in ENGINE_FLAGS:
            skip = "=" not in arg and name not in ("-v", "--verbose")
            continue
        kept.append(arg)
    return "python -m datakit.build " + " ".join(shlex.quote(a) for a in kept)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = make_parser().parse_args(argv)
    console = Console(stderr=True, width=None if sys.stderr.isatty() else 120)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s",
                        handlers=[RichHandler(console=console, show_path=False, show_time=True, markup=False)])
    overrides: dict[str, Any] = {}
    try:
        if args.seed is not None:
            overrides["seed"] = args.seed
        if args.target_size is not None:
            overrides["balance.target_size"] = args.target_size
        if args.mix is not None:
            overrides["balance.mix"] = parse_mix(args.mix)
        if args.temperature is not None:
            overrides["balance.temperature"] = args.temperature
        opts = BuildOptions(recipe=args.recipe, data_dir=args.data_dir, mirror=args.mirror, langs=args.langs, output=args.output,
                            sample=args.sample, workers=args.workers, scheduler=args.scheduler, strict=args.strict,
                            overwrite=args.overwrite, dry_run=args.dry_run, engine=args.engine, cache_dir=args.cache_dir, rows_per_task=args.rows_per_task, overrides=overrides,
                            command=command_line(argv))
        result = run_build(opts, console)
    except DatakitError as e:
        console.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        console.print("interrupted; run the same command again to resume")
        return 130
    if not args.dry_run:
        print(json.dumps({"output": str(result.out), "rows": result.manifest["rows"], "seconds": round(result.seconds, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
