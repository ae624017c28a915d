"""A small Hugging Face Hub on 127.0.0.1: the part of the API that `huggingface_hub` uses to publish a dataset.

Why a real server and not mocks: publishing is mostly about what happens on the wire (which
requests, in which order, what a retry resends, what survives a dropped connection), so the
tests run the unmodified `huggingface_hub` 2.4 client against real HTTP. Only the plain Git LFS
path is spoken (the server never offers Xet; clients must run with Xet disabled).

Endpoints (repo type `datasets`, `models` or `spaces` in the paths):
  POST /api/repos/create                              create a repo (409 if it exists)
  GET  /api/{type}/{repo}[/revision/{rev}]            repo info
  GET  /api/{type}/{repo}/refs                        branches
  POST /api/{type}/{repo}/branch/{branch}             create a branch (409 if it exists)
  POST /api/{type}/{repo}/preupload/{rev}             lfs or regular, per file
  POST /{type}/{repo}.git/info/lfs/objects/batch      LFS batch API: signed upload URLs, or no
                                                      action for objects already stored
  PUT  /lfs/{oid}?sig=                                the object (basic transfer)
  PUT  /lfs/{oid}/part/{n}?sig= + POST /lfs/{oid}?sig=  multipart transfer + completion
  POST /lfs/{oid}/verify                              LFS verify action
  POST /api/validate-yaml                             dataset card header check
  POST /api/{type}/{repo}/commit/{rev}                NDJSON commit (file, lfsFile, deletedFile, deletedFolder)
  GET  /api/{type}/{repo}/tree/{rev}[/{path}]         tree listing, paginated with a Link header
  POST /api/{type}/{repo}/paths-info/{rev}            info for given paths
  GET  /{type}/{repo}/resolve/{rev}/{path}            file content

Every uploaded LFS object is checked (size and sha256) before it is stored; a commit may only
reference stored objects. Faults can be injected per request kind (see `Fault`): a status
(429 with Retry-After, 500, ...), a dropped connection halfway through the request body, or a
hang until the test releases it (used to kill a client mid-upload). Headers are never logged;
the server only remembers whether a request was authenticated.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from fnmatch import fnmatch
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import yaml

GITATTRIBUTES = "".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in
                        ("*.parquet", "*.arrow", "*.png", "*.jpg", "*.gz", "*.zip", "*.zst"))
LFS_MIN_SIZE = 10 * 2**20  # the Hub stores files of 10 MB or more in LFS whatever their name


def git_blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


@dataclass
class Fault:
    """What to do to requests of one kind: let `skip` through, then fault the next `times`."""

    kind: str
    status: int = 500
    retry_after: int | None = None
    action: str = "status"  # "status" | "drop" (close the connection mid-request) | "hang" (until released)
    times: int = 1
    skip: int = 0


@dataclass
class StoredFile:
    size: int
    sha256: str
    lfs: bool

    @property
    def oid(self) -> str:
        """The git blob id: of the LFS pointer for LFS files, as git and the Hub report it."""
        return git_blob_oid(lfs_pointer(self.sha256, self.size)) if self.lfs else self._regular_oid

    _regular_oid: str = ""


@dataclass
class Repo:
    repo_id: str
    repo_type: str
    private: bool
    branches: dict[str, str] = field(default_factory=dict)  # name -> commit id
    commits: dict[str, dict[str, StoredFile]] = field(default_factory=dict)  # commit id -> tree
    lfs_objects: set[str] = field(default_factory=set)


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


class _Dropped(Exception):
    """The handler closed the connection on purpose (an injected fault)."""


class HubServer:
    """Start with `with HubServer() as hub:`; `hub.endpoint` is the URL to give huggingface_hub."""

    def __init__(self, token: str | None = None, page_size: int = 1000, multipart_threshold: int | None = None,
                 multipart_chunk: int = 4096):
        self.token = token
        self.page_size = page_size
        self.multipart_threshold = multipart_threshold
        self.multipart_chunk = multipart_chunk
        self.root = Path(tempfile.mkdtemp(prefix="hub-server-"))
        (self.root / "objects").mkdir()
        (self.root / "parts").mkdir()
        self.repos: dict[str, Repo] = {}
        self.faults: list[Fault] = []
        self.requests: Counter[str] = Counter()  # kind -> requests seen (faulted ones included)
        self.faulted: Counter[str] = Counter()  # kind -> requests answered by an injected fault
        self.lfs_received: list[str] = []  # oids of LFS objects stored, in order (verified)
        self.commits_made = 0
        self.unauthenticated = 0  # API requests that came without a valid token
        self.hanging = threading.Event()
        self.release = threading.Event()
        self._lock = threading.RLock()
        self._secret = secrets.token_bytes(16)
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._httpd.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    # ---------------------------------------------------------------- lifecycle

    def __enter__(self) -> HubServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        shutil.rmtree(self.root, ignore_errors=True)

    # ---------------------------------------------------------------- test helpers

    def add_fault(self, kind: str, **kw: Any) -> Fault:
        fault = Fault(kind, **kw)
        with self._lock:
            self.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self._lock:
            self.faults.clear()

    def files(self, repo_id: str, revision: str = "main", repo_type: str = "dataset") -> dict[str, StoredFile]:
        """The tree at a branch head: path -> StoredFile."""
        repo = self.repos[f"{repo_type}s/{repo_id}"]
        return dict(repo.commits[repo.branches[revision]])

    def content(self, stored: StoredFile) -> bytes:
        return (self.root / "objects" / stored.sha256).read_bytes()

    def take_fault(self, kind: str) -> Fault | None:
        with self._lock:
            self.requests[kind] += 1
            for fault in self.faults:
                if fault.kind != kind or fault.times <= 0:
                    continue
                if fault.skip > 0:
                    fault.skip -= 1
                    return None
                fault.times -= 1
                self.faulted[kind] += 1
                return fault
        return None

    # ---------------------------------------------------------------- storage

    def _store(self, tmp: Path, expect_sha: str | None = None, expect_size: int | None = None) -> str:
        data_sha, size = _sha256_file(tmp)
        if expect_size is not None and size != expect_size:
            tmp.unlink()
            raise HubError(400, f"size mismatch: got {size} bytes, expected {expect_size}")
        if expect_sha is not None and data_sha != expect_sha:
            tmp.unlink()
            raise HubError(400, f"sha256 mismatch: got {data_sha}, expected {expect_sha}")
        tmp.replace(self.root / "objects" / data_sha)
        return data_sha

    def _sign(self, *parts: str) -> str:
        return hmac.new(self._secret, "/".join(parts).encode(), "sha256").hexdigest()[:32]

    def repo(self, type_plural: str, repo_id: str) -> Repo:
        repo = self.repos.get(f"{type_plural}/{repo_id}")
        if repo is None:
            raise HubError(404, "Repository not found", "RepoNotFound")
        return repo

    def head(self, repo: Repo, revision: str) -> tuple[str, dict[str, StoredFile]]:
        revision = unquote(revision)
        commit = repo.branches.get(revision) or (revision if revision in repo.commits else None)
        if commit is None:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return commit, repo.commits[commit]

    def new_commit(self, repo: Repo, branch: str, tree: dict[str, StoredFile]) -> str:
        cid = hashlib.sha1(f"{repo.repo_id}{branch}{time.time_ns()}{len(repo.commits)}".encode()).hexdigest()
        repo.commits[cid] = tree
        repo.branches[branch] = cid
        self.commits_made += 1
        return cid

    def regular_file(self, data: bytes) -> StoredFile:
        sha = hashlib.sha256(data).hexdigest()
        path = self.root / "objects" / sha
        if not path.exists():
            path.write_bytes(data)
        return StoredFile(len(data), sha, lfs=False, _regular_oid=git_blob_oid(data))


def _sha256_file(path: Path) -> tuple[str, int]:
    h, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def _entry(path: str, f: StoredFile) -> dict[str, Any]:
    entry: dict[str, Any] = {"type": "file", "oid": f.oid, "size": f.size, "path": path}
    if f.lfs:
        entry["lfs"] = {"oid": f.sha256, "size": f.size, "pointerSize": len(lfs_pointer(f.sha256, f.size))}
    return entry


def _dir_entry(path: str) -> dict[str, Any]:
    return {"type": "directory", "oid": hashlib.sha1(path.encode()).hexdigest(), "size": 0, "path": path}


def _listing(tree: dict[str, StoredFile], base: str, recursive: bool) -> list[dict[str, Any]]:
    prefix = base.strip("/") + "/" if base.strip("/") else ""
    out: dict[str, dict[str, Any]] = {}
    for path, f in sorted(tree.items()):
        if not path.startswith(prefix):
            continue
        rest = path[len(prefix):].split("/")
        for depth in range(1, len(rest)):
            d = prefix + "/".join(rest[:depth])
            if recursive or depth == 1:
                out.setdefault(d, _dir_entry(d))
        if recursive or len(rest) == 1:
            out[path] = _entry(path, f)
    return [out[k] for k in sorted(out)]


REPO = r"(?P<type>models|datasets|spaces)/(?P<repo>[^/]+/[^/]+)"
ROUTES: list[tuple[str, re.Pattern[str], str]] = [(m, re.compile(p + r"$"), k) for m, p, k in [
    ("POST", r"/api/repos/create", "create_repo"),
    ("POST", r"/api/validate-yaml", "validate_yaml"),
    ("GET", rf"/api/{REPO}(?:/revision/(?P<rev>[^/]+))?", "repo_info"),
    ("GET", rf"/api/{REPO}/refs", "refs"),
    ("POST", rf"/api/{REPO}/branch/(?P<branch>[^/]+)", "branch"),
    ("POST", rf"/api/{REPO}/preupload/(?P<rev>[^/]+)", "preupload"),
    ("POST", rf"/api/{REPO}/commit/(?P<rev>[^/]+)", "commit"),
    ("GET", rf"/api/{REPO}/tree/(?P<rev>[^/]+)(?:/(?P<path>.+))?", "tree"),
    ("POST", rf"/api/{REPO}/paths-info/(?P<rev>[^/]+)", "paths_info"),
    ("POST", r"/(?P<type>datasets|spaces)/(?P<repo>[^/]+/[^/]+)\.git/info/lfs/objects/batch", "lfs_batch"),
    ("POST", r"/(?P<repo>[^/]+/[^/]+)\.git/info/lfs/objects/batch", "lfs_batch"),
    ("PUT", r"/lfs/(?P<key>[^/]+)/(?P<oid>[0-9a-f]{64})", "lfs_put"),
    ("PUT", r"/lfs/(?P<key>[^/]+)/(?P<oid>[0-9a-f]{64})/part/(?P<part>\d+)", "lfs_part"),
    ("POST", r"/lfs/(?P<key>[^/]+)/(?P<oid>[0-9a-f]{64})", "lfs_complete"),
    ("POST", r"/lfs/(?P<key>[^/]+)/(?P<oid>[0-9a-f]{64})/verify", "lfs_verify"),
    ("GET", rf"/{REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)", "resolve"),
    ("HEAD", rf"/{REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)", "resolve"),
    ("GET", r"/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)", "resolve"),
]]


def _route(method: str, path: str) -> tuple[str, re.Match[str] | None]:
    for verb, pattern, kind in ROUTES:
        if verb == method and (m := pattern.match(path)):
            return kind, m
    return "", None


SIGNED = {"lfs_put", "lfs_part", "lfs_complete"}  # reached without the token, through a signed URL


def _make_handler(hub: HubServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "datakit-test-hub"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet; headers are never logged
            pass

        # ------------------------------------------------------------ plumbing

        def _body_chunks(self):
            """The request body as chunks, whether sent with Content-Length or chunked."""
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                while True:
                    size = int(self.rfile.readline().strip().split(b";")[0], 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return
                    yield self.rfile.read(size)
                    self.rfile.readline()
            else:
                left = int(self.headers.get("Content-Length") or 0)
                while left > 0:
                    chunk = self.rfile.read(min(left, 1 << 20))
                    if not chunk:
                        raise ConnectionError("client closed the connection")
                    left -= len(chunk)
                    yield chunk

        def _body(self) -> bytes:
            if not hasattr(self, "_cached_body"):
                self._cached_body = b"".join(self._body_chunks())
            return self._cached_body

        def _json(self) -> Any:
            return json.loads(self._body() or b"{}")

        def _send(self, status: int, payload: Any = None, headers: dict[str, str] | None = None,
                  raw: bytes | None = None, content_type: str = "application/json") -> None:
            body = raw if raw is not None else (b"" if payload is None else json.dumps(payload).encode())
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _drop(self) -> None:
            """Read part of the body, then cut the connection without an answer (an interruption)."""
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(max(1, length // 2))
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            raise _Dropped()

        def _authorised(self) -> bool:
            if hub.token is None:
                return True
            return hmac.compare_digest(self.headers.get("Authorization", ""), f"Bearer {hub.token}")

        def _base(self) -> str:
            return hub.endpoint

        # ------------------------------------------------------------ dispatch

        def _dispatch(self) -> None:
            self.__dict__.pop("_cached_body", None)  # one handler serves every request of a keep-alive connection
            url = urlsplit(self.path)
            self.query = parse_qs(url.query)
            kind, m = _route(self.command, url.path)
            if m is None:
                self._body()
                self._send(404, {"error": f"no route for {self.command} {url.path}"})
                return
            fault = hub.take_fault(kind)
            try:
                if fault is not None:
                    if fault.action == "drop":
                        self._drop()
                    if fault.action == "hang":
                        hub.hanging.set()
                        hub.release.wait(60)
                        self._drop()
                    self._body()
                    headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
                    self._send(fault.status, {"error": f"injected fault ({fault.status})"}, headers)
                    return
                if kind not in SIGNED and kind != "resolve" and not self._authorised():
                    with hub._lock:
                        hub.unauthenticated += 1
                    self._body()
                    self._send(401, {"error": "Invalid username or password."},
                               {"X-Error-Message": "Invalid credentials in Authorization header"})
                    return
                params = {k: v for k, v in m.groupdict().items() if v is not None}
                getattr(self, "do_" + kind)(**params)
            except HubError as e:
                self._body()
                headers = {"X-Error-Message": e.message}
                if e.code:
                    headers["X-Error-Code"] = e.code
                self._send(e.status, {"error": e.message}, headers)

        def do_GET(self) -> None:
            self._safely()

        def do_POST(self) -> None:
            self._safely()

        def do_PUT(self) -> None:
            self._safely()

        def do_HEAD(self) -> None:
            self._safely()

        def _safely(self) -> None:
            try:
                self._dispatch()
            except (_Dropped, ConnectionError, BrokenPipeError):
                self.close_connection = True

        # ------------------------------------------------------------ repos and refs

        def do_create_repo(self) -> None:
            body = self._json()
            repo_type = body.get("type") or "model"
            repo_id = f"{body.get('organization') or 'user'}/{body['name']}"
            key = f"{repo_type}s/{repo_id}"
            url = f"{self._base()}/{repo_type + 's/' if repo_type != 'model' else ''}{repo_id}"
            with hub._lock:
                if key in hub.repos:
                    self._send(409, {"error": "You already created this repo", "url": url},
                               {"X-Error-Message": "You already created this repo"})
                    return
                private = body.get("visibility") == "private" or bool(body.get("private"))
                repo = Repo(repo_id, repo_type, private)
                hub.repos[key] = repo
                hub.new_commit(repo, "main", {".gitattributes": hub.regular_file(GITATTRIBUTES.encode())})
            self._send(200, {"url": url, "name": repo_id, "id": repo_id})

        def do_repo_info(self, type: str, repo: str, rev: str = "main") -> None:  # noqa: A002
            with hub._lock:
                r = hub.repo(type, repo)
                sha, tree = hub.head(r, rev)
                info = {"id": repo, "sha": sha, "private": r.private, "siblings": [{"rfilename": p} for p in sorted(tree)]}
            self._send(200, info)

        def do_refs(self, type: str, repo: str) -> None:  # noqa: A002
            with hub._lock:
                r = hub.repo(type, repo)
                branches = [{"name": b, "ref": f"refs/heads/{b}", "targetCommit": c} for b, c in sorted(r.branches.items())]
            self._send(200, {"branches": branches, "tags": [], "converts": []})

        def do_branch(self, type: str, repo: str, branch: str) -> None:  # noqa: A002
            body = self._json()
            with hub._lock:
                r = hub.repo(type, repo)
                name = unquote(branch)
                if name in r.branches:
                    raise HubError(409, f"Reference already exists: refs/heads/{name}")
                start, tree = hub.head(r, body.get("startingPoint") or "main")
                r.branches[name] = start
            self._send(200, {})

        # ------------------------------------------------------------ uploads

        def do_preupload(self, type: str, repo: str, rev: str) -> None:  # noqa: A002
            body = self._json()
            with hub._lock:
                r = hub.repo(type, repo)
                _, tree = hub.head(r, rev)
                gitattributes = tree.get(".gitattributes")
                patterns = [line.split()[0] for line in
                            (hub.content(gitattributes).decode() if gitattributes else "").splitlines()
                            if "filter=lfs" in line]
                files = []
                for f in body["files"]:
                    name = f["path"].rsplit("/", 1)[-1]
                    lfs = f["size"] >= LFS_MIN_SIZE or any(fnmatch(name, p) or fnmatch(f["path"], p) for p in patterns)
                    remote = tree.get(f["path"])
                    remote_oid = None if remote is None else (remote.sha256 if remote.lfs else remote.oid)
                    files.append({"path": f["path"], "uploadMode": "lfs" if lfs else "regular",
                                  "shouldIgnore": False, "oid": remote_oid})
                head = hub.head(r, rev)[0]
            self._send(200, {"files": files, "commitOid": head})

        def do_lfs_batch(self, repo: str, type: str = "models") -> None:  # noqa: A002
            body = self._json()
            if body.get("operation") != "upload":
                raise HubError(400, "only uploads are supported")
            with hub._lock:
                r = hub.repo(type, repo)
                key = quote(f"{type}/{repo}", safe="")
                objects = []
                for obj in body["objects"]:
                    oid, size = obj["oid"], int(obj["size"])
                    entry: dict[str, Any] = {"oid": oid, "size": size, "authenticated": True}
                    if oid not in r.lfs_objects:
                        sig = hub._sign(key, oid, str(size))
                        href = f"{self._base()}/lfs/{key}/{oid}?size={size}&sig={sig}"
                        upload: dict[str, Any] = {"href": href}
                        if hub.multipart_threshold is not None and size >= hub.multipart_threshold:
                            n = -(-size // hub.multipart_chunk)
                            upload["header"] = {"chunk_size": str(hub.multipart_chunk)} | {
                                str(i): f"{self._base()}/lfs/{key}/{oid}/part/{i}?size={size}&sig={sig}" for i in range(1, n + 1)}
                        entry["actions"] = {"upload": upload, "verify": {"href": f"{self._base()}/lfs/{key}/{oid}/verify"}}
                    objects.append(entry)
            self._send(200, {"transfer": "basic", "objects": objects}, content_type="application/vnd.git-lfs+json")

        def _check_signature(self, key: str, oid: str) -> int:
            size = self.query.get("size", [""])[0]
            if not hmac.compare_digest(self.query.get("sig", [""])[0], hub._sign(key, oid, size)):
                self._body()
                raise HubError(403, "bad signature")
            return int(size)

        def _lfs_repo(self, key: str) -> Repo:
            type_plural, repo_id = unquote(key).split("/", 1)
            return hub.repo(type_plural, repo_id)

        def _receive(self, dest: Path) -> None:
            with open(dest, "wb") as f:
                for chunk in self._body_chunks():
                    f.write(chunk)

        def do_lfs_put(self, key: str, oid: str) -> None:
            size = self._check_signature(key, oid)
            tmp = hub.root / "parts" / f"{oid}.{secrets.token_hex(4)}"
            self._receive(tmp)
            hub._store(tmp, expect_sha=oid, expect_size=size)
            with hub._lock:
                self._lfs_repo(key).lfs_objects.add(oid)
                hub.lfs_received.append(oid)
            self._send(200, raw=b"")

        def do_lfs_part(self, key: str, oid: str, part: str) -> None:
            self._check_signature(key, oid)
            dest = hub.root / "parts" / f"{oid}.part{int(part):05d}"
            self._receive(dest)
            self._send(200, raw=b"", headers={"ETag": f'"{hashlib.md5(dest.read_bytes()).hexdigest()}"'})

        def do_lfs_complete(self, key: str, oid: str) -> None:
            size = self._check_signature(key, oid)
            body = self._json()
            parts = sorted(body["parts"], key=lambda p: p["partNumber"])
            tmp = hub.root / "parts" / f"{oid}.{secrets.token_hex(4)}"
            with open(tmp, "wb") as out:
                for p in parts:
                    src = hub.root / "parts" / f"{oid}.part{p['partNumber']:05d}"
                    data = src.read_bytes() if src.exists() else b""
                    if f'"{hashlib.md5(data).hexdigest()}"' != p["etag"]:
                        raise HubError(400, f"part {p['partNumber']}: etag mismatch")
                    out.write(data)
            hub._store(tmp, expect_sha=oid, expect_size=size)
            with hub._lock:
                self._lfs_repo(key).lfs_objects.add(oid)
                hub.lfs_received.append(oid)
            self._send(200, {})

        def do_lfs_verify(self, key: str, oid: str) -> None:
            body = self._json()
            with hub._lock:
                ok = oid in self._lfs_repo(key).lfs_objects
            path = hub.root / "objects" / oid
            if not ok or body.get("oid") != oid or path.stat().st_size != body.get("size"):
                raise HubError(404, f"object {oid} not stored with size {body.get('size')}")
            self._send(200, {})

        def do_validate_yaml(self) -> None:
            content = self._json().get("content", "")
            errors = []
            if content.startswith("---"):
                header = content.split("---", 2)[1] if content.count("---") >= 2 else ""
                try:
                    if not isinstance(yaml.safe_load(header) or {}, dict):
                        errors.append({"message": "metadata is not a mapping"})
                except yaml.YAMLError as e:
                    errors.append({"message": f"invalid YAML: {e}"})
            self._send(400 if errors else 200, {"errors": errors, "warnings": []})

        def do_commit(self, type: str, repo: str, rev: str) -> None:  # noqa: A002
            lines = [json.loads(line) for line in self._body().splitlines() if line.strip()]
            if self.query.get("create_pr"):
                raise HubError(400, "pull requests are not supported by this test server")
            if not lines or lines[0].get("key") != "header":
                raise HubError(400, "the first line must be the commit header")
            header = lines[0]["value"]
            with hub._lock:
                r = hub.repo(type, repo)
                branch = unquote(rev)
                if branch not in r.branches:
                    raise HubError(404, f"Invalid rev id: {branch}", "RevisionNotFound")
                head, tree = hub.head(r, branch)
                if header.get("parentCommit") and header["parentCommit"] != head:
                    raise HubError(412, "A commit has happened since. Please refresh and try again.")
                tree = dict(tree)
                for item in lines[1:]:
                    key, value = item["key"], item["value"]
                    path = value["path"]
                    if key == "file":
                        tree[path] = hub.regular_file(base64.b64decode(value["content"]))
                    elif key == "lfsFile":
                        oid, size = value["oid"], value.get("size")
                        stored = hub.root / "objects" / oid
                        if oid not in r.lfs_objects or not stored.exists():
                            raise HubError(400, f"LFS object {oid} for {path} was never uploaded")
                        if size is not None and stored.stat().st_size != size:
                            raise HubError(400, f"LFS object {oid} for {path} has another size")
                        tree[path] = StoredFile(stored.stat().st_size, oid, lfs=True)
                    elif key == "deletedFile":
                        if path not in tree:
                            raise HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
                        del tree[path]
                    elif key == "deletedFolder":
                        prefix = path.rstrip("/") + "/"
                        for p in [p for p in tree if p.startswith(prefix)]:
                            del tree[p]
                    else:
                        raise HubError(400, f"unknown commit operation {key}")
                cid = hub.new_commit(r, branch, tree)
            url = f"{self._base()}/{type}/{repo}/commit/{cid}"
            self._send(200, {"success": True, "commitOid": cid, "commitUrl": url, "hookOutput": ""})

        # ------------------------------------------------------------ reading

        def do_tree(self, type: str, repo: str, rev: str, path: str = "") -> None:  # noqa: A002
            recursive = self.query.get("recursive", ["false"])[0].lower() == "true"
            with hub._lock:
                r = hub.repo(type, repo)
                _, tree = hub.head(r, rev)
            path = unquote(path)
            if path and path not in {e["path"] for e in _listing(tree, "", True) if e["type"] == "directory"}:
                raise HubError(404, f"{path} does not exist", "EntryNotFound")
            entries = _listing(tree, path, recursive)
            cursor = int(self.query.get("cursor", ["0"])[0])
            page = entries[cursor:cursor + hub.page_size]
            headers = {}
            if cursor + hub.page_size < len(entries):
                nxt = f"{self._base()}{urlsplit(self.path).path}?recursive={str(recursive).lower()}&cursor={cursor + hub.page_size}"
                headers["Link"] = f'<{nxt}>; rel="next"'
            self._send(200, page, headers)

        def do_paths_info(self, type: str, repo: str, rev: str) -> None:  # noqa: A002
            form = parse_qs(self._body().decode())
            with hub._lock:
                r = hub.repo(type, repo)
                _, tree = hub.head(r, rev)
            dirs = {e["path"] for e in _listing(tree, "", True) if e["type"] == "directory"}
            out = []
            for p in form.get("paths", []):
                if p in tree:
                    out.append(_entry(p, tree[p]))
                elif p.rstrip("/") in dirs:
                    out.append(_dir_entry(p.rstrip("/")))
            self._send(200, out)

        def do_resolve(self, repo: str, rev: str, path: str, type: str = "models") -> None:  # noqa: A002
            with hub._lock:
                r = hub.repo(type, repo)
                cid, tree = hub.head(r, rev)
            path = unquote(path)
            if path not in tree:
                raise HubError(404, f"{path} not found", "EntryNotFound")
            f = tree[path]
            headers = {"X-Repo-Commit": cid, "ETag": f'"{f.sha256 if f.lfs else f.oid}"'}
            if f.lfs:
                headers |= {"X-Linked-Etag": f'"{f.sha256}"', "X-Linked-Size": str(f.size)}
            self._send(200, raw=hub.content(f), headers=headers, content_type="application/octet-stream")

    return Handler


def dataset_on_hub(server: HubServer, repo_id: str, files: dict[str, str]) -> tuple[Any, str]:
    """A dataset repo on the server holding `files` (path -> text), uploaded as a user would: the
    `HfApi` client and the commit. Points huggingface_hub at the server first (it reads HF_ENDPOINT
    at import)."""
    os.environ["HF_ENDPOINT"] = server.endpoint
    from huggingface_hub import HfApi

    api = HfApi(endpoint=server.endpoint, token=server.token)
    api.create_repo(repo_id, repo_type="dataset")
    folder = Path(tempfile.mkdtemp())
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return api, api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="dataset").oid


def run_online(script: str, home: Path, timeout: int = 180) -> dict[str, Any]:
    """Run `script` (which starts a HubServer) in a subprocess that may go online, with its own Hub
    cache in `home`, and return the JSON its last line prints. A subprocess: the test session runs
    with HF_HUB_OFFLINE=1, which huggingface_hub reads at import."""
    tests = Path(__file__).resolve().parent
    env = {**os.environ, "HF_HUB_OFFLINE": "0", "HF_DATASETS_OFFLINE": "0", "HF_HOME": str(home),
           "HF_TOKEN": "t", "HF_HUB_DISABLE_XET": "1", "PYTHONPATH": str(tests.parent)}
    env.pop("HF_DATASETS_CACHE", None)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tests, env=env, timeout=timeout)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])
