"""The LLM client: every generation and judging call of the study goes through here.

Why one client: LLM calls are the slow, costly and flaky part of the pipeline (the paper made ~100k
gpt-3.5-turbo calls). This module makes them fast (async, ``llm.concurrency`` in flight, optional
requests/tokens-per-minute limits), robust (bounded retries with exponential back-off and jitter on
429/5xx/timeouts/dropped connections, honouring ``Retry-After``; a reply that cannot be used is a
recorded failure, never a crash), cheap to repeat (a content-addressed SQLite cache: a warm re-run
sends zero requests) and bounded in cost (``llm.budget_tokens`` / ``llm.budget_usd`` stop the run
*before* they are exceeded, reserving ``max_tokens`` for every request in flight).

It talks to any OpenAI-compatible endpoint with the official ``openai`` package: OpenAI itself
(``base_url: null``), vLLM, a llama.cpp server or ``transformers serve``. The key is read from the
environment variable named by ``llm.api_key_env``; it is never stored in the cache, usage or logs.
Local servers (loopback ``base_url``) need no key.

Usage::

    client = LLMClient(cfg.llm, cache_path=stage_out / "llm_cache.sqlite")
    results = client.run([ChatRequest(id="a1", messages=[...], prompt_version="si-v1")], desc="self-instruct")
    client.write_usage(stage_out / "usage.json")

How a stage resumes: every successful reply is committed to the cache as it arrives (SQLite WAL,
one transaction per reply), so ``kill -9`` loses at most the requests in flight. The stage builds the
same requests again (same ids, messages, ``prompt_version``) and calls ``run`` again: cached items come
back at once (``cached=True``), only the missing and the failed ones are sent. Write the output file
*after* ``run`` returns, with ``files.write_jsonl`` (atomic): a killed run leaves no partial file and
the re-run writes every item exactly once. Change ``prompt_version`` when a prompt changes, so stale
replies are not reused; use ``ChatRequest.sample`` to draw several replies for identical messages.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import os
import random
import re
import sqlite3
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from .config import LLMConfig
from .progress import bar as progress_bar

LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "0.0.0.0", "[::1]"}
NO_KEY_PLACEHOLDER = "sk-no-key-needed-for-local-server"
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_COUNTERS = ("items", "ok", "failures", "cache_hits", "requests", "retries", "prompt_tokens",
             "completion_tokens", "cost_usd", "seconds")


class LLMError(RuntimeError):
    """A configuration error (no provider, no key, ...); the message says what to set."""


@dataclass
class ChatRequest:
    """One chat completion to make. ``None`` sampling values take the profile's ``llm`` defaults.

    ``prompt_version`` is part of the cache key: bump it when the prompt template changes. ``sample``
    too: requests with identical messages but different ``sample`` get separate replies.
    """

    id: str
    messages: list[dict]
    prompt_version: str
    temperature: float | None = None
    max_tokens: int | None = None
    sample: int = 0
    stop: list[str] | None = None


@dataclass
class ChatResult:
    """The outcome of one request: ``ok`` with ``text`` (and ``parsed``), or ``error`` saying why not."""

    id: str
    ok: bool
    text: str | None
    parsed: Any
    error: str | None
    cached: bool
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str | None = None


@dataclass
class _Reply:
    """What the network (or the cache) gave for one cache key."""

    text: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str | None = None
    error: str | None = None
    cached: bool = False


@dataclass
class _Job:
    key: str
    request: ChatRequest
    temperature: float
    max_tokens: int
    prompt_bytes: int


@dataclass
class _Counts:
    desc: str = ""
    items: int = 0
    ok: int = 0
    failures: int = 0
    cache_hits: int = 0
    requests: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    seconds: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)


class _Fields(dict):
    """A JSON object read with attribute access; a missing field reads as None."""

    __getattr__ = dict.get


class _Malformed(Exception):
    """A reply that does not have the expected structure."""


# --------------------------------------------------------------------------- helpers
def is_local_url(base_url: str | None) -> bool:
    """Loopback servers (transformers serve, vLLM on this machine) take any key."""
    if not base_url:
        return False
    host = (urlparse(base_url).hostname or "").lower()
    return host in LOCAL_HOSTS or host.startswith("127.")


def resolve_api_key(cfg: LLMConfig) -> str:
    """The key from the environment (never from the profile); a placeholder for local servers."""
    name = cfg.api_key_env
    if not _ENV_NAME.match(name or ""):
        # Do not echo the value: it may be a key pasted where the variable's name belongs.
        raise LLMError("llm.api_key_env must be the NAME of an environment variable (e.g. OPENAI_API_KEY), "
                       "not the key itself; put the key in that environment variable")
    key = os.environ.get(name, "")
    if key:
        return key
    if is_local_url(cfg.base_url):
        return NO_KEY_PLACEHOLDER
    where = cfg.base_url or "the OpenAI API"
    raise LLMError(f"no API key for {where}: set the environment variable {name} "
                   f"(export {name}=...), or change llm.api_key_env to the variable that holds it")


def cache_key(model: str, req: ChatRequest, temperature: float, max_tokens: int) -> str:
    """Content address of a request: model + messages + sampling params + prompt version."""
    blob = {"model": model, "messages": req.messages, "temperature": float(temperature),
            "max_tokens": int(max_tokens), "prompt_version": req.prompt_version, "sample": int(req.sample)}
    if req.stop:
        blob["stop"] = list(req.stop)
    raw = json.dumps(blob, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def _retry_after(exc: BaseException) -> float | None:
    """Seconds the server asked us to wait (``retry-after-ms``, ``retry-after`` seconds or HTTP date)."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _http_response_class() -> type:
    """``Response`` of the HTTP library the installed openai SDK is built on (httpx or its successor)."""
    import openai

    base = next(c for c in openai.DefaultAsyncHttpxClient.__mro__[1:] if c.__name__ == "AsyncClient")
    return sys.modules[base.__module__.split(".")[0]].Response


