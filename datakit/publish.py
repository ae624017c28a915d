"""`python -m datakit.publish OUT --repo ORG/NAME`: a built folder to a Hub dataset repository, resumably.

Read top-down, this is the whole publish:
  1. read OUT/manifest.json and check the folder against it (every listed file present, same size
     and sha256): what is published is what the build wrote, or nothing;
  2. the licence gate: sources that contributed rows under non-commercial, research-only or unknown
     terms must be named in the card, and publishing them needs --allow-restricted-licenses;
  3. create the repo (and the --revision branch) if needed, list what the remote already has, and
     plan: files whose path, size and hash already match are skipped;
  4. commit the rest in a few large commits (at most --commit-files files / --commit-bytes each),
     data first, then README.md, stats.json and manifest.json (and report/) in the last commit, so
     the repo never shows a manifest for data that is not there yet; remote files under data/ that
     the manifest does not list (an older build's shards) are deleted in that last commit;
  5. list the remote again and check every published file's path, size and hash.

Resuming: a re-run lists the remote first, so committed files are never sent twice, and the LFS
batch API answers "already stored" for objects an interrupted run uploaded but did not commit.
Retries: huggingface_hub retries single requests (preupload, LFS batch, object PUT) itself; each
step here (repo, branch, listing, each commit) is also retried under datakit's one retry policy
(`datakit.retry`: 408, 409, 429, 5xx, timeouts and dropped connections; exponential backoff with
full jitter, or the wait Retry-After asks for, in seconds or as an HTTP date), a bounded number of
times, and then stops with a message that says which step failed and to run the same command again.
The token (--token, HF_TOKEN, or `hf auth login`) is never printed: every message is scrubbed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

from datakit.errors import DatakitError
from datakit.hashing import file_sha256
from datakit.retry import Failure, Retry, causes, classify
from datakit.write.card import RESTRICTED_TERMS

log = logging.getLogger("datakit.publish")
T = TypeVar("T")

LAST = ("README.md", "stats.json", "manifest.json")  # committed last, with report/
ALLOW_FLAG = "--allow-restricted-licenses"
RESUME = "run the same command again to resume"


class PublishError(DatakitError):
    """Publishing cannot go on; the message says what and (for interruptions) how to resume."""


@dataclass
class PublishOptions:
    folder: str
    repo: str
    private: bool = False
    revision: str | None = None
    include_rejected: bool = False
    allow_restricted_licenses: bool = False
    commit_files: int = 100
    commit_bytes: int = 5 * 2**30
    dry_run: bool = False
    token: str | None = None
    endpoint: str | None = None
    xet: bool = True
    retries: int = 6
    backoff: float = 2.0
    max_backoff: float = 60.0


@dataclass
class LocalFile:
    path: str  # path in the repo (posix)
    local: Path
    size: int
    sha256: str

    def git_oid(self) -> str:
        """The git blob id, to compare with remote files stored outside LFS (small text files)."""
        data = self.local.read_bytes()
        return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class PublishResult:
    repo_id: str
    url: str
    revision: str
    uploaded_files: int = 0
    uploaded_bytes: int = 0
    commits: int = 0
    skipped: int = 0
    deleted: int = 0
    verified: int = 0
    restricted: list[dict[str, Any]] = field(default_factory=list)
    planned: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------- the folder


def _safe_path(path: str) -> bool:
    parts = PurePosixPath(path).parts
    return bool(parts) and not path.startswith("/") and ".." not in parts and not any(p.startswith(".") for p in parts)


def local_files(folder: Path, manifest: dict[str, Any], include_rejected: bool) -> list[LocalFile]:
    """What to publish: the files manifest.json lists (rejected/ only if asked), manifest.json and report/.

    Each listed file must be there with the manifest's size and sha256: a folder changed or half
    rewritten since its build is refused rather than published under a manifest that lies.
    """
    entries = {}
    for e in manifest.get("files", []):
        path = e["path"]
        if not _safe_path(path):
            raise PublishError(f"manifest.json lists an unsafe path: {path!r}")
        if path.startswith("rejected/") and not include_rejected:
            continue
        entries[path] = e
    paths = {p: folder / p for p in entries}
    paths["manifest.json"] = folder / "manifest.json"
    report = folder / "report"
    if report.is_dir():
        for p in sorted(report.rglob("*")):
            rel = p.relative_to(folder).as_posix()
            if p.is_file() and _safe_path(rel):
                paths.setdefault(rel, p)
    for rel, p in paths.items():
        if not p.is_file():
            raise PublishError(f"{p}: listed in manifest.json but missing; rebuild the folder with python -m datakit.build")
        if rel in entries and p.stat().st_size != entries[rel]["bytes"]:
            raise PublishError(f"{p}: {p.stat().st_size} bytes, manifest.json says {entries[rel]['bytes']}; "
                               "the folder changed since its build, rebuild it")
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        hashes = dict(zip(paths, pool.map(file_sha256, paths.values()), strict=True))
    for rel, e in entries.items():
        if e.get("sha256") and hashes[rel] != e["sha256"]:
            raise PublishError(f"{paths[rel]}: sha256 differs from manifest.json; the folder changed since its build, rebuild it")
    return [LocalFile(rel, p, p.stat().st_size, hashes[rel]) for rel, p in sorted(paths.items())]


def read_manifest(folder: Path) -> dict[str, Any]:
    if not folder.is_dir():
        raise PublishError(f"output folder not found: {folder}")
    path = folder / "manifest.json"
    if not path.is_file() or not (folder / "README.md").is_file():
        raise PublishError(f"{folder} is not a datakit output folder (no manifest.json or README.md); "
                           "build it with python -m datakit.build")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise PublishError(f"{path}: not readable JSON ({e})") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), list):
        raise PublishError(f"{path}: no 'files' list; rebuild the folder with python -m datakit.build")
    return manifest


# ---------------------------------------------------------------------------- licence gate


def restricted_sources(folder: Path, manifest: dict[str, Any], include_rejected: bool) -> list[dict[str, Any]]:
    """Sources that put rows in what is published under terms that restrict use or redistribution.

    `unknown` terms count as restricted: nobody has checked that the data may be redistributed.
    A source counts when it contributed rows to data/ (rows > 0), or, with --include-rejected, has
    records in rejected/ (those get published too).
    """
    in_rejected: set[str] = set()
    if include_rejected:
        import pyarrow.parquet as pq

        for e in manifest["files"]:
            if e["path"].startswith("rejected/") and e["path"].endswith(".parquet"):
                table = pq.read_table(folder / e["path"], columns=["source"])
                in_rejected.update(str(s) for s in table.column("source").unique().to_pylist() if s is not None)
    out = []
    for s in manifest.get("sources", []):
        terms = s.get("terms") or "unknown"
        contributes = s.get("rows", 1) > 0 or s.get("name") in in_rejected
        if contributes and terms in RESTRICTED_TERMS:
            out.append({"name": s.get("name"), "terms": terms, "license": s.get("license") or "unknown", "rows": s.get("rows")})
    return out


def check_licences(folder: Path, manifest: dict[str, Any], opts: PublishOptions) -> list[dict[str, Any]]:
    if not isinstance(manifest.get("sources"), list) and not opts.allow_restricted_licenses:
        raise PublishError(f"{folder / 'manifest.json'} does not list the sources and their terms, so the licences cannot "
                           f"be checked; rebuild with the current datakit, or publish anyway with {ALLOW_FLAG}")
    restricted = restricted_sources(folder, manifest, opts.include_rejected)
    if not restricted:
        return []
    named = ", ".join(f"{s['name']} ({s['terms']}, {s['license']})" for s in restricted)
    card = (folder / "README.md").read_text(encoding="utf-8")
    unflagged = [s["name"] for s in restricted if str(s["name"]) not in card]
    if unflagged:
        raise PublishError(f"README.md does not name the restricted source(s) {', '.join(unflagged)}; "
                           "rebuild the folder so the dataset card flags them")
    if not opts.allow_restricted_licenses:
        raise PublishError(f"the corpus has records from sources whose terms restrict use or redistribution: {named}. "
                           f"The dataset card lists them. Publish anyway with {ALLOW_FLAG}, or rebuild without them")
    log.warning("publishing records from restricted sources (%s given): %s", ALLOW_FLAG, named)
    return restricted


# ---------------------------------------------------------------------------- retries


def describe(e: BaseException) -> str:
    """One line about a failure from huggingface_hub, with the server's own message where there is one."""
    from huggingface_hub.errors import HfHubHTTPError

    for err in causes(e):
        if isinstance(err, HfHubHTTPError) and err.response is not None:
            status = err.response.status_code
            hint = " (check the token: --token, HF_TOKEN or `hf auth login`, and its write access)" if status in (401, 403) else ""
            msg = err.server_message or str(err).split("\n")[0]
            return f"HTTP {status}: {' '.join(msg.split())}{hint}"
    lines = [" ".join(str(err).split()) or type(err).__name__ for err in causes(e)]
    return "; ".join(dict.fromkeys(lines))


