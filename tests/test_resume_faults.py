"""Resume after kill -9, a Dask cluster started by hand, a worker lost mid-task, unwritable output."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from contract import check_contract, tree_bytes

ROOT = Path(__file__).resolve().parents[1]
# Small enough to build in seconds, with enough tasks (about 30) to interrupt one half-way.
ARGS = ["--recipe", str(ROOT / "pipelines/local.yaml"), "--sample", "20", "--langs", "swh_Latn,yor_Latn,hin_Deva,arb_Arab"]


def cli(*args: str, env: dict | None = None, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "datakit.build", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})}, **kw)


def done_markers(out: Path) -> int:
    return len(list((out / ".datakit" / "prepare").glob("*/_done/*.done.json")))


@pytest.fixture(scope="module")
def reference(corpus, tmp_path_factory) -> Path:
    """The same build, never interrupted."""
    out = tmp_path_factory.mktemp("reference") / "out"
    proc = cli(*ARGS, "--data-dir", str(corpus), "--output", str(out), "--workers", "1")
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    return out


def test_killed_driver_resumes_to_the_same_bytes_without_redoing_tasks(reference, corpus, tmp_path):
    out = tmp_path / "out"
    args = [*ARGS, "--data-dir", str(corpus), "--output", str(out), "--workers", "1"]
    proc = cli(*args, start_new_session=True)
    deadline = time.time() + 240
    while done_markers(out) < 10 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, "the build finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and its worker processes, at once
    proc.wait()
    finished = {p: p.stat().st_mtime_ns for p in (out / ".datakit" / "prepare").glob("*/_done/*.done.json")}
    assert not (out / "manifest.json").exists()

    again = cli(*args)
    _, err = again.communicate(timeout=600)
    assert again.returncode == 0, err
    assert "resuming an unfinished build" in err and "reused from an earlier run" in err
    for p, mtime in finished.items():
        assert p.stat().st_mtime_ns == mtime, "finished tasks are not redone"
    check_contract(out)
    assert tree_bytes(out, "data", "rejected") == tree_bytes(reference, "data", "rejected")


def test_an_unfinished_build_is_not_mixed_with_a_changed_recipe(corpus, tmp_path):
    out = tmp_path / "out"
    args = [*ARGS, "--data-dir", str(corpus), "--output", str(out), "--workers", "1"]
    proc = cli(*args, start_new_session=True)
    while done_markers(out) < 3 and proc.poll() is None:
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    changed = cli(*args, "--seed", "99")
    _, err = changed.communicate(timeout=300)
    assert changed.returncode == 2 and "unfinished build of a different recipe" in err and "--overwrite" in err
    clean = cli(*args, "--seed", "99", "--overwrite")
    _, err = clean.communicate(timeout=300)
    assert clean.returncode == 0, err
    check_contract(out)


def test_unwritable_output_is_a_clear_error(corpus, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as a user that can write anywhere (root)")
        proc = cli(*ARGS, "--data-dir", str(corpus), "--output", str(locked / "out"))
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 2 and "permission denied" in err and "Traceback" not in err
    finally:
        locked.chmod(0o700)


def test_a_full_disk_is_a_clear_error_and_leaves_nothing_half_written(corpus, tmp_path):
    # A file-size limit stands in for a full disk: every write beyond 64 KB fails with EFBIG.
    out = tmp_path / "full"
    proc = subprocess.Popen(f"ulimit -f 64; exec {sys.executable} -m datakit.build " + " ".join(ARGS) +
                            f" --data-dir {corpus} --output {out} --workers 1", shell=True, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 2 and "file size limit reached" in err and "run the same command again" in err
    assert not (out / "manifest.json").exists()
    assert not list(out.rglob(".*.tmp-*")), "no half-written file is left"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def cluster(tmp_path):
    """A Dask cluster started the way a user starts one: `dask scheduler` and two `dask worker`s."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    dask = str(Path(sys.executable).parent / "dask")
    procs = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--dashboard-address", ":0"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path)]
    time.sleep(2)
    workers = [subprocess.Popen([dask, "worker", address, "--nthreads", "1", "--nworkers", "1", "--no-nanny"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path) for _ in range(2)]
    from distributed import Client

    with Client(address, timeout="30s") as c:
        c.wait_for_workers(2, timeout=60)
    yield address, workers
    for p in procs + workers:
        p.kill()
        p.wait()


def test_an_existing_cluster_gives_the_same_bytes_even_when_a_worker_dies(reference, corpus, cluster, tmp_path):
    address, workers = cluster
    out = tmp_path / "out"
    proc = cli(*ARGS, "--data-dir", str(corpus), "--output", str(out), "--scheduler", address)
    while done_markers(out) < 8 and proc.poll() is None:
        time.sleep(0.1)
    workers[0].kill()  # lost mid-run: its tasks go to the other worker
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert f"attached to Dask scheduler {address}" in err and "Dask dashboard" in err
    assert tree_bytes(out, "data", "rejected") == tree_bytes(reference, "data", "rejected")


def test_datatrove_engine_on_an_existing_dask_cluster(reference, corpus, cluster, tmp_path):
    address, _ = cluster
    out = tmp_path / "out"
    proc = cli(*ARGS, "--data-dir", str(corpus), "--output", str(out), "--scheduler", address, "--engine", "datatrove")
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert "engine: datatrove (Dask executor" in err
    assert tree_bytes(out, "data", "rejected") == tree_bytes(reference, "data", "rejected")
