"""A small OpenAI-compatible server on 127.0.0.1 for tests: real HTTP, real text, scripted faults.

Chat completions answer translation requests with real text in the requested language: the
request's last user message is "... into <Language>. ...\\n\\n<English text>" (the shape of
`datakit.llm.prompts.translation_messages`); the server finds the English line in NTREX-128's
`newstest2019-src.eng.txt` and answers the reference line of the same number in the target
language's file (a text it does not know gets a line chosen by its hash, still in the right
language). Template requests (`template_messages`) get a real line in the requested language
followed by the template's placeholders. Judge prompts (system message with "strict judge") get `judge_reply`.

Faults are scripted with `inject(fault, times, match=None, path=...)`: the next `times` requests
to `path` (whose prompt contains `match`, when given) get the fault instead of an answer:
  "429" (with Retry-After), any other status code ("500", "503", "400"), "401_echo" (a 401
  whose message echoes the Authorization header, as some proxies do), "slow" (answers after
  `slow_seconds`), "malformed" (cut-off JSON), "no_choices", "drop" (connection closed without a
  response), "drop_mid" (closed halfway through the body), "refusal", "empty", "english" (the
  source text back, untranslated), "lost_placeholder" (a template request answered without its
  {text} placeholder).
Batch lines use faults injected with path="batch" ("500" and "malformed" become failed lines).

Every request is recorded (`events`): path, prompt, what was answered, time. Files and batches
(`/v1/files`, `/v1/files/{id}/content`, `/v1/batches`, `/v1/batches/{id}`) are implemented enough
for the openai client's Batch API calls; a batch goes validating -> in_progress -> completed over
successive retrievals (`batch_polls` of them).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import default as email_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

CHAT = "/v1/chat/completions"

# Names the prompts use (CLDR/Babel English names) -> NTREX file codes, where langcodes' own
# names differ or a language has several files.
NAME_TO_NTREX = {
    "simplified chinese": "zho-CN", "chinese": "zho-CN", "traditional chinese": "zho-TW", "arabic": "arb",
    "swahili": "swa", "persian": "fas", "english": "eng-US", "spanish": "spa", "french": "fra",
    "portuguese": "por", "malay": "msa", "estonian": "est", "uzbek": "uzb", "serbian": "srp-Cyrl",
}


@dataclass
class Fault:
    kind: str
    times: int
    match: str | None
    path: str


@dataclass
class Event:
    path: str
    prompt: str | None
    answer: str
    t: float
    authorization: str | None = None


@dataclass
class _State:
    faults: list[Fault] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)
    batches: dict[str, dict[str, Any]] = field(default_factory=dict)
    billed: list[tuple[int, int]] = field(default_factory=list)


def _last_user(body: dict[str, Any]) -> str | None:
    msgs = body.get("messages") or []
    users = [m.get("content") for m in msgs if isinstance(m, dict) and m.get("role") == "user"]
    return users[-1] if users and isinstance(users[-1], str) else None


class OpenAIStub:
    def __init__(self, ntrex_dir: Path | str | None = None, *, model: str = "ntrex-mt", slow_seconds: float = 2.0,
                 retry_after: str = "1", judge_reply: str = '{"score": 4, "reason": "fluent and correct"}'):
        self.model, self.slow_seconds, self.retry_after, self.judge_reply = model, slow_seconds, retry_after, judge_reply
        self.batch_polls = 2  # retrievals before a batch completes (the first ones see "in_progress")
        self.lock = threading.Lock()
        self.state = _State()
        self.src: list[str] = []
        self.refs: dict[str, list[str]] = {}
        self.names: dict[str, str] = {}
        self.files: dict[str, Path] = {}
        self.inflight = self.max_inflight = 0
        if ntrex_dir is not None:
            self._load(Path(ntrex_dir))
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    # -- data --------------------------------------------------------------------------------

    def _load(self, d: Path) -> None:
        import langcodes

        self.src = (d / "newstest2019-src.eng.txt").read_text(encoding="utf-8").splitlines()
        self.index = {line: i for i, line in reversed(list(enumerate(self.src)))}
        self.files = {}
        for p in sorted(d.glob("newstest2019-ref.*.txt"), key=lambda p: ("-" in p.name[17:], p.name)):
            code = p.name[len("newstest2019-ref."):-len(".txt")]
            self.files[code] = p
            lang = langcodes.Language.get(code)
            for name in (code, lang.display_name(), lang.language_name()):
                self.names.setdefault(name.lower(), code)
        self.names.update(NAME_TO_NTREX)

    def reference(self, text: str, language: str) -> str | None:
        code = self.names.get(language.strip().lower())
        if code is None or code not in self.files:
            return None
        with self.lock:
            if code not in self.refs:  # read on first use: most tests need two or three languages
                self.refs[code] = self.files[code].read_text(encoding="utf-8").splitlines()
        i = self.index.get(text)
        if i is None:
            i = int(hashlib.sha256(text.encode()).hexdigest(), 16) % len(self.src)
        return self.refs[code][i]

    # -- control -----------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> OpenAIStub:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def inject(self, kind: str, times: int = 1, match: str | None = None, path: str = CHAT) -> None:
        with self.lock:
            self.state.faults.append(Fault(kind, times, match, path))

    def clear(self) -> None:
        with self.lock:
            self.state.faults.clear()
            self.state.events.clear()
            self.state.billed.clear()
            self.max_inflight = 0
            self.batch_polls = 2

    @property
    def events(self) -> list[Event]:
        with self.lock:
            return list(self.state.events)

    @property
    def billed(self) -> list[tuple[int, int]]:
        """(prompt_tokens, completion_tokens) of every well-formed answer produced, delivered or not."""
        with self.lock:
            return list(self.state.billed)

    def by_prompt(self, path: str = CHAT) -> dict[str, list[str]]:
        """What each prompt (its text after the blank line) got, in order."""
        out: dict[str, list[str]] = defaultdict(list)
        for e in self.events:
            if e.path == path and e.prompt is not None:
                out[e.prompt.rsplit("\n\n", 1)[-1]].append(e.answer)
        return dict(out)

    def take_fault(self, path: str, prompt: str | None) -> str | None:
        with self.lock:
            for f in self.state.faults:
                if f.path == path and f.times > 0 and (f.match is None or (prompt is not None and f.match in prompt)):
                    f.times -= 1
                    return f.kind
        return None

    def record(self, path: str, prompt: str | None, answer: str, auth: str | None = None) -> None:
        with self.lock:
            self.state.events.append(Event(path, prompt, answer, time.monotonic(), auth))

    # -- answers -----------------------------------------------------------------------------

    def answer_text(self, body: dict[str, Any]) -> tuple[str | None, str]:
        """(text, error): the answer to a chat request, or why it cannot be answered (a 400)."""
        msgs = body.get("messages") or []
        system = " ".join(m.get("content", "") for m in msgs if isinstance(m, dict) and m.get("role") == "system")
        prompt = _last_user(body)
        if prompt is None:
            return None, "no user message"
        if "strict judge" in system:
            return self.judge_reply, ""
        m = re.search(r"\binto ([^.\n]+)\.", prompt)
        text = prompt.rsplit("\n\n", 1)[-1]
        if m is None:
            return f"Received: {text}", ""
        if "instruction template" in prompt:
            return self.template_reply(prompt.split("\n\n", 1)[1], m.group(1))
        ref = self.reference(text, m.group(1))
        return (ref, "") if ref is not None else (None, f"unknown language {m.group(1)!r}")

    def template_reply(self, template: str, language: str) -> tuple[str | None, str]:
        """A template "translation": a real line in the language (chosen by the template's hash),
        then the template's placeholders, each once, in their order."""
        ref = self.reference(template, language)
        if ref is None:
            return None, f"unknown language {language!r}"
        slots = re.findall(r"\{\w+\}", template)
        names = " ".join(s for s in slots if s != "{text}")
        return f"{ref} {names}".strip() + ("\n\n{text}" if "{text}" in slots else ""), ""

    def completion(self, body: dict[str, Any], text: str) -> dict[str, Any]:
        max_tokens = body.get("max_tokens") or body.get("max_completion_tokens") or 4096
        finish = "stop"
        completion_tokens = math.ceil(len(text) / 3)
        if completion_tokens > max_tokens:
            text, completion_tokens, finish = text[:max_tokens * 3], max_tokens, "length"
        prompt_tokens = 3 + sum(4 + math.ceil(len(str(m.get("content", ""))) / 4) for m in body.get("messages", []))
        with self.lock:
            self.state.billed.append((prompt_tokens, completion_tokens))
        return {"id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion", "created": int(time.time()),
                "model": body.get("model", self.model),
                "choices": [{"index": 0, "finish_reason": finish,
                             "message": {"role": "assistant", "content": text}}],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                          "total_tokens": prompt_tokens + completion_tokens}}

    def canned(self, kind: str, body: dict[str, Any]) -> str | None:
        if kind == "refusal":
            return "I'm sorry, but I can't help with that request."
        if kind == "empty":
            return ""
        if kind == "english":
            prompt = _last_user(body) or ""
            return prompt.split("\n\n", 1)[1] if "instruction template" in prompt else prompt.rsplit("\n\n", 1)[-1]
        if kind == "lost_placeholder":  # a template translated, but its {text} dropped
            return (self.answer_text(body)[0] or "").replace("{text}", "").strip()
        return None

    # -- batches -----------------------------------------------------------------------------

    def run_batch(self, batch: dict[str, Any]) -> None:
        out, err = [], []
        for line in self.state.files[batch["input_file_id"]].decode().splitlines():
            req = json.loads(line)
            body, cid = req["body"], req["custom_id"]
            prompt = _last_user(body)
            fault = self.take_fault("batch", prompt)
            rid = f"batch_req_{uuid.uuid4().hex[:8]}"
            if fault in ("500", "malformed"):
                self.record("batch", prompt, f"batch_{fault}")
                if fault == "500":
                    err.append({"id": rid, "custom_id": cid, "response": {"status_code": 500, "body": {
                        "error": {"message": "server error", "type": "server_error"}}}, "error": None})
                else:
                    out.append({"id": rid, "custom_id": cid, "response": {"status_code": 200, "body": {"id": "x"}},
                                "error": None})
                continue
            text = self.canned(fault, body) if fault else None
            if text is None:
                text, problem = self.answer_text(body)
                if text is None:
                    self.record("batch", prompt, "batch_400")
                    err.append({"id": rid, "custom_id": cid, "response": {"status_code": 400, "body": {
                        "error": {"message": problem}}}, "error": None})
                    continue
            self.record("batch", prompt, "batch_ok")
            out.append({"id": rid, "custom_id": cid, "error": None,
                        "response": {"status_code": 200, "request_id": rid, "body": self.completion(body, text)}})
        for name, rows in (("output_file_id", out), ("error_file_id", err)):
            if rows:
                fid = f"file-{uuid.uuid4().hex[:12]}"
                self.state.files[fid] = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()
                batch[name] = fid
        batch["request_counts"] = {"total": len(out) + len(err), "completed": len(out), "failed": len(err)}