def retried(retry: Retry, what: str, fn: Callable[[], T]) -> T:
    """One step (`what`: which step, for the messages) under the retry policy; failing, a PublishError.

    Each retry is logged as a warning; the final message says whether retrying could not help, or
    how many attempts were made and that the same command resumes.
    """

    def warn(failure: Failure, attempt: int, wait: float) -> None:
        log.warning("%s: %s; retrying in %.1f s (attempt %d of %d)", what, failure.why, wait, attempt + 1,
                    retry.attempts)

    try:
        return retry.call(fn, on_retry=warn)
    except (PublishError, KeyboardInterrupt):
        raise
    except Exception as e:
        failure = classify(e)
        if not failure.retryable:
            log.debug("%s failed", what, exc_info=True)
            raise PublishError(f"{what}: {describe(e)}") from e
        raise PublishError(f"{what}: {failure.why} after {retry.attempts} attempts ({describe(e)}); {RESUME}") from e


# ---------------------------------------------------------------------------- the remote


def same(local: LocalFile, remote: Any) -> bool:
    """Whether a remote tree entry holds exactly the local file (size, and sha256 or git blob id)."""
    if remote is None or getattr(remote, "size", None) != local.size:
        return False
    if getattr(remote, "lfs", None) is not None:
        return remote.lfs.sha256 == local.sha256
    return remote.blob_id == local.git_oid()