def _run_in_thread(make_coro: Callable[[], Any]) -> Any:
    """Run a coroutine on a private event loop in a worker thread (a Jupyter kernel already runs one).

    Interrupting the kernel cancels the requests in flight; the replies already received are cached.
    """
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="llm-client", daemon=True)
    thread.start()
    finished = threading.Event()

    async def wrapped() -> Any:
        try:
            return await make_coro()
        finally:
            finished.set()

    future = asyncio.run_coroutine_threadsafe(wrapped(), loop)
    try:
        return future.result()
    except BaseException:
        future.cancel()
        finished.wait(30)
        raise
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        if not thread.is_alive():
            loop.close()


def public_url(base_url: str | None) -> str | None:
    """``base_url`` without user:password or query string, for usage records and logs."""
    if not base_url:
        return base_url
    u = urlparse(base_url)
    host = u.hostname or ""
    host = f"[{host}]" if ":" in host else host
    return u._replace(netloc=host + (f":{u.port}" if u.port else ""), query="", fragment="").geturl()


def _short(exc: BaseException, limit: int = 300) -> str:
    text = f"{type(exc).__name__}: {exc}".replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------- cache
class ReplyCache:
    """SQLite cache of successful replies keyed by :func:`cache_key`; WAL, one transaction per reply.

    Only replies are stored (text, token counts): no headers, no key. Failures are not cached, so a
    re-run retries them.
    """

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path else None
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path) if self.path else ":memory:", timeout=60,
                                   isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS replies (key TEXT PRIMARY KEY, model TEXT, prompt_version TEXT, "
            "request_id TEXT, text TEXT NOT NULL, prompt_tokens INTEGER, completion_tokens INTEGER, "
            "finish_reason TEXT, created REAL)"
        )

    def get_many(self, keys: Iterable[str]) -> dict[str, _Reply]:
        keys = list(dict.fromkeys(keys))
        out: dict[str, _Reply] = {}
        with self._lock:
            for i in range(0, len(keys), 500):
                chunk = keys[i: i + 500]
                rows = self._db.execute(
                    "SELECT key, text, prompt_tokens, completion_tokens, finish_reason FROM replies "
                    f"WHERE key IN ({','.join('?' * len(chunk))})", chunk).fetchall()
                for key, text, pt, ct, fr in rows:
                    out[key] = _Reply(text, pt or 0, ct or 0, fr, None, True)
        return out

    def put(self, key: str, job: _Job, model: str, reply: _Reply) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO replies VALUES (?,?,?,?,?,?,?,?,?)",
                (key, model, job.request.prompt_version, job.request.id, reply.text, reply.prompt_tokens,
                 reply.completion_tokens, reply.finish_reason, time.time()))

    def spend(self) -> tuple[int, int]:
        """Tokens paid for the replies already in the cache (earlier runs of this stage)."""
        with self._lock:
            pt, ct = self._db.execute(
                "SELECT COALESCE(SUM(prompt_tokens),0), COALESCE(SUM(completion_tokens),0) FROM replies"
            ).fetchone()
        return int(pt), int(ct)

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM replies").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()


