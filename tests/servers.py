"""Real OpenAI-compatible servers for tests: a scripted loopback server and ``transformers serve``.

``scripted_server`` (function scope; one server per session, reset for every test) plays an LLM
endpoint whose behaviour each test programs: fixed replies keyed by a substring of the last user
message, latency, 429 with Retry-After, 5xx, malformed JSON, dropped connections. Example::

    def test_x(scripted_server):
        scripted_server.on("list scenarios", "1. a web app\\n2. a CLI")       # always, for matching prompts
        scripted_server.on("flaky", error(429, retry_after=1), times=1)       # once, then the next rule
        scripted_server.on(None, lambda body: reply("ok", usage=(10, 2)))     # anything else
        cfg = scripted_server.llm_config(concurrency=4)                       # an LLMConfig pointing at it
        ...
        assert len(scripted_server.requests("flaky")) == 2                   # the request log

``transformers_server`` (session scope) runs ``transformers serve`` on the built-in SmolLM2 directory
and yields its base URL (``.model`` holds the model name the server accepts).

Run as a script (``python tests/servers.py --latency 0.2``) it serves the scripted default (an echo)
in the foreground and prints ``PORT <n>``; ``GET /_stats`` returns the request count (benchmarks).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

try:
    import pytest
except ImportError:  # the benchmark runs this file as a script without the dev extras
    pytest = None

__all__ = ["Act", "FileServer", "ScriptedServer", "ServerURL", "drop", "error", "malformed", "reply",
           "scripted_server", "scripted_server_session", "transformers_server"]


# --------------------------------------------------------------------------- scripted behaviour
@dataclass
class Act:
    """What the scripted server does with one request."""

    kind: str = "reply"  # reply | status | malformed | drop
    content: str = ""
    status: int = 200
    retry_after: float | None = None
    delay: float | None = None  # None: the server's latency
    usage: tuple[int, int] | None = None  # (prompt_tokens, completion_tokens); None: ~4 chars a token
    body: str = ""


def reply(content: str, delay: float | None = None, usage: tuple[int, int] | None = None) -> Act:
    """A normal chat.completion with ``content``."""
    return Act("reply", content=content, delay=delay, usage=usage)


def error(status: int, retry_after: float | None = None, delay: float | None = None) -> Act:
    """An HTTP error (429, 500, 503, 400, ...), with a Retry-After header when given."""
    return Act("status", status=status, retry_after=retry_after, delay=delay)


def malformed(body: str = '{"choices": [', delay: float | None = None) -> Act:
    """HTTP 200 with a body that is not a chat.completion (default: truncated JSON)."""
    return Act("malformed", body=body, delay=delay)


def drop(delay: float | None = None) -> Act:
    """Close the connection without answering."""
    return Act("drop", delay=delay)


Action = Act | str | Callable[[dict], "Act | str"]


def _last_user(messages: list[dict]) -> str:
    for m in reversed(messages or []):
        if m.get("role") == "user":
            return str(m.get("content", ""))
    return ""


def _default_usage(messages: list[dict], content: str) -> tuple[int, int]:
    chars = sum(len(str(m.get("content", ""))) for m in messages)
    return math.ceil(chars / 4) + 4 * len(messages), math.ceil(len(content) / 4)


class ScriptedServer:
    """A loopback ``/v1/chat/completions`` whose replies and faults are programmed per request."""

    def __init__(self, latency: float = 0.0) -> None:
        self.latency = latency
        self.rules: list[list[Any]] = []  # [match, action, times_left]
        self.log: list[dict] = []
        self.default: Callable[[dict], Act | str] = lambda body: f"echo: {_last_user(body.get('messages'))}"
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._lock = threading.Lock()

    # ----------------------------------------------------------------- programming
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def on(self, match: str | None, action: Action, times: int | None = None) -> ScriptedServer:
        """For requests whose last user message contains ``match`` (None: any), do ``action``.

        ``action`` is an :class:`Act`, a reply string, or a callable ``body -> Act | str``; ``times``
        limits how often the rule fires (None: always). Rules are tried in the order added.
        """
        with self._lock:
            self.rules.append([match, action, times])
        return self

    def replies(self, mapping: dict[str, Action]) -> ScriptedServer:
        """Fixed replies keyed by a substring of the last user message."""
        for match, action in mapping.items():
            self.on(match, action)
        return self

    def reset(self) -> None:
        with self._lock:
            self.rules.clear()
            self.log.clear()
        self.latency = 0.0
        self.default = lambda body: f"echo: {_last_user(body.get('messages'))}"

    def requests(self, match: str | None = None) -> list[dict]:
        """Logged requests (arrival order) whose last user message contains ``match``."""
        with self._lock:
            return [e for e in self.log if match is None or match in e["last_user"]]

    def llm_config(self, **overrides: Any):
        """An ``LLMConfig`` aimed at this server, fast back-off for tests."""
        from instructcoder_utils.config import LLMConfig

        base = {"provider": "openai", "base_url": self.base_url, "model": "scripted",
                "api_key_env": "SCRIPTED_SERVER_TEST_KEY", "concurrency": 8, "max_retries": 3,
                "backoff_base_s": 0.01, "backoff_max_s": 2.0, "timeout_s": 10.0, "max_tokens": 64}
        return LLMConfig(**{**base, **overrides})

    def profile_overrides(self, **llm: Any) -> dict[str, Any]:
        """``overrides`` for ``load_profile``/``start_stage`` that send a stage's LLM calls here."""
        return {"llm": self.llm_config(**llm).model_dump(exclude_defaults=True)}

    # ----------------------------------------------------------------- serving
    def _pick(self, body: dict) -> Act:
        last = _last_user(body.get("messages"))
        chosen: Action | None = None
        with self._lock:
            for rule in self.rules:
                match, action, left = rule
                if (match is None or match in last) and (left is None or left > 0):
                    if left is not None:
                        rule[2] = left - 1
                    chosen = action
                    break
        if chosen is None:
            chosen = self.default
        if callable(chosen) and not isinstance(chosen, Act):
            chosen = chosen(body)
        return chosen if isinstance(chosen, Act) else reply(str(chosen))

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        arrived = time.monotonic()
        try:
            body = await request.json()
        except json.JSONDecodeError:
            return web.json_response({"error": {"message": "body is not JSON"}}, status=400)
        act = self._pick(body)
        with self._lock:
            self.log.append({"t": arrived, "model": body.get("model"), "messages": body.get("messages"),
                             "last_user": _last_user(body.get("messages")), "max_tokens": body.get("max_tokens"),
                             "temperature": body.get("temperature"), "kind": act.kind, "status": act.status,
                             "authorization": request.headers.get("Authorization", "")})
        delay = self.latency if act.delay is None else act.delay
        if delay > 0:
            await asyncio.sleep(delay)
        if act.kind == "drop":
            request.transport.close()
            raise asyncio.CancelledError  # nothing is sent: the client sees a dropped connection
        if act.kind == "malformed":
            return web.Response(text=act.body, content_type="application/json")
        if act.kind == "status":
            headers = {} if act.retry_after is None else {"Retry-After": f"{act.retry_after:g}"}
            return web.json_response({"error": {"message": f"scripted {act.status}", "type": "scripted"}},
                                     status=act.status, headers=headers)
        pt, ct = act.usage or _default_usage(body.get("messages") or [], act.content)
        return web.json_response({
            "id": f"chatcmpl-{len(self.log)}", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model"),
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": act.content}}],
            "usage": {"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct},
        })

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response({"requests": len(self.log)})

    async def _start_async(self, port: int) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/_stats", self._stats)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock, backlog=1024).start()

    def start(self, port: int = 0) -> ScriptedServer:
        """Serve from a daemon thread with its own event loop."""
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        def serve() -> None:
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(self._start_async(port))
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=serve, name="scripted-llm-server", daemon=True)
        self._thread.start()
        if not ready.wait(30):
            raise RuntimeError("scripted server did not start within 30 s")
        return self

    def stop(self) -> None:
        if not self._loop:
            return
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop = None


