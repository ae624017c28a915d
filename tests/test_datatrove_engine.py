"""The datatrove engine: same bytes as the Dask engine, a few ranks per phase whatever the number
of jobs, resumes; any datatrove pipeline on Dask."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from contract import check_contract, tree_bytes

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["--recipe", str(ROOT / "pipelines/local.yaml"), "--sample", "15", "--langs", "swh_Latn,tha_Thai", "--workers", "2"]


def build(corpus: Path, out: Path, *extra: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "datakit.build", *ARGS, "--data-dir", str(corpus), "--output", str(out), *extra],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return proc.stderr


def test_datatrove_engine_writes_the_same_bytes_as_dask(corpus, tmp_path):
    build(corpus, tmp_path / "dask")
    log = build(corpus, tmp_path / "datatrove", "--engine", "datatrove")
    assert "engine: datatrove (LocalPipelineExecutor" in log
    check_contract(tmp_path / "datatrove")
    assert tree_bytes(tmp_path / "datatrove", "data", "rejected") == tree_bytes(tmp_path / "dask", "data", "rejected")
    # datatrove's own completion files let a re-run skip the finished ranks.
    again = build(corpus, tmp_path / "datatrove", "--engine", "datatrove")
    jobs, ranks = _jobs(again, "prepare")
    assert _reused(again, "prepare") == jobs > ranks  # more partitions than ranks: a rank loops over its share
    # A rank stopped part way (its completion marker gone) redoes nothing its partitions and shards finished.
    for marker in (tmp_path / "datatrove").glob(".datakit/datatrove/*/*/logs/completions/00000"):
        marker.unlink()
    resumed = build(corpus, tmp_path / "datatrove", "--engine", "datatrove")
    assert _reused(resumed, "prepare") == _jobs(resumed, "prepare")[0] and _reused(resumed, "write") == _jobs(resumed, "write")[0]
    assert tree_bytes(tmp_path / "datatrove", "data", "rejected") == tree_bytes(tmp_path / "dask", "data", "rejected")


def _jobs(log: str, label: str) -> tuple[int, int]:
    """(jobs, datatrove ranks) of a phase, from the build's log."""
    found = re.search(rf"{label}: (\d+) jobs? in (\d+) datatrove tasks?", log)
    return int(found.group(1)), int(found.group(2))


def _reused(log: str, label: str) -> int:
    found = re.search(rf"{label}: \d+ jobs? in \d+ datatrove tasks?, (\d+) reused", log)
    return int(found.group(1)) if found else 0


@dataclass
class Square:
    value: int
    pid: int
    reused: bool = False


def square(job: int) -> Square:
    """A job as the engine sees one; in the test module, so the engine's worker processes import it."""
    return Square(job * job, os.getpid())


def test_map_runs_a_few_ranks_each_over_many_jobs_and_resumes(tmp_path):
    from datakit.engine.datatrove import DatatroveEngine

    jobs = list(range(-20, 17))
    with DatatroveEngine(2, tmp_path) as engine:
        first = engine.map(square, jobs, "squares")
    assert [r.value for r in first] == [j * j for j in jobs] and not any(r.reused for r in first)
    assert os.getpid() not in {r.pid for r in first} and len({r.pid for r in first}) <= 2
    (phase,) = tmp_path.iterdir()
    completions = phase / "logs" / "completions"
    ranks = sorted(completions.iterdir())
    assert 2 <= len(ranks) < len(jobs)  # ranks per phase: set by the workers, not by the jobs

    # All ranks complete: nothing runs, every result comes back marked as reused.
    with DatatroveEngine(2, tmp_path) as engine:
        again = engine.map(square, jobs, "squares")
    assert [r.value for r in again] == [r.value for r in first] and all(r.reused for r in again)
    assert [r.pid for r in again] == [r.pid for r in first]

    # One rank not complete: its jobs run again, in new workers; the others' results are reused.
    ranks[1].unlink()
    with DatatroveEngine(2, tmp_path) as engine:
        resumed = engine.map(square, jobs, "squares")
    assert [r.value for r in resumed] == [r.value for r in first]
    rerun = [i for i, r in enumerate(resumed) if not r.reused]
    assert 0 < len(rerun) < len(jobs) and all(resumed[i].pid != first[i].pid for i in rerun)


def test_any_datatrove_pipeline_runs_on_dask(tmp_path):
    from datatrove.pipeline.filters import LambdaFilter
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter
    from distributed import Client, LocalCluster

    from datakit.engine.datatrove import DaskPipelineExecutor

    src = tmp_path / "in"
    src.mkdir()
    for i in range(4):
        rows = [{"text": f"document {i}-{j} " + "word " * (j % 7), "id": f"{i}-{j}"} for j in range(50)]
        (src / f"part{i}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    pipeline = [JsonlReader(str(src)), LambdaFilter(lambda doc: len(doc.text.split()) > 3), JsonlWriter(str(tmp_path / "out"), compression=None)]
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, Client(cluster) as client:
        executor = DaskPipelineExecutor(pipeline, client, tasks=4, logging_dir=str(tmp_path / "logs"))
        stats = executor.run()
        assert sorted(p.name for p in (tmp_path / "logs" / "completions").iterdir()) == ["00000", "00001", "00002", "00003"]
        kept = [json.loads(line) for f in sorted((tmp_path / "out").glob("*.jsonl")) for line in f.read_text().splitlines()]
        assert len(kept) == sum(1 for i in range(4) for j in range(50) if 2 + j % 7 > 3)
        assert stats is not None
        # A second run skips the completed ranks.
        assert DaskPipelineExecutor(pipeline, client, tasks=4, logging_dir=str(tmp_path / "logs")).get_incomplete_ranks() == []


def test_the_engine_on_dask_runs_a_few_ranks_too(tmp_path):
    from distributed import Client, LocalCluster

    from datakit.engine.datatrove import DatatroveEngine

    jobs = list(range(23))
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, Client(cluster) as client:
        with DatatroveEngine(2, tmp_path, client=client) as engine:
            results = engine.map(square, jobs, "squares")
        workers = set(client.run(os.getpid).values())
    assert [r.value for r in results] == [j * j for j in jobs]
    assert {r.pid for r in results} <= workers
    (phase,) = tmp_path.iterdir()
    assert 2 <= len(list((phase / "logs" / "completions").iterdir())) < len(jobs)
