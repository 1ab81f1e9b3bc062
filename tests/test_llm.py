"""The LLM client against real servers: a scripted loopback server (faults on demand) and
``transformers serve`` with the built-in model."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from servers import drop, error, malformed, reply

from instructcoder_utils.config import LLMConfig
from instructcoder_utils.llm import ChatRequest, LLMClient, LLMError

REPO = Path(__file__).resolve().parent.parent


def _reqs(names: list[str], **kw) -> list[ChatRequest]:
    return [ChatRequest(id=n, messages=[{"role": "user", "content": n}], prompt_version="v1", **kw)
            for n in names]


def _cache_rows(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT COUNT(*) FROM replies").fetchone()[0]


# --------------------------------------------------------------------------- the real server
@pytest.mark.slow
def test_transformers_serve_end_to_end(transformers_server, tmp_path):
    cfg = LLMConfig(provider="openai", base_url=transformers_server, model=transformers_server.model,
                    api_key_env="NO_SUCH_KEY_FOR_LOCAL_SERVER", concurrency=2, max_tokens=12, temperature=0.0)
    prompts = ["Say hello.", "Name a colour.", "What is 2 + 2?"]
    reqs = [ChatRequest(id=f"q{i}", messages=[{"role": "user", "content": p}], prompt_version="t1")
            for i, p in enumerate(prompts)]
    client = LLMClient(cfg, cache_path=tmp_path / "cache.sqlite")
    results = client.run(reqs, desc="transformers serve")
    assert [r.id for r in results] == ["q0", "q1", "q2"]
    for r in results:
        assert r.ok, r.error
        assert r.text and r.text.strip()
        assert r.prompt_tokens > 0 and 0 < r.completion_tokens <= 12
    assert client.usage["requests"] == 3 and client.usage["completion_tokens"] <= 36

    again = LLMClient(cfg, cache_path=tmp_path / "cache.sqlite")
    warm = again.run(reqs, desc="warm")
    assert again.usage["requests"] == 0 and all(r.cached for r in warm)
    assert [r.text for r in warm] == [r.text for r in results]


# --------------------------------------------------------------------------- faults
def test_every_item_ends_once_under_faults(scripted_server, tmp_path):
    s = scripted_server
    s.latency = 0.01
    s.on("rate-", error(429, retry_after=0.2), times=3)
    s.on("flaky-", error(500), times=4)
    s.on("drop-", drop(), times=2)
    s.on("broken-", malformed())
    s.on("nochoices-", malformed('{"object": "chat.completion", "choices": []}'))
    s.on("refused-", error(400))
    s.on("down-", error(503))
    names = [f"{kind}{i}" for kind in ("ok-", "rate-", "flaky-", "drop-", "broken-", "nochoices-",
                                       "refused-", "down-") for i in range(4)]
    client = LLMClient(s.llm_config(concurrency=8, max_retries=2), cache_path=tmp_path / "c.sqlite")
    results = client.run(_reqs(names), desc="faults")

    assert [r.id for r in results] == names  # one result per item, in order
    by_id = {r.id: r for r in results}
    for name in names:
        r = by_id[name]
        assert r.ok == name.startswith(("ok-", "rate-", "flaky-", "drop-")), (name, r.error)
        if r.ok:
            assert r.text == f"echo: {name}" and r.error is None
        else:
            assert r.text is None and r.error
    assert by_id["broken-0"].error.startswith("malformed reply")
    assert by_id["nochoices-0"].error.startswith("malformed reply")
    assert by_id["refused-0"].error.startswith("HTTP 400")
    assert by_id["down-0"].error.startswith("failed after 3 attempts")
    per_item = {n: len([e for e in s.log if e["last_user"] == n]) for n in names}
    assert all(1 <= c <= 3 for c in per_item.values())  # bounded retries
    assert per_item["refused-0"] == 1 and per_item["broken-0"] == 1  # not retried
    assert per_item["down-0"] == 3
    u = client.usage
    assert u["ok"] == 16 and u["failures"] == 16 and u["requests"] == len(s.log)
    assert u["retries"] == 3 + 4 + 2 + 4 * 2  # 429s, 500s, drops, and 503s (2 retries each)
    assert _cache_rows(tmp_path / "c.sqlite") == 16  # only successes are cached: a re-run retries the rest


def test_wrong_key_stops_sending(scripted_server, tmp_path):
    scripted_server.on(None, error(401))
    client = LLMClient(scripted_server.llm_config(concurrency=2), cache_path=tmp_path / "c.sqlite")
    results = client.run(_reqs([f"k{i}" for i in range(20)]), desc="401")
    assert not any(r.ok for r in results) and all("HTTP 401" in r.error for r in results)
    assert "SCRIPTED_SERVER_TEST_KEY" in results[0].error  # says which variable to check
    assert len(scripted_server.log) <= 2  # what was in flight, then nothing more


def test_retry_after_is_honoured(scripted_server, tmp_path):
    s = scripted_server
    s.on("slow-down", error(429, retry_after=1), times=1)
    client = LLMClient(s.llm_config(backoff_base_s=0.01), cache_path=tmp_path / "c.sqlite")
    [r] = client.run(_reqs(["slow-down"]), desc="429")
    assert r.ok and r.text == "echo: slow-down"
    first, second = s.requests("slow-down")
    assert first["status"] == 429 and second["kind"] == "reply"
    assert second["t"] - first["t"] >= 1.0  # the back-off alone would wait about 0.01 s
    assert client.usage["retries"] == 1


def test_timeouts_are_retried(scripted_server, tmp_path):
    s = scripted_server
    s.on("sleepy", reply("late", delay=2.0), times=1)
    client = LLMClient(s.llm_config(timeout_s=0.3), cache_path=tmp_path / "c.sqlite")
    [r] = client.run(_reqs(["sleepy"]), desc="timeout")
    assert r.ok and r.text == "echo: sleepy"  # the second attempt got the normal reply
    assert len(s.requests("sleepy")) == 2 and client.usage["retries"] == 1


def test_usage_hides_credentials_in_base_url():
    from instructcoder_utils.llm import public_url

    assert public_url("https://user:pw@host.example:8443/v1?key=abc") == "https://host.example:8443/v1"
    assert public_url("http://[::1]:8000/v1") == "http://[::1]:8000/v1"


def test_parse_errors_are_recorded_failures(scripted_server, tmp_path):
    s = scripted_server
    s.replies({"good": '{"answer": 1}', "bad": "not json", "wrong": '{"other": 2}'})
    client = LLMClient(s.llm_config(), cache_path=tmp_path / "c.sqlite")
    results = client.run(_reqs(["good", "bad", "wrong"]), desc="parse",
                         parse=lambda text: json.loads(text)["answer"])
    good, bad, wrong = results
    assert good.ok and good.parsed == 1
    assert not bad.ok and bad.error.startswith("parse error") and bad.text == "not json"
    assert not wrong.ok and "KeyError" in wrong.error
    assert client.usage["failures"] == 2


def test_duplicate_ids_rejected_and_identical_requests_sent_once(scripted_server, tmp_path):
    client = LLMClient(scripted_server.llm_config(), cache_path=tmp_path / "c.sqlite")
    with pytest.raises(ValueError, match="unique"):
        client.run(_reqs(["a", "a"]))
    same = [ChatRequest(id=f"x{i}", messages=[{"role": "user", "content": "same"}], prompt_version="v1")
            for i in range(3)]
    other = ChatRequest(id="x3", messages=[{"role": "user", "content": "same"}], prompt_version="v1", sample=1)
    results = client.run([*same, other])
    assert all(r.ok and r.text == "echo: same" for r in results)
    assert len(scripted_server.log) == 2  # three identical requests share one reply; sample=1 is separate


# --------------------------------------------------------------------------- budget
@pytest.mark.parametrize("budget", [{"budget_tokens": 500}, {"budget_usd": 0.5}])
def test_budget_stops_before_it_is_exceeded(scripted_server, tmp_path, capsys, budget):
    s = scripted_server
    s.latency = 0.02
    s.on(None, lambda body: reply("done", usage=(10, 30)))
    cfg = s.llm_config(concurrency=4, max_tokens=50, prices={"prompt_per_1k": 1.0, "completion_per_1k": 1.0},
                       **budget)
    client = LLMClient(cfg, cache_path=tmp_path / "c.sqlite")
    results = client.run(_reqs([f"item{i:02d}" for i in range(30)]), desc="budget")

    ok = [r for r in results if r.ok]
    failed = [r for r in results if not r.ok]
    spent = sum(r.prompt_tokens + r.completion_tokens for r in ok)
    limit = budget.get("budget_tokens", budget.get("budget_usd", 0) * 1000)  # $1 per 1k tokens
    assert len(ok) + len(failed) == 30 and failed
    assert spent <= limit  # never exceeded ...
    assert spent > limit - 2 * 70  # ... and not stopped far too early (a request reserves < 70 tokens)
    assert all(r.error.startswith("budget exceeded:") for r in failed)
    assert len(s.log) == len(ok)  # nothing was sent for the items the budget could not cover
    assert client.usage["budget_stopped"].startswith("budget exceeded")
    assert "budget exceeded" in capsys.readouterr().err
    assert client.usage["prompt_tokens"] + client.usage["completion_tokens"] == spent


def test_budget_counts_earlier_runs_of_the_same_cache(scripted_server, tmp_path):
    s = scripted_server
    s.on(None, lambda body: reply("done", usage=(10, 30)))
    first = LLMClient(s.llm_config(max_tokens=50), cache_path=tmp_path / "c.sqlite")
    assert all(r.ok for r in first.run(_reqs([f"a{i}" for i in range(5)])))  # 200 tokens spent
    resumed = LLMClient(s.llm_config(max_tokens=50, budget_tokens=300), cache_path=tmp_path / "c.sqlite")
    results = resumed.run(_reqs([f"a{i}" for i in range(5)] + [f"b{i}" for i in range(5)]))
    assert all(r.ok and r.cached for r in results[:5])
    assert 1 <= sum(r.ok for r in results[5:]) <= 2  # 100 tokens left: at most 2 more of 40 each
    assert resumed.usage["earlier_runs"]["prompt_tokens"] == 50


# --------------------------------------------------------------------------- cache, secrets, config
def test_warm_cache_sends_zero_requests(scripted_server, tmp_path):
    s = scripted_server
    names = [f"w{i}" for i in range(12)]
    cold = LLMClient(s.llm_config(), cache_path=tmp_path / "c.sqlite")
    first = cold.run(_reqs(names), desc="cold")
    assert len(s.log) == 12 and cold.usage["cache_hits"] == 0
    cold.close()

    warm = LLMClient(s.llm_config(), cache_path=tmp_path / "c.sqlite")
    second = warm.run(_reqs(names), desc="warm")
    assert len(s.log) == 12  # the server saw nothing new
    assert warm.usage["requests"] == 0 and warm.usage["cache_hits"] == 12
    assert [r.text for r in second] == [r.text for r in first] and all(r.cached for r in second)
    table = warm.usage_table()
    assert table.loc["warm", "requests"] == 0 and table.loc["total", "cache_hits"] == 12

    warm.run(_reqs(names[:3], temperature=0.1), desc="new sampling")  # sampling params are in the key
    warm.run([ChatRequest(id="w0", messages=[{"role": "user", "content": "w0"}], prompt_version="v2")])
    assert len(s.log) == 16


def test_secrets_never_written(scripted_server, tmp_path, monkeypatch, capfd):
    secret = "sk-test-SECRET-value-1234567890"
    monkeypatch.setenv("MY_LLM_KEY", secret)
    s = scripted_server
    s.on("fail", error(500))
    cfg = s.llm_config(api_key_env="MY_LLM_KEY", max_retries=1)
    client = LLMClient(cfg, cache_path=tmp_path / "c.sqlite")
    client.run(_reqs(["hello", "fail"]), desc="secret")
    client.write_usage(tmp_path / "usage.json")
    client.close()
    assert all(e["authorization"] == f"Bearer {secret}" for e in s.log)  # the key was really used
    written = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
    assert written and secret.encode() not in written
    out = capfd.readouterr()
    assert secret not in out.out + out.err
    assert secret not in repr(client) and secret not in json.dumps(client.usage)
    assert secret not in client.usage_table().to_string()


def test_configuration_errors(monkeypatch, tmp_path):
    monkeypatch.delenv("ABSENT_KEY_VAR", raising=False)
    with pytest.raises(LLMError, match="provider"):
        LLMClient(LLMConfig(provider="none"))
    with pytest.raises(LLMError, match="ABSENT_KEY_VAR"):
        LLMClient(LLMConfig(provider="openai", base_url="https://api.example.invalid/v1", api_key_env="ABSENT_KEY_VAR"))
    with pytest.raises(LLMError, match="ABSENT_KEY_VAR"):
        LLMClient(LLMConfig(provider="openai", api_key_env="ABSENT_KEY_VAR"))  # the OpenAI API itself
    pasted = "sk-proj-abcdefABCDEF0123456789"
    with pytest.raises(LLMError, match="NAME of an environment variable") as exc:
        LLMClient(LLMConfig(provider="openai", api_key_env=pasted))
    assert pasted not in str(exc.value)
    # a loopback server needs no key
    LLMClient(LLMConfig(provider="openai", base_url="http://127.0.0.1:9/v1", api_key_env="ABSENT_KEY_VAR"),
              cache_path=tmp_path / "c.sqlite").close()


def test_run_inside_a_running_event_loop(scripted_server, tmp_path):
    """Jupyter runs cells inside an event loop; run() must still work there."""
    client = LLMClient(scripted_server.llm_config(), cache_path=tmp_path / "c.sqlite")

    async def cell():
        return client.run(_reqs(["in", "a", "loop"]), desc="jupyter")

    results = asyncio.run(cell())
    assert [r.text for r in results] == ["echo: in", "echo: a", "echo: loop"]


def test_requests_per_minute_limit(scripted_server, tmp_path):
    client = LLMClient(scripted_server.llm_config(requests_per_minute=300, concurrency=8),
                       cache_path=tmp_path / "c.sqlite")  # 5 a second, a burst of 5
    assert all(r.ok for r in client.run(_reqs([f"r{i}" for i in range(10)])))
    times = sorted(e["t"] for e in scripted_server.log)
    assert times[-1] - times[0] >= 0.9  # the 5 after the burst wait about 1 s


# --------------------------------------------------------------------------- crash safety
GEN_SCRIPT = textwrap.dedent("""
    import sys
    from pathlib import Path
    from instructcoder_utils.config import LLMConfig
    from instructcoder_utils.files import write_jsonl
    from instructcoder_utils.llm import ChatRequest, LLMClient

    base_url, out, n = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    cfg = LLMConfig(provider="openai", base_url=base_url, model="scripted", concurrency=4,
                    backoff_base_s=0.01, max_tokens=32)
    client = LLMClient(cfg, cache_path=out / "llm_cache.sqlite")
    reqs = [ChatRequest(id=f"item-{i}", messages=[{"role": "user", "content": f"item-{i}"}], prompt_version="v1")
            for i in range(n)]
    results = client.run(reqs, desc="generate")
    write_jsonl(out / "out.jsonl", ({"id": r.id, "text": r.text, "ok": r.ok} for r in results))
    client.write_usage(out / "usage.json")
""")


@pytest.mark.slow
def test_kill_9_mid_run_then_resume(scripted_server, tmp_path):
    s = scripted_server
    s.latency = 0.05
    n = 80
    script = tmp_path / "gen.py"
    script.write_text(GEN_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, str(script), s.base_url, str(tmp_path), str(n)]

    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while len(s.log) < 30 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    assert not (tmp_path / "out.jsonl").exists()
    done = _cache_rows(tmp_path / "llm_cache.sqlite")
    sent_before = len(s.log)
    assert 20 <= done < n
    assert sent_before - done <= 4  # lost at most what was in flight (concurrency 4)

    rerun = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [f"item-{i}" for i in range(n)]  # every item exactly once
    assert all(r["ok"] and r["text"] == f"echo: {r['id']}" for r in rows)
    assert len(s.log) - sent_before == n - done  # the re-run sent only what was missing
    usage = json.loads((tmp_path / "usage.json").read_text())
    assert usage["cache_hits"] == done and usage["requests"] == n - done
    assert _cache_rows(tmp_path / "llm_cache.sqlite") == n