class ServerURL(str):
    """A base URL that also carries the model name the server accepts."""

    model: str

    def __new__(cls, url: str, model: str) -> ServerURL:
        obj = super().__new__(cls, url)
        obj.model = model
        return obj


# --------------------------------------------------------------------------- published files
class FileServer:
    """A loopback HTTP server that publishes one file, the way a download's tests need it: ``mode`` is
    "ok" (the bytes), "truncate" (announces the full length, sends half, closes) or an HTTP status code.
    ``hits`` counts GET requests. Use as a context manager; ``url`` is the file's address."""

    def __init__(self, body: bytes, mode: str | int = "ok", name: str = "edit_eval.jsonl") -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.body, self.mode, self.hits = body, mode, 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                server.hits += 1
                if isinstance(server.mode, int):
                    self.send_error(server.mode)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(server.body)))
                self.end_headers()
                if server.mode == "truncate":
                    self.wfile.write(server.body[: len(server.body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(server.body)

            def log_message(self, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/{name}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> FileServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._httpd.shutdown()
            self._thread.join(10)
        self._httpd.server_close()


# --------------------------------------------------------------------------- transformers serve
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(url: str, proc: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"transformers serve exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"transformers serve not ready after {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def start_transformers_serve(model_dir: str, log: Path, timeout: float = 240) -> tuple[subprocess.Popen, str]:
    """``transformers serve <dir>`` on a free loopback port, the model preloaded; returns (proc, base_url)."""
    exe = Path(sys.executable).with_name("transformers")
    cmd = [str(exe)] if exe.exists() else [shutil.which("transformers") or "transformers"]
    port = free_port()
    cmd += ["serve", str(model_dir), "--host", "127.0.0.1", "--port", str(port), "--device", "cpu",
            "--log-level", "warning"]
    # One intra-op thread: on a small shared CPU, torch's spinning OpenMP threads make a 135M model's
    # decode several times slower than a single thread does.
    env = {"OMP_NUM_THREADS": "1", **os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    fh = log.open("wb")
    proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    fh.close()
    try:
        _wait_ready(f"http://127.0.0.1:{port}/health", proc, log, timeout)
    except BaseException:
        stop_process(proc)
        raise
    return proc, f"http://127.0.0.1:{port}/v1"


def stop_process(proc: subprocess.Popen) -> None:
    """SIGTERM the process group, SIGKILL after 10 s."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(10)


if pytest is not None:

    @pytest.fixture(scope="session")
    def scripted_server_session() -> Iterator[ScriptedServer]:
        server = ScriptedServer().start()
        yield server
        server.stop()

    @pytest.fixture
    def scripted_server(scripted_server_session: ScriptedServer, monkeypatch) -> Iterator[ScriptedServer]:
        """The session's scripted server, reset (no rules, empty log, no latency) for this test."""
        scripted_server_session.reset()
        monkeypatch.setenv("SCRIPTED_SERVER_TEST_KEY", "sk-scripted-test-key")
        yield scripted_server_session
        scripted_server_session.reset()

    @pytest.fixture(scope="session")
    def transformers_server(smollm_dir: str, tmp_path_factory) -> Iterator[ServerURL]:
        """``transformers serve`` with the built-in model; yields the base URL (``.model``: model name)."""
        log = tmp_path_factory.mktemp("transformers_serve") / "server.log"
        proc, url = start_transformers_serve(smollm_dir, log)
        yield ServerURL(url, model=str(smollm_dir))
        stop_process(proc)


def main() -> None:
    ap = argparse.ArgumentParser(description="scripted OpenAI-compatible server (echo replies)")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--latency", type=float, default=0.0, help="seconds per request")
    args = ap.parse_args()
    server = ScriptedServer(latency=args.latency)
    loop = asyncio.new_event_loop()
    loop.run_until_complete(server._start_async(args.port))
    print(f"PORT {server.port}", flush=True)
    loop.add_signal_handler(signal.SIGTERM, loop.stop)
    try:
        loop.run_forever()
    except KeyboardInterrupt:
        pass
    loop.run_until_complete(server._runner.cleanup())


if __name__ == "__main__":
    main()
