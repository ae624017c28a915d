"""`python -m datakit.publish` against a real HTTP Hub on 127.0.0.1 (tests/hub_server.py).

The client is the unmodified huggingface_hub 2.4 on its plain Git LFS path (Xet disabled). One
real build of the local corpus (8 data shards, 4 rejected files) is published again and again:
complete, interrupted and resumed, under 429/5xx/dropped connections, to a branch, and refused by
the licence gate. The server counts what it receives, so "uploads only what is missing" is
measured, not assumed.
"""

from __future__ import annotations

import email.utils
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hub_server import HubServer

from datakit.publish import LAST, PublishError, PublishOptions, Retry, main, publish

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "hf_TestTokenThatMustNeverBePrinted0123"
REPO = "datakit-test/corpus"


@pytest.fixture(scope="module")
def built(corpus, tmp_path_factory) -> Path:
    """A real output folder: 3 languages in 8 shards (8 rows each) and rejected/ from a tight length filter."""
    from datakit.build import BuildOptions, run_build

    out = tmp_path_factory.mktemp("publish") / "out"
    run_build(BuildOptions(recipe=str(ROOT / "pipelines" / "local.yaml"), data_dir=str(corpus), output=str(out), sample=2,
                           langs="swh_Latn", workers=1,
                           overrides={"output.shard_max_rows": 8, "filters.length.max_chars": 600}))
    assert len(list((out / "data").rglob("*.parquet"))) >= 4 and list((out / "rejected").rglob("*.parquet"))
    return out


@pytest.fixture(autouse=True)
def online(monkeypatch):
    """conftest keeps the session offline; publishing talks to the local server only."""
    from huggingface_hub import constants
    from huggingface_hub.utils import disable_progress_bars, enable_progress_bars

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    disable_progress_bars()
    yield
    enable_progress_bars()


@pytest.fixture
def hub(monkeypatch):
    with HubServer(token=TOKEN, multipart_threshold=8000, page_size=5) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
        yield server


def options(folder: Path, hub: HubServer, **kw) -> PublishOptions:
    kw = {"allow_restricted_licenses": True, "commit_files": 3, "token": TOKEN, **kw}
    return PublishOptions(folder=str(folder), repo=REPO, endpoint=hub.endpoint, xet=False, backoff=0.05, **kw)


def manifest_files(folder: Path, rejected: bool = False) -> dict[str, dict]:
    files = json.loads((folder / "manifest.json").read_text())["files"]
    return {e["path"]: e for e in files if rejected or not e["path"].startswith("rejected/")}


def lfs_count(folder: Path, rejected: bool = False) -> int:
    return sum(p.endswith((".parquet", ".png")) for p in manifest_files(folder, rejected))  # LFS by .gitattributes


def copy_output(built: Path, dest: Path) -> Path:
    return Path(shutil.copytree(built, dest, ignore=shutil.ignore_patterns(".datakit")))


