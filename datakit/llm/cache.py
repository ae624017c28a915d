"""The persistent response cache: what was answered once is never asked (or paid for) again.

One SQLite database in WAL mode, in the user's cache folder rather than the build's output folder,
so a re-run, a resumed run or a rebuild into a new folder finds every answer already bought.
SQLite with WAL is safe for several processes on one machine (Dask workers share the file); it is
not safe on network file systems, so keep the cache on a local disk.

Rows hold the request (model, messages, parameters), the answer text, finish reason, usage, the
raw response body and the endpoint it came from (no user info, no query string). Never a header,
never the key: `put` masks the key's value in anything it stores, should a server have echoed it.
Only well-formed answers are stored; failures are not, so a later run asks again.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from datakit.hashing import canonical_json
from datakit.llm.protocol import Answer
from datakit.llm.redact import redact

DB_NAME = "responses.sqlite3"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    request TEXT NOT NULL,
    text TEXT NOT NULL,
    refusal TEXT,
    finish_reason TEXT,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    response_model TEXT,
    response TEXT,
    endpoint TEXT,
    via TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS batches (
    batch_id TEXT PRIMARY KEY,
    endpoint TEXT,
    keys TEXT NOT NULL,
    state TEXT NOT NULL,
    created REAL NOT NULL
);
"""


def default_cache_dir() -> Path:
    """$DATAKIT_CACHE_DIR/llm, else $XDG_CACHE_HOME/datakit/llm, else ~/.cache/datakit/llm.

    Same root as the rest of datakit's cache (models), so one variable moves everything.
    """
    if os.environ.get("DATAKIT_CACHE_DIR"):
        return Path(os.environ["DATAKIT_CACHE_DIR"]) / "llm"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "datakit" / "llm"


class ResponseCache:
    """Answers by cache key, shared by threads and processes; picklable (reconnects where it lands)."""

    def __init__(self, cache_dir: str | os.PathLike[str] | None = None):
        self.dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / DB_NAME
        self._local = threading.local()
        self._conn()

    def __getstate__(self) -> dict[str, Any]:
        return {"dir": self.dir, "path": self.path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.dir, self.path = state["dir"], state["path"]
        self._local = threading.local()

    def __repr__(self) -> str:
        return f"ResponseCache({str(self.dir)!r})"

    def _conn(self) -> sqlite3.Connection:
        """One connection per thread and process (sqlite3 connections must not cross either)."""
        conn = getattr(self._local, "conn", None)
        if conn is None or getattr(self._local, "pid", None) != os.getpid():
            conn = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(_SCHEMA)
            self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    def get_many(self, keys: Iterable[str]) -> dict[str, Answer]:
        """The cached answers among `keys` (missing keys are simply absent)."""
        keys = list(dict.fromkeys(keys))
        found: dict[str, Answer] = {}
        conn = self._conn()
        for i in range(0, len(keys), 500):
            chunk = keys[i:i + 500]
            rows = conn.execute(
                "SELECT key, text, finish_reason, prompt_tokens, completion_tokens, refusal, response_model "
                f"FROM responses WHERE key IN ({','.join('?' * len(chunk))})", chunk).fetchall()
            for k, text, finish, pt, ct, refusal, rmodel in rows:
                found[k] = Answer(text, finish, pt, ct, refusal, rmodel)
        return found

    def get(self, key: str) -> Answer | None:
        return self.get_many([key]).get(key)

    def put(self, key: str, *, model: str, messages: Sequence[Mapping[str, str]], params: Mapping[str, Any],
            answer: Answer, response: Mapping[str, Any] | None = None, endpoint: str | None = None,
            via: str = "live", secrets: Iterable[str] = ()) -> Answer:
        """Store `answer` unless the key is already there; return the answer that is stored.

        First writer wins, and every writer gets the stored answer back, so two processes that raced
        on one prompt still use the same text.
        """
        secrets = list(secrets)

        def clean(s: str | None) -> str | None:
            return None if s is None else redact(s, secrets, shapes=False)

        request = canonical_json({"model": model, "messages": [dict(m) for m in messages], "params": dict(params)})
        self._conn().execute(
            "INSERT OR IGNORE INTO responses (key, model, request, text, refusal, finish_reason, prompt_tokens,"
            " completion_tokens, response_model, response, endpoint, via, created)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (key, model, clean(request), clean(answer.text), clean(answer.refusal), answer.finish_reason,
             answer.prompt_tokens, answer.completion_tokens, answer.response_model,
             clean(canonical_json(response)) if response is not None else None, clean(endpoint), via, time.time()))
        stored = self.get(key)
        assert stored is not None
        return stored

    def __len__(self) -> int:
        return self._conn().execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    # Batch jobs in flight: remembered here so a run that dies while the provider works does not
    # submit (and pay for) the same requests again; the next run collects the pending job instead.
    def add_batch(self, batch_id: str, endpoint: str, keys: Sequence[str]) -> None:
        self._conn().execute("INSERT OR REPLACE INTO batches VALUES (?,?,?,?,?)",
                             (batch_id, endpoint, json.dumps(list(keys)), "pending", time.time()))

    def pending_batches(self, endpoint: str) -> list[tuple[str, list[str]]]:
        rows = self._conn().execute("SELECT batch_id, keys FROM batches WHERE state='pending' AND endpoint=?"
                                    " ORDER BY created", (endpoint,)).fetchall()
        return [(b, json.loads(k)) for b, k in rows]

    def finish_batch(self, batch_id: str, state: str) -> None:
        self._conn().execute("UPDATE batches SET state=? WHERE batch_id=?", (state, batch_id))