# --------------------------------------------------------------------------- rate limits
class _Bucket:
    """Token bucket: ``per_minute`` units, refilled continuously, burst of ``burst_s`` seconds' worth."""

    def __init__(self, per_minute: float, burst_s: float = 1.0) -> None:
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate * burst_s)
        self.level = self.capacity
        self.stamp = time.monotonic()
        self.lock = asyncio.Lock()

    def _refill(self) -> None:
        now = time.monotonic()
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now

    async def take(self, n: float) -> None:
        n = min(n, self.capacity)  # a request larger than the burst still goes, once the bucket is full
        async with self.lock:
            while True:
                self._refill()
                if self.level >= n:
                    self.level -= n
                    return
                await asyncio.sleep((n - self.level) / self.rate)

    def refund(self, n: float) -> None:
        self._refill()
        self.level = min(self.capacity, self.level + n)


# --------------------------------------------------------------------------- the client
class LLMClient:
    """Chat completions against an OpenAI-compatible endpoint; see the module docstring."""

    def __init__(self, cfg: LLMConfig, cache_path: str | Path | None = None) -> None:
        if cfg.provider == "none":
            raise LLMError("llm.provider is 'none' (the offline profile): set llm.provider: openai, and "
                           "llm.base_url for a server other than the OpenAI API, to make LLM calls")
        self.cfg = cfg
        self._api_key = resolve_api_key(cfg)
        self.cache = ReplyCache(cache_path)
        self._prior = self.cache.spend()
        self._runs: list[_Counts] = []
        self._session = _Counts(desc="total")
        self._prompt_slack = 0  # tokens the server counted beyond our estimate (chat-template overhead)
        self._pause_until = 0.0
        self._budget_msg: str | None = None

    def __repr__(self) -> str:  # never shows the key
        return f"LLMClient(model={self.cfg.model!r}, base_url={public_url(self.cfg.base_url)!r})"

    # ----------------------------------------------------------------- public API
    def run(self, requests: Iterable[ChatRequest], desc: str = "llm",
            parse: Callable[[str], Any] | None = None) -> list[ChatResult]:
        """Make every request (cache first); results in the same order, one per request.

        Transport and server errors are retried; what still fails, a malformed reply, a ``parse`` that
        raises ValueError/KeyError/IndexError, or a request the budget cannot cover ends as
        ``ok=False`` with its ``error``. Works from scripts and inside Jupyter (running loop).
        """
        requests = list(requests)
        ids = [r.id for r in requests]
        if len(set(ids)) != len(ids):
            dup = next(i for i in ids if ids.count(i) > 1)
            raise ValueError(f"LLMClient.run({desc!r}): request ids must be unique; {dup!r} appears twice")
        counts = _Counts(desc=desc, items=len(requests))
        started = time.perf_counter()
        jobs, job_of = self._jobs(requests)
        replies = self.cache.get_many(jobs)
        todo = [job for key, job in jobs.items() if key not in replies]
        counts.cache_hits = len(requests) - len(todo)
        if todo:
            replies.update(self._run_loop(todo, counts, desc))
        results = [self._result(req, replies[job_of[req.id]], parse, counts) for req in requests]
        seen: set[str] = set()
        for res, req in zip(results, requests, strict=True):  # a key served twice in one run: one request
            key = job_of[req.id]
            if key in seen and res.ok:
                res.cached = True
            seen.add(key)
        counts.seconds = time.perf_counter() - started
        self._record(counts)
        if self._budget_msg and any(r.error == self._budget_msg for r in results):
            print(f"WARNING [{desc}]: {self._budget_msg}; {counts.failures} of {counts.items} items not done",
                  file=sys.stderr)
        return results

    @property
    def usage(self) -> dict[str, Any]:
        """Totals of this client (all ``run`` calls), per-run rows, prices and budget; no secrets.

        ``requests`` counts HTTP requests sent (retries included), ``cache_hits`` the items answered
        without one, ``failures`` the items that ended ``ok=False``; tokens and ``cost_usd`` are what
        this client's requests used (``earlier_runs``: what the replies already in the cache cost).
        """
        total = {k: getattr(self._session, k) for k in _COUNTERS}
        total["cost_usd"] = round(total["cost_usd"], 6)
        total["seconds"] = round(total["seconds"], 3)
        prior_cost = self._cost(*self._prior)
        return {
            **total,
            "total_tokens": total["prompt_tokens"] + total["completion_tokens"],
            "errors": dict(self._session.errors),
            "model": self.cfg.model,
            "base_url": public_url(self.cfg.base_url),
            "prices": self.cfg.prices.model_dump(),
            "budget_tokens": self.cfg.budget_tokens,
            "budget_usd": self.cfg.budget_usd,
            "budget_stopped": self._budget_msg,
            "earlier_runs": {"prompt_tokens": self._prior[0], "completion_tokens": self._prior[1],
                             "cost_usd": round(prior_cost, 6)},
            "runs": [{k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(c).items()}
                     for c in self._runs],
        }

    def write_usage(self, path: str | Path) -> dict[str, Any]:
        """Write :attr:`usage` as JSON (atomically) and return it."""
        from .files import write_json

        usage = self.usage
        write_json(path, usage)
        return usage

    def usage_table(self):
        """One row per ``run`` call plus a total row, for notebooks."""
        import pandas as pd

        rows = [{k: getattr(c, k) for k in ("desc", *_COUNTERS)} for c in self._runs]
        rows.append({"desc": "total", **{k: getattr(self._session, k) for k in _COUNTERS}})
        df = pd.DataFrame(rows).set_index("desc")
        return df.round({"cost_usd": 4, "seconds": 2})

    def close(self) -> None:
        self.cache.close()

    # ----------------------------------------------------------------- bookkeeping
    def _jobs(self, requests: list[ChatRequest]) -> tuple[dict[str, _Job], dict[str, str]]:
        jobs: dict[str, _Job] = {}
        job_of: dict[str, str] = {}
        for req in requests:
            temp = self.cfg.temperature if req.temperature is None else req.temperature
            max_tokens = self.cfg.max_tokens if req.max_tokens is None else req.max_tokens
            key = cache_key(self.cfg.model, req, temp, max_tokens)
            job_of[req.id] = key
            if key not in jobs:
                nbytes = sum(len(str(m.get("content", "")).encode("utf-8")) for m in req.messages)
                jobs[key] = _Job(key, req, float(temp), int(max_tokens), nbytes)
        return jobs, job_of

    def _result(self, req: ChatRequest, reply: _Reply, parse: Callable[[str], Any] | None,
                counts: _Counts) -> ChatResult:
        res = ChatResult(req.id, reply.error is None, reply.text, None, reply.error, reply.cached,
                         reply.prompt_tokens, reply.completion_tokens, reply.finish_reason)
        if res.ok and parse is not None:
            try:
                res.parsed = parse(reply.text or "")
            except (ValueError, KeyError, IndexError) as exc:
                res.ok, res.error = False, f"parse error: {_short(exc)}"
        if res.ok:
            counts.ok += 1
        else:
            counts.failures += 1
            kind = (res.error or "").split(":", 1)[0][:60]
            counts.errors[kind] = counts.errors.get(kind, 0) + 1
        return res

    def _record(self, counts: _Counts) -> None:
        self._runs.append(counts)
        for k in _COUNTERS:
            setattr(self._session, k, getattr(self._session, k) + getattr(counts, k))
        for k, v in counts.errors.items():
            self._session.errors[k] = self._session.errors.get(k, 0) + v

    def _cost(self, prompt_tokens: float, completion_tokens: float) -> float:
        p = self.cfg.prices
        return prompt_tokens / 1000 * p.prompt_per_1k + completion_tokens / 1000 * p.completion_per_1k

    @staticmethod
    def _base_estimate(job: _Job) -> int:
        """About one token per 3 bytes (English and code run 3.5-4.5) plus a few per message."""
        return math.ceil(job.prompt_bytes / 3) + 4 * len(job.request.messages) + 3

    def _estimate_prompt(self, job: _Job) -> int:
        """Prompt tokens to reserve before the server has counted them (budget, tokens/minute)."""
        return self._base_estimate(job) + self._prompt_slack

    # ----------------------------------------------------------------- the async engine
    def _run_loop(self, todo: list[_Job], counts: _Counts, desc: str) -> dict[str, _Reply]:
        """Run the async part; in a worker thread when an event loop already runs (Jupyter)."""
        import openai  # noqa: F401  (imported before the bar starts: the first import takes seconds)

        bar = progress_bar(total=counts.items, initial=counts.cache_hits, desc=desc, unit="req", mininterval=0.5)
        try:
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                return asyncio.run(self._run_async(todo, counts, bar))
            return _run_in_thread(lambda: self._run_async(todo, counts, bar))
        finally:
            bar.close()

    async def _run_async(self, todo: list[_Job], counts: _Counts, bar) -> dict[str, _Reply]:
        import openai

        cfg = self.cfg
        client = openai.AsyncOpenAI(api_key=self._api_key, base_url=cfg.base_url, timeout=cfg.timeout_s,
                                    max_retries=0)
        state = _EngineState(
            rpm=_Bucket(cfg.requests_per_minute) if cfg.requests_per_minute else None,
            tpm=_Bucket(cfg.tokens_per_minute) if cfg.tokens_per_minute else None,
        )
        queue = deque(todo)
        out: dict[str, _Reply] = {}
        failed = 0

        async def worker() -> None:
            nonlocal failed
            while queue:
                job = queue.popleft()
                reply = await self._do_job(client, job, counts, state)
                out[job.key] = reply
                if reply.error is None:
                    self.cache.put(job.key, job, cfg.model, reply)
                else:
                    failed += 1
                bar.set_postfix(cached=counts.cache_hits, failed=failed, retries=counts.retries, refresh=False)
                bar.update(1)

        try:
            await asyncio.gather(*(worker() for _ in range(min(cfg.concurrency, len(todo)))))
        finally:
            await client.close()
        return out

    async def _do_job(self, client, job: _Job, counts: _Counts, state: _EngineState) -> _Reply:
        """One item: up to 1 + max_retries attempts; returns a reply or a recorded error."""
        import openai

        cfg = self.cfg
        response_class = _http_response_class()
        last = "no attempt made"
        for attempt in range(cfg.max_retries + 1):
            if state.fatal:
                return _Reply(error=f"not sent: {state.fatal}")
            est = self._estimate_prompt(job)
            need = _Reservation(est + job.max_tokens, self._cost(est, job.max_tokens))
            err = await self._reserve(state, need)
            if err:
                return _Reply(error=err)
            retry_after = None
            try:
                await self._wait_turn(state, need.tokens)
                counts.requests += 1
                # client.post (the openai SDK's documented route for raw requests) rather than the typed
                # chat.completions.create: same auth, timeouts and error classes, but without building
                # pydantic models both ways, about a quarter of the client's CPU per request, which
                # caps throughput at high concurrency on a small CPU.
                raw = await client.post("/chat/completions", body=self._params(job), cast_to=response_class)
                reply = self._extract(json.loads(raw.content, object_hook=_Fields), job, est)
            except (openai.APITimeoutError, openai.APIConnectionError) as exc:
                last = _short(exc)
            except openai.APIStatusError as exc:
                last = f"HTTP {exc.status_code}: {_short(exc)}"
                if exc.status_code in (401, 403, 404):  # wrong key, no access, unknown model: stop sending
                    state.fatal = (f"{last} (check the key in ${cfg.api_key_env}, llm.model={cfg.model!r} "
                                   f"and llm.base_url)")
                    return _Reply(error=state.fatal)
                if not (exc.status_code in (408, 409, 429) or exc.status_code >= 500):
                    return _Reply(error=last)
                retry_after = _retry_after(exc)
            except (openai.APIResponseValidationError, _Malformed, ValueError) as exc:  # incl. bad JSON
                return _Reply(error=f"malformed reply: {_short(exc)}")
            else:
                used = reply.prompt_tokens + reply.completion_tokens
                usd = self._cost(reply.prompt_tokens, reply.completion_tokens)
                self._release(state, need, used, usd)
                if state.tpm:
                    state.tpm.refund(max(0, need.tokens - used))
                counts.prompt_tokens += reply.prompt_tokens
                counts.completion_tokens += reply.completion_tokens
                counts.cost_usd += usd
                return reply
            finally:
                self._release(state, need, 0, 0.0)  # no-op when already released
            if attempt < cfg.max_retries:
                counts.retries += 1
                await asyncio.sleep(self._backoff(attempt, retry_after))
        return _Reply(error=f"failed after {cfg.max_retries + 1} attempts: {last}")

    def _params(self, job: _Job) -> dict[str, Any]:
        params: dict[str, Any] = {"model": self.cfg.model, "messages": job.request.messages,
                                  "temperature": job.temperature, "max_tokens": job.max_tokens}
        if job.request.stop:
            params["stop"] = job.request.stop
        return params

    def _extract(self, resp: Any, job: _Job, est_prompt: int) -> _Reply:
        """Text and token counts from a completion; raises _Malformed when the structure is wrong."""
        if not isinstance(resp, dict):
            raise _Malformed(f"expected a chat.completion object, got JSON {type(resp).__name__}")
        try:
            choice = resp.choices[0]
            text, finish = choice.message.content, choice.finish_reason
        except (AttributeError, IndexError, TypeError, KeyError):
            raise _Malformed("reply has no choices[0].message") from None
        if not isinstance(text, str):
            raise _Malformed(f"choices[0].message.content is {type(text).__name__}, not text")
        usage = getattr(resp, "usage", None)
        pt = getattr(usage, "prompt_tokens", None)
        ct = getattr(usage, "completion_tokens", None)
        if not isinstance(pt, int) or not isinstance(ct, int):  # no usage reported: count our estimates
            pt, ct = est_prompt, min(job.max_tokens, math.ceil(len(text.encode("utf-8")) / 2) + 1)
        else:  # learn the overhead a chat template adds (SmolLM2's adds a system prompt)
            self._prompt_slack = max(self._prompt_slack, pt - self._base_estimate(job))
        return _Reply(text, pt, ct, finish if isinstance(finish, str) else None)

    # ----------------------------------------------------------------- budget, pacing, back-off
    def _fits(self, state: _EngineState, tokens: float, usd: float) -> bool:
        cfg = self.cfg
        if cfg.budget_tokens is not None:
            spent = sum(self._prior) + self._session.prompt_tokens + self._session.completion_tokens
            if spent + state.spent_tokens + state.reserved_tokens + tokens > cfg.budget_tokens:
                return False
        if cfg.budget_usd is not None:
            spent = self._cost(*self._prior) + self._session.cost_usd
            if spent + state.spent_usd + state.reserved_usd + usd > cfg.budget_usd:
                return False
        return True

    def _budget_message(self, state: _EngineState, tokens: float, usd: float) -> str:
        cfg = self.cfg
        prior = sum(self._prior)
        spent = prior + self._session.prompt_tokens + self._session.completion_tokens + state.spent_tokens
        parts = [f"spent {spent} tokens"
                 + (f" ({prior} in earlier runs of this cache)" if prior else "")
                 + f", ${self._cost(*self._prior) + self._session.cost_usd + state.spent_usd:.4f}"]
        if cfg.budget_tokens is not None:
            parts.append(f"llm.budget_tokens={cfg.budget_tokens}")
        if cfg.budget_usd is not None:
            parts.append(f"llm.budget_usd={cfg.budget_usd}")
        return (f"budget exceeded: {'; '.join(parts)}; the next request may need up to {int(tokens)} tokens "
                f"(${usd:.4f}); raise the budget or lower max_tokens to go on")

    async def _reserve(self, state: _EngineState, need: _Reservation) -> str | None:
        """Reserve one request's worst case; wait for in-flight ones to settle before refusing."""
        if self.cfg.budget_tokens is None and self.cfg.budget_usd is None:
            return None
        while True:  # single-threaded event loop: no await between the check and the reservation
            if self._budget_msg:
                return self._budget_msg
            if self._fits(state, need.tokens, need.usd):
                state.reserved_tokens += need.tokens
                state.reserved_usd += need.usd
                state.held += 1
                need.held = True
                return None
            if state.held == 0:
                self._budget_msg = self._budget_message(state, need.tokens, need.usd)
                return self._budget_msg
            await asyncio.sleep(0.02)  # in-flight requests will settle for less than they reserved

    def _release(self, state: _EngineState, need: _Reservation, used_tokens: int, used_usd: float) -> None:
        """Swap a reservation for what the reply actually used."""
        if not need.held:
            return
        need.held = False
        state.reserved_tokens -= need.tokens
        state.reserved_usd -= need.usd
        state.spent_tokens += used_tokens
        state.spent_usd += used_usd
        state.held -= 1

    async def _wait_turn(self, state: _EngineState, tokens: float) -> None:
        """Respect a server-wide pause (429 Retry-After) and the per-minute limits."""
        delay = self._pause_until - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        if state.rpm:
            await state.rpm.take(1)
        if state.tpm:
            await state.tpm.take(tokens)

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        """Exponential back-off with jitter; a server's Retry-After wins (up to llm.backoff_max_s)."""
        cfg = self.cfg
        if retry_after is not None:
            delay = min(retry_after, cfg.backoff_max_s)
            self._pause_until = max(self._pause_until, time.monotonic() + delay)
            return delay + random.uniform(0, 0.1 * min(delay, cfg.backoff_base_s) + 0.01)
        cap = min(cfg.backoff_max_s, cfg.backoff_base_s * 2 ** attempt)
        return cap / 2 + random.uniform(0, cap / 2)


@dataclass
class _Reservation:
    tokens: float
    usd: float
    held: bool = False


@dataclass
class _EngineState:
    rpm: _Bucket | None
    tpm: _Bucket | None
    reserved_tokens: float = 0.0
    reserved_usd: float = 0.0
    spent_tokens: int = 0
    spent_usd: float = 0.0
    held: int = 0
    fatal: str | None = None  # an error every further request would get too (HTTP 401/403/404)