def run_cli(args: list[str], hub: HubServer, tmp_path: Path, token: str = TOKEN, timeout: float = 60) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "0", "HF_HUB_DISABLE_XET": "1", "HF_TOKEN": token,
           "HF_HOME": str(tmp_path / "hf-cli"), "HF_ENDPOINT": hub.endpoint}
    return subprocess.Popen([sys.executable, "-m", "datakit.publish", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


# ---------------------------------------------------------------------------- a full publish


def test_publish_matches_manifest_and_rerun_uploads_nothing(built, hub):
    result = publish(options(built, hub, private=True))
    expected = manifest_files(built)
    remote = hub.files(REPO)
    assert set(remote) == set(expected) | {"manifest.json", ".gitattributes"}
    for path, entry in expected.items():
        stored = remote[path]
        assert stored.size == entry["bytes"] and stored.sha256 == entry["sha256"], path
        assert hub.content(stored) == (built / path).read_bytes()
        assert stored.lfs == path.endswith((".parquet", ".png"))  # the repo's .gitattributes
    assert hub.content(remote["manifest.json"]) == (built / "manifest.json").read_bytes()
    assert not any(p.startswith(("rejected/", ".datakit/")) for p in remote), "rejected/ is published only when asked"
    assert hub.repos[f"datasets/{REPO}"].private

    n_data = sum(p.startswith("data/") for p in expected)  # the card, stats and report are committed last, with manifest.json
    assert result.uploaded_files == len(expected) + 1 and result.verified == len(expected) + 1
    assert result.commits == -(-n_data // 3) + 1 == hub.commits_made - 1  # + the repo's first commit
    assert len(hub.lfs_received) == lfs_count(built)
    # the repo never shows a manifest (or card) for data that is not there yet
    for tree in hub.repos[f"datasets/{REPO}"].commits.values():
        if any(p in tree for p in LAST):
            assert set(expected) <= set(tree)

    again = publish(options(built, hub))
    assert (again.uploaded_files, again.commits, again.skipped) == (0, 0, len(expected) + 1)
    assert len(hub.lfs_received) == lfs_count(built)

    # asked for: rejected/ goes up too, and only it is uploaded
    with_rejected = publish(options(built, hub, include_rejected=True))
    rejected = set(manifest_files(built, rejected=True)) - set(expected)
    assert rejected and with_rejected.uploaded_files == len(rejected)
    assert rejected <= set(hub.files(REPO))
    assert len(hub.lfs_received) == lfs_count(built, rejected=True)


def test_revision_creates_branch_and_stale_shards_are_deleted(built, hub):
    from huggingface_hub import HfApi

    publish(options(built, hub, revision="v1"))
    repo = hub.repos[f"datasets/{REPO}"]
    assert set(repo.branches) == {"main", "v1"}
    assert set(hub.files(REPO, "main")) == {".gitattributes"}
    assert set(manifest_files(built)) <= set(hub.files(REPO, "v1"))

    # a shard an older build left on the branch is not in this manifest: deleted in the last commit
    api = HfApi(endpoint=hub.endpoint, token=TOKEN)
    api.upload_file(path_or_fileobj=b"old shard", path_in_repo="data/xxx_Latn/train-00000-of-00001.parquet",
                    repo_id=REPO, repo_type="dataset", revision="v1")
    result = publish(options(built, hub, revision="v1"))
    assert result.deleted == 1 and result.uploaded_files == 0
    assert "data/xxx_Latn/train-00000-of-00001.parquet" not in hub.files(REPO, "v1")

    dry = publish(options(built, hub, revision="v2", dry_run=True))  # v2 would start from main: everything to do
    assert len(dry.planned) == len(manifest_files(built)) + 1 and "v2" not in repo.branches, "a dry run changes nothing"


def test_dry_run_creates_nothing(built, hub):
    result = publish(options(built, hub, dry_run=True))
    assert f"datasets/{REPO}" not in hub.repos and hub.commits_made == 0
    assert set(result.planned) == set(manifest_files(built)) | {"manifest.json"}
    last = [p for p in result.planned if p in LAST or p.startswith("report/")]
    assert set(result.planned[-len(last):]) == set(last) and set(LAST) <= set(last), "card, stats, report and manifest come last"


# ---------------------------------------------------------------------------- faults


def test_interrupted_publish_resumes_uploading_only_what_is_missing(built, tmp_path):
    """Kill the command mid-upload (5th LFS object), run it again: nothing is sent twice."""
    with HubServer(token=TOKEN) as hub:  # basic LFS transfer only, so every object is one PUT
        hub.add_fault("lfs_put", action="hang", skip=4)
        args = [str(built), "--repo", REPO, "--commit-files", "2", "--no-xet", "--allow-restricted-licenses",
                "--endpoint", hub.endpoint]
        proc = run_cli(args, hub, tmp_path)
        try:
            assert hub.hanging.wait(60), "the publish never reached its 5th object upload"
        finally:
            proc.kill()
            proc.communicate()
            hub.release.set()
        first = list(hub.lfs_received)
        committed = {p for p in hub.files(REPO) if p.startswith("data/")}
        assert len(committed) == 4 and len(first) in (4, 5), (committed, first)
        assert "manifest.json" not in hub.files(REPO), "no manifest before all data is there"

        proc = run_cli(args, hub, tmp_path)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        second = hub.lfs_received[len(first):]
        n = lfs_count(built)
        assert len(second) == n - len(first) and sorted(first + second) == sorted(set(first + second))
        assert f"{len(committed)} already on the Hub" in out and f"verified {len(manifest_files(built)) + 1} files" in out
        print(f"interruption: {len(first)} objects before the kill, {len(second)} after; {n} in all")


def test_429_with_retry_after_500_and_dropped_connections_are_retried(built, hub):
    waits: list[float] = []

    def sleep(s: float) -> None:
        waits.append(s)
        time.sleep(s)

    hub.add_fault("create_repo", status=503)                   # our retry, exponential backoff
    hub.add_fault("commit", status=429, retry_after=1)         # our retry, honours Retry-After
    hub.add_fault("commit", action="drop", skip=1)             # the connection dies mid-commit: retried
    hub.add_fault("lfs_put", status=500)                       # huggingface_hub's own per-request retry
    hub.add_fault("lfs_batch", action="drop")                  # ditto, for a dropped connection
    started = time.perf_counter()
    result = publish(options(built, hub), retry=Retry(attempts=4, base=0.05, sleep=sleep))
    assert hub.faulted == {"create_repo": 1, "commit": 2, "lfs_put": 1, "lfs_batch": 1}
    assert result.verified == len(manifest_files(built)) + 1
    assert any(w >= 1.0 for w in waits) and time.perf_counter() - started >= 1.0, waits
    assert len([w for w in waits if w < 1.0]) == 2  # the 503 and the dropped commit: short backoff
    assert hub.requests["paths_info"] >= 1, "a retried commit first asks which of its files arrived"
    assert len(hub.lfs_received) == lfs_count(built), "retries do not upload an object twice"


def test_retry_after_as_an_http_date_is_honoured(built, hub):
    waits: list[float] = []
    when = time.time() + 30
    hub.add_fault("commit", status=503, retry_after=email.utils.formatdate(when, usegmt=True))  # sent as str()
    result = publish(options(built, hub), retry=Retry(attempts=3, base=0.05, sleep=waits.append))  # no real wait
    assert hub.faulted == {"commit": 1} and result.verified == len(manifest_files(built)) + 1
    assert len(waits) == 1 and 20 <= waits[0] <= 30, waits  # the date, not a 0.05 s backoff


def test_persistent_errors_stop_with_a_resume_message_then_resume(built, hub):
    hub.add_fault("commit", status=503, times=100)
    with pytest.raises(PublishError) as info:
        publish(options(built, hub), retry=Retry(attempts=3, base=0.01))
    message = str(info.value)
    assert "commit 1/" in message and "data/" in message and "HTTP 503 after 3 attempts" in message
    assert "run the same command again to resume" in message
    uploaded = list(hub.lfs_received)
    assert uploaded, "the objects of the first commit were uploaded before its commit failed"

    hub.clear_faults()
    publish(options(built, hub))
    assert len(hub.lfs_received) == lfs_count(built) and set(uploaded) <= set(hub.lfs_received)


# ---------------------------------------------------------------------------- licences, token, errors


def test_licence_gate(built, hub, tmp_path, capsys):
    with pytest.raises(PublishError) as info:
        publish(options(built, hub, allow_restricted_licenses=False))
    message = str(info.value)
    for name, terms in [("alpaca-seed", "non-commercial"), ("belle/eval_set", "research-only"), ("alpaca-demo/en", "unknown")]:
        assert f"{name} ({terms}" in message
    assert "--allow-restricted-licenses" in message and sum(hub.requests.values()) == 0

    rc = main([str(built), "--repo", REPO, "--endpoint", hub.endpoint, "--no-xet", "--token", TOKEN])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: the corpus has records") and "Traceback" not in err

    # only sources that contribute rows count; with --include-rejected, rejected rows count too
    folder = copy_output(built, tmp_path / "out")
    manifest = json.loads((folder / "manifest.json").read_text())
    for s in manifest["sources"]:
        if s["terms"] in ("non-commercial", "research-only", "unknown"):
            s["rows"] = 0
    (folder / "manifest.json").write_text(json.dumps(manifest))
    assert publish(options(folder, hub, allow_restricted_licenses=False, dry_run=True)).restricted == []
    with pytest.raises(PublishError, match=r"alpaca-demo/en \(unknown"):
        publish(options(folder, hub, allow_restricted_licenses=False, include_rejected=True, dry_run=True))
    del manifest["sources"]  # a manifest that cannot say where its rows come from is not published blindly
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(PublishError, match="does not list the sources"):
        publish(options(folder, hub, allow_restricted_licenses=False, dry_run=True))


def test_token_is_never_printed(built, hub, tmp_path):
    hub.add_fault("commit", status=429, retry_after=0)
    args = [str(built), "--repo", REPO, "--no-xet", "--allow-restricted-licenses", "--endpoint", hub.endpoint]
    proc = run_cli(args + ["-v"], hub, tmp_path)  # verbose: every request logged, and still no token
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "HTTP 429" in err and REPO in out
    assert TOKEN not in out + err

    wrong = "hf_WrongTokenAlsoNeverPrinted987654"
    proc = run_cli(args + ["--token", wrong], hub, tmp_path)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "HTTP 401" in err and "Traceback" not in err
    assert wrong not in out + err and TOKEN not in out + err
    assert hub.unauthenticated >= 1


def test_folder_must_match_its_manifest(built, hub, tmp_path, capsys):
    folder = copy_output(built, tmp_path / "out")
    shard = next(p for p in manifest_files(folder) if p.startswith("data/"))
    data = bytearray((folder / shard).read_bytes())
    data[100] ^= 0xFF  # same size, other content
    (folder / shard).write_bytes(bytes(data))
    with pytest.raises(PublishError, match="sha256 differs from manifest.json"):
        publish(options(folder, hub))
    (folder / shard).write_bytes(bytes(data) + b"x")
    with pytest.raises(PublishError, match="manifest.json says"):
        publish(options(folder, hub))
    assert sum(hub.requests.values()) == 0

    assert main([str(tmp_path / "nope"), "--repo", REPO]) == 2
    assert capsys.readouterr().err.strip() == f"error: output folder not found: {tmp_path / 'nope'}"