def _handler(stub: OpenAIStub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None,
                  raw: bytes | None = None, ctype: str = "application/json") -> None:
            data = raw if raw is not None else json.dumps(payload, ensure_ascii=False).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

        def _error(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
            self._send(status, {"error": {"message": message, "type": "error", "code": status}}, headers)

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def do_GET(self) -> None:
            parts = self.path.split("?")[0].rstrip("/").split("/")
            if self.path.startswith("/v1/models"):
                return self._send(200, {"object": "list", "data": [{"id": stub.model, "object": "model",
                                                                     "created": 0, "owned_by": "datakit-tests"}]})
            if len(parts) == 4 and parts[2] == "batches" and parts[3] in stub.state.batches:
                b = stub.state.batches[parts[3]]
                if b["status"] != "completed":
                    b["_polls"] = b.get("_polls", 0) + 1
                    if b["_polls"] >= stub.batch_polls:
                        stub.run_batch(b)
                        b["status"] = "completed"
                    else:
                        b["status"] = "in_progress"
                return self._send(200, {k: v for k, v in b.items() if not k.startswith("_")})
            if len(parts) == 5 and parts[2] == "files" and parts[4] == "content" and parts[3] in stub.state.files:
                return self._send(200, None, raw=stub.state.files[parts[3]], ctype="application/octet-stream")
            return self._error(404, f"no route {self.path}")

        def do_POST(self) -> None:
            data = self._body()
            path = self.path.split("?")[0].rstrip("/")
            if path == CHAT:
                return self._chat(data)
            fault = stub.take_fault(path, None)
            stub.record(path, None, fault or "ok", self.headers.get("Authorization"))
            if fault == "401_echo":
                return self._error(401, f"Incorrect API key provided: {self.headers.get('Authorization')}")
            if fault:
                return self._error(int(fault), "injected fault", {"Retry-After": stub.retry_after})
            if path == "/v1/files":
                msg = BytesParser(policy=email_policy).parsebytes(
                    b"Content-Type: " + self.headers["Content-Type"].encode() + b"\r\n\r\n" + data)
                fields = {p.get_param("name", header="content-disposition"): p for p in msg.iter_parts()}
                content = fields["file"].get_payload(decode=True)
                fid = f"file-{uuid.uuid4().hex[:12]}"
                with stub.lock:
                    stub.state.files[fid] = content
                return self._send(200, {"id": fid, "object": "file", "bytes": len(content), "created_at": int(time.time()),
                                        "filename": fields["file"].get_filename(), "status": "processed",
                                        "purpose": fields["purpose"].get_payload(decode=True).decode()})
            if path == "/v1/batches":
                req = json.loads(data)
                if req.get("input_file_id") not in stub.state.files:
                    return self._error(400, "unknown input file")
                bid = f"batch_{uuid.uuid4().hex[:12]}"
                batch = {"id": bid, "object": "batch", "endpoint": req["endpoint"], "errors": None,
                         "input_file_id": req["input_file_id"], "completion_window": req["completion_window"],
                         "status": "validating", "output_file_id": None, "error_file_id": None,
                         "created_at": int(time.time()), "request_counts": {"total": 0, "completed": 0, "failed": 0}}
                with stub.lock:
                    stub.state.batches[bid] = batch
                return self._send(200, batch)
            return self._error(404, f"no route {path}")

        def _chat(self, data: bytes) -> None:
            with stub.lock:
                stub.inflight += 1
                stub.max_inflight = max(stub.max_inflight, stub.inflight)
            try:
                self._chat_answer(data)
            finally:
                with stub.lock:
                    stub.inflight -= 1

        def _chat_answer(self, data: bytes) -> None:
            try:
                body = json.loads(data)
            except ValueError:
                return self._error(400, "invalid JSON in request")
            prompt = _last_user(body)
            fault = stub.take_fault(CHAT, prompt)
            stub.record(CHAT, prompt, fault or "ok", self.headers.get("Authorization"))
            if fault == "429":
                return self._error(429, "rate limited", {"Retry-After": stub.retry_after})
            if fault and fault.isdigit():
                return self._error(int(fault), "injected fault")
            if fault == "401_echo":
                token = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
                return self._error(401, f"Incorrect API key provided: {token}. You can find your API key at ...")
            if fault == "drop":
                self.close_connection = True
                return None
            if fault == "malformed":
                return self._send(200, None, raw=b'{"id": "chatcmpl-x", "object": "chat.completion", "choices": [{"ind')
            if fault == "no_choices":
                return self._send(200, {"id": "chatcmpl-x", "object": "chat.completion", "choices": []})
            if fault == "slow":
                time.sleep(stub.slow_seconds)
            text = stub.canned(fault, body) if fault else None
            if text is None:
                text, problem = stub.answer_text(body)
                if text is None:
                    return self._error(400, problem)
            payload = json.dumps(stub.completion(body, text), ensure_ascii=False).encode()
            if fault == "drop_mid":
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload[: len(payload) // 2])
                    self.wfile.flush()
                except OSError:
                    pass
                self.close_connection = True
                return None
            return self._send(200, None, raw=payload)

    return Handler


def toy_lang_of(text: str) -> tuple[str, float] | None:
    """A toy language-ID hook for tests, standing in for the fastText model the filter stage builds."""
    han = sum("\u4e00" <= c <= "\u9fff" for c in text)
    words = re.findall(r"\w+", text.lower())
    if han > len(text) / 3:
        return "zho_Hans", 0.99
    if sum(w in {"the", "and", "of", "to", "is", "a", "in", "on"} for w in words) >= 2:
        return "eng_Latn", 0.9
    if sum(w in {"na", "ya", "wa", "kwa", "ni", "za", "la", "katika"} for w in words) >= 2:
        return "swh_Latn", 0.8
    return None
