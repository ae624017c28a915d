"""The datatrove engine: same bytes as the Dask engine; any datatrove pipeline on Dask."""

from __future__ import annotations

import json
import subprocess
import sys
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
    assert "reused from an earlier run" in again


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