def batches(files: list[LocalFile], max_files: int, max_bytes: int) -> list[list[LocalFile]]:
    out: list[list[LocalFile]] = []
    size = 0
    for f in files:
        if not out or len(out[-1]) >= max_files or (out[-1] and size + f.size > max_bytes):
            out.append([])
            size = 0
        out[-1].append(f)
        size += f.size
    return out


class Publisher:
    def __init__(self, opts: PublishOptions, token: str | None, retry: Retry):
        from huggingface_hub import HfApi

        import datakit

        self.opts, self.retry = opts, retry
        self.endpoint = (opts.endpoint or os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")
        self.api = HfApi(endpoint=self.endpoint, token=token, library_name="datakit", library_version=datakit.__version__)
        self.revision = opts.revision or "main"

    def remote_tree(self, revision: str | None = None) -> dict[str, Any]:
        from huggingface_hub import RepoFile

        def listing() -> dict[str, Any]:
            tree = self.api.list_repo_tree(self.opts.repo, recursive=True, revision=revision or self.revision, repo_type="dataset")
            return {e.path: e for e in tree if isinstance(e, RepoFile)}

        return retried(self.retry, f"listing the files of {self.opts.repo}@{revision or self.revision}", listing)

    def ensure_repo(self) -> None:
        retried(self.retry, f"creating the dataset repo {self.opts.repo}", lambda: self.api.create_repo(
            self.opts.repo, repo_type="dataset", private=self.opts.private, exist_ok=True))
        if self.revision != "main":
            retried(self.retry, f"creating the branch {self.revision}", lambda: self.api.create_branch(
                self.opts.repo, branch=self.revision, repo_type="dataset", exist_ok=True))

    def dry_tree(self) -> dict[str, Any]:
        """The remote as a dry run sees it: nothing when the repo or branch does not exist yet."""
        from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

        for revision in (self.revision, "main"):
            try:
                return self.remote_tree(revision)
            except PublishError as e:
                if isinstance(e.__cause__, RepositoryNotFoundError):
                    return {}
                if not isinstance(e.__cause__, RevisionNotFoundError):
                    raise
        return {}

    def commit(self, files: list[LocalFile], deletes: list[str], known: dict[str, Any], message: str, what: str,
               result: PublishResult) -> None:
        """One commit, retried as a whole; a retry first asks the remote which of its files arrived meanwhile."""
        from huggingface_hub import CommitOperationAdd, CommitOperationDelete, RepoFile

        state = {"remote": known, "fresh": False}

        def attempt() -> None:
            remote = state["remote"]
            if state["fresh"]:
                infos = self.api.get_paths_info(self.opts.repo, [f.path for f in files] + deletes,
                                                revision=self.revision, repo_type="dataset")
                remote = {i.path: i for i in infos if isinstance(i, RepoFile)}
            state["fresh"] = True
            todo = [f for f in files if not same(f, remote.get(f.path))]
            gone = [p for p in deletes if p in remote]
            result.skipped += len(files) - len(todo)
            files[:] = todo
            if not todo and not gone:
                return
            ops: list[Any] = []
            for f in todo:
                op = CommitOperationAdd(path_in_repo=f.path, path_or_fileobj=str(f.local))
                op.upload_info.sha256 = bytes.fromhex(f.sha256)  # hashed once, when checked against the manifest
                ops.append(op)
            ops += [CommitOperationDelete(path_in_repo=p) for p in gone]
            self.api.create_commit(self.opts.repo, ops, commit_message=message, repo_type="dataset", revision=self.revision)
            result.commits += 1
            result.uploaded_files += len(todo)
            result.uploaded_bytes += sum(f.size for f in todo)
            result.deleted += len(gone)

        retried(self.retry, what, attempt)


def repo_url(endpoint: str, repo: str, revision: str) -> str:
    url = f"{endpoint}/datasets/{repo}"
    return url if revision == "main" else f"{url}/tree/{revision}"


def resolve_token(explicit: str | None) -> str | None:
    from huggingface_hub import get_token

    return explicit or get_token()


def publish(opts: PublishOptions, retry: Retry | None = None) -> PublishResult:
    """Publish `opts.folder` to `opts.repo`; see the module docstring for the steps."""
    from huggingface_hub import constants

    if "/" not in opts.repo or opts.repo.count("/") != 1:
        raise PublishError(f"--repo {opts.repo!r}: expected ORG/NAME")
    if opts.commit_files < 1 or opts.commit_bytes < 1:
        raise PublishError("--commit-files and --commit-bytes must be at least 1")
    if constants.is_offline_mode():
        raise PublishError("HF_HUB_OFFLINE is set: publishing needs the Hub; unset it (or set HF_HUB_OFFLINE=0)")
    folder = Path(opts.folder)
    manifest = read_manifest(folder)
    restricted = check_licences(folder, manifest, opts)
    files = local_files(folder, manifest, opts.include_rejected)
    if not opts.xet:
        constants.HF_HUB_DISABLE_XET = True  # plain Git LFS: what Hub-compatible servers without Xet speak
    token = resolve_token(opts.token)
    if token is None and not opts.dry_run:
        raise PublishError("no Hugging Face token: pass --token, set HF_TOKEN, or run `hf auth login`")
    retry = retry or Retry(opts.retries, opts.backoff, opts.max_backoff)
    pub = Publisher(opts, token, retry)
    result = PublishResult(opts.repo, repo_url(pub.endpoint, opts.repo, pub.revision), pub.revision, restricted=restricted)

    if opts.dry_run:
        remote = pub.dry_tree()
    else:
        pub.ensure_repo()
        remote = pub.remote_tree()
    last = [f for f in files if f.path in LAST or f.path.startswith("report/")]
    data = [f for f in files if f not in last]
    managed = ["data/"] + (["rejected/"] if opts.include_rejected else []) + (["report/"] if any(
        f.path.startswith("report/") for f in files) else [])
    ours = {f.path for f in files}
    stale = sorted(p for p in remote if p not in ours and any(p.startswith(m) for m in managed))
    todo = [f for f in data if not same(f, remote.get(f.path))]
    last_todo = [f for f in last if not same(f, remote.get(f.path))]
    result.skipped = len(files) - len(todo) - len(last_todo)
    groups = batches(todo, opts.commit_files, opts.commit_bytes)
    if last_todo or stale:
        groups.append(last_todo)
    result.planned = [f.path for f in todo + last_todo]
    log.info("%s: %d files to upload (%s), %d already there, %d stale to delete, in %d commit(s)", opts.repo,
             len(todo) + len(last_todo), _size(sum(f.size for f in todo + last_todo)), result.skipped, len(stale), len(groups))
    if opts.dry_run:
        result.deleted = len(stale)
        result.commits = len(groups)
        result.uploaded_files = len(result.planned)
        result.uploaded_bytes = sum(f.size for f in todo + last_todo)
        return result

    for i, group in enumerate(groups, 1):
        final = i == len(groups) and (bool(last_todo) or bool(stale))
        deletes = stale if final else []
        names = f"{group[0].path} .. {group[-1].path}" if group else "deletions"
        message = f"datakit publish: {'card, stats and manifest' if final else 'data'} ({i}/{len(groups)}, {len(group)} files)"
        log.info("commit %d/%d: %d files, %s", i, len(groups), len(group), _size(sum(f.size for f in group)))
        pub.commit(list(group), deletes, remote, message, f"commit {i}/{len(groups)} ({len(group)} files: {names})", result)

    verify(pub, files, managed, result)
    return result


def verify(pub: Publisher, files: list[LocalFile], managed: list[str], result: PublishResult) -> None:
    """Every published file is on the remote with its size and hash; nothing stale is left under data/."""
    remote = pub.remote_tree()
    bad = []
    for f in files:
        entry = remote.get(f.path)
        if entry is None:
            bad.append(f"{f.path}: missing")
        elif entry.size != f.size:
            bad.append(f"{f.path}: {entry.size} bytes on the Hub, {f.size} here")
        elif not same(f, entry):
            bad.append(f"{f.path}: content differs (sha256)")
    ours = {f.path for f in files}
    bad += [f"{p}: on the Hub but not in manifest.json" for p in sorted(remote) if p not in ours and any(p.startswith(m) for m in managed)]
    if bad:
        more = f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
        raise PublishError(f"the Hub does not match manifest.json after upload: {'; '.join(bad[:5])}{more}; {RESUME}")
    result.verified = len(files)


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


# ---------------------------------------------------------------------------- command line


class Redact(logging.Filter):
    """Scrubs the token out of every log record that reaches a handler (ours and huggingface_hub's)."""

    def __init__(self, secret: str | None):
        super().__init__()
        self.secret = secret

    def scrub(self, text: str) -> str:
        return text.replace(self.secret, "***") if self.secret and len(self.secret) >= 4 else text

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = self.scrub(record.getMessage()), None
        return True


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m datakit.publish",
                                description="Publish a datakit output folder to a Hugging Face dataset repository (resumable).")
    p.add_argument("folder", help="the output folder of python -m datakit.build")
    p.add_argument("--repo", required=True, metavar="ORG/NAME", help="dataset repository (created if missing)")
    p.add_argument("--private", action="store_true", help="create the repository private (an existing one keeps its visibility)")
    p.add_argument("--revision", metavar="BRANCH", help="publish to this branch (created from main if missing); default main")
    p.add_argument("--include-rejected", action="store_true", help="also upload rejected/ (not published by default)")
    p.add_argument(ALLOW_FLAG, action="store_true",
                   help="publish even though sources with non-commercial, research-only or unknown terms contributed rows")
    p.add_argument("--commit-files", type=int, default=100, metavar="N", help="at most N files per commit (default 100)")
    p.add_argument("--commit-bytes", type=int, default=5 * 2**30, metavar="B", help="at most B bytes per commit (default 5 GiB)")
    p.add_argument("--dry-run", action="store_true", help="check and plan only: print what would be uploaded, change nothing")
    p.add_argument("--token", help="Hub token (default: HF_TOKEN, then the `hf auth login` token); never printed")
    p.add_argument("--endpoint", help="Hub URL (default: HF_ENDPOINT, then https://huggingface.co)")
    p.add_argument("--no-xet", action="store_true", help="upload through plain Git LFS instead of Xet (same as HF_HUB_DISABLE_XET=1)")
    p.add_argument("--retries", type=int, default=6, metavar="N", help="attempts per step on 429/5xx/connection errors (default 6)")
    p.add_argument("-v", "--verbose", action="store_true", help="more logging")
    return p


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    redact = Redact(None)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.addFilter(redact)
    root, httpx_log = logging.getLogger(), logging.getLogger("httpx2")
    saved = (root.level, httpx_log.level)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if args.verbose else logging.INFO)
    httpx_log.setLevel(logging.INFO if args.verbose else logging.WARNING)  # one line per request otherwise
    opts = PublishOptions(folder=args.folder, repo=args.repo, private=args.private, revision=args.revision,
                          include_rejected=args.include_rejected, allow_restricted_licenses=args.allow_restricted_licenses,
                          commit_files=args.commit_files, commit_bytes=args.commit_bytes, dry_run=args.dry_run,
                          token=args.token, endpoint=args.endpoint, xet=not args.no_xet, retries=max(1, args.retries))
    hf_handlers: list[logging.Handler] = []
    try:
        from huggingface_hub.utils import disable_progress_bars

        redact.secret = resolve_token(args.token)
        hf_handlers = list(logging.getLogger("huggingface_hub").handlers)
        for h in hf_handlers:
            h.addFilter(redact)
        if not sys.stderr.isatty():
            disable_progress_bars()
        result = publish(opts)
    except DatakitError as e:
        print(redact.scrub(f"error: {e}"), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted; {RESUME}", file=sys.stderr)
        return 130
    finally:  # leave logging as found: main() is also called in-process (tests, notebooks)
        root.removeHandler(handler)
        root.setLevel(saved[0])
        httpx_log.setLevel(saved[1])
        for h in hf_handlers:
            h.removeFilter(redact)
    verb = "would upload" if opts.dry_run else "uploaded"
    lines = [f"{'dry run: ' if opts.dry_run else ''}{opts.folder} -> {result.repo_id} (revision {result.revision})",
             f"  {verb} {result.uploaded_files} files ({_size(result.uploaded_bytes)}) in {result.commits} commit(s); "
             f"{result.skipped} already on the Hub, skipped; {result.deleted} stale deleted",
             f"  verified {result.verified} files against manifest.json (path, size, sha256)" if not opts.dry_run else
             "  nothing was changed",
             f"  {result.url}"]
    print(redact.scrub("\n".join(lines)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
