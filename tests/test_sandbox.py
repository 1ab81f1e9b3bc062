"""The sandboxed executor: EditEval program construction, pass@k, scoring rules, hostile programs, the CLI.

Hostile programs are real (fork bombs, memory hogs, writes into the repo...) and every one is bounded by
a short timeout; each asserts both that it is scored as not passed and that the host saw no effect.
"""

from __future__ import annotations

import ast
import json
import math
import os
import random
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import pytest

from instructcoder_utils import sandbox as sbx
from instructcoder_utils.sandbox import (
    Sandbox,
    build_program,
    evaluate_samples,
    exec_eval_cli,
    pass_at_k,
    score_results,
)
from instructcoder_utils.tasks import load_editeval

HAS_BWRAP = shutil.which("bwrap") is not None
TIMEOUT = 3.0


@pytest.fixture(scope="module")
def box() -> Sandbox:
    """The real bubblewrap sandbox; isolation tests need it (``make sysdeps`` installs bubblewrap)."""
    if not HAS_BWRAP:
        pytest.skip("bubblewrap (bwrap) not installed: run `make sysdeps`")
    sb = Sandbox(timeout=TIMEOUT)
    if sb.mode != "bubblewrap":
        pytest.skip("bubblewrap is installed but cannot create namespaces on this machine")
    return sb


@pytest.fixture(scope="module")
def plain_box() -> Sandbox:
    """No bubblewrap: rlimits, scrubbed environment and timeouts only."""
    sbx._warned.discard("no-bwrap")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        box = Sandbox(timeout=TIMEOUT, use_bwrap=False)
    assert any("WITHOUT the bubblewrap sandbox" in str(w.message) for w in caught)  # said once, loudly
    return box


def candidate(code: str, test: str = "def check():\n    assert f() is True\n") -> str:
    """A program as EditEval builds it (no context): candidate + test + check()."""
    return build_program({"test": test, "context": ""}, code)


# --------------------------------------------------------------------------- program construction, pass@k
def test_build_program_matches_editeval_construction():
    task = {"test": "def check():\n    assert f() == 1", "context": "import os\n{{Code}}\nX = 2"}
    assert build_program(task, "def f(): return 1") == (
        "import os\ndef f(): return 1\nX = 2\n\ndef check():\n    assert f() == 1\n\ncheck()"
    )
    assert build_program({"test": "T", "context": "no marker"}, "C") == "C\n\nT\n\ncheck()"
    assert build_program({"test": "T"}, "C") == "C\n\nT\n\ncheck()"


def test_pass_at_k_is_the_unbiased_estimator():
    assert pass_at_k(1, 1, 1) == 1.0 and pass_at_k(1, 0, 1) == 0.0
    assert pass_at_k(5, 2, 1) == pytest.approx(0.4)
    for n, c, k in [(10, 3, 5), (20, 1, 10), (7, 0, 3), (10, 9, 2)]:
        exact = 1 - math.comb(n - c, k) / math.comb(n, k)
        assert pass_at_k(n, c, k) == pytest.approx(exact)
    assert pass_at_k(4, 2, 3) == 1.0  # fewer than k failures: every k-subset has a pass
    with pytest.raises(ValueError):
        pass_at_k(3, 4, 1)


def test_score_results_counts_errors_as_not_passed():
    rows = [{"task_id": "a", "passed": True, "status": "passed"},
            {"task_id": "b", "passed": False, "status": "error"},
            {"task_id": "c", "passed": False, "status": "timeout"}]
    score = score_results(rows)
    assert score["pass@1"] == pytest.approx(100 / 3) and "pass@5" not in score
    assert score["errors"] == 1 and score["statuses"]["timeout"] == 1
    assert sbx.format_score(score) == "pass@1=33.33% (1/3)"


# --------------------------------------------------------------------------- scoring rules
def test_pass_fail_and_early_exits(box):
    assert box.run(candidate("def f():\n    return True")).status == "passed"
    failed = box.run(candidate("def f():\n    return False"))
    assert failed.status == "failed" and "AssertionError" in failed.detail
    for early in ("import sys\nsys.exit(0)", "import os\nos._exit(0)", "raise SystemExit"):
        r = box.run(candidate("def f():\n    return True\n" + early))
        assert r.status == "failed", (early, r)
    # exiting inside check() (after the candidate "passed" an assert) also fails
    r = box.run(candidate("def f():\n    return True", "def check():\n    assert f()\n    raise SystemExit(0)\n"))
    assert r.status == "failed" and "sentinel" in r.detail
    # printing things that look like success does not help
    assert box.run(candidate("print('passed')\nimport os\nos._exit(0)")).status == "failed"


def test_numpy_and_cwd_inside_the_sandbox(box):
    code = ("import numpy as np, os\n"
            "def f():\n"
            "    open('scratch.txt', 'w').write('ok')\n"
            "    assert np.arange(3).sum() == 3 and os.getcwd().startswith('/tmp/') and os.environ['HOME'] == '/tmp'\n"
            "    return os.path.isfile('/etc/passwd')  # the root file system is visible, read-only\n")
    r = box.run(candidate(code))
    assert r.status == "passed", r.detail


# --------------------------------------------------------------------------- hostile programs
def test_sleep_and_infinite_loop_time_out(box):
    for code in ("import time\ntime.sleep(60)", "while True:\n    pass"):
        t0 = time.monotonic()
        r = box.run(candidate(code + "\ndef f():\n    return True"))
        assert r.status == "timeout" and not r.passed
        assert time.monotonic() - t0 < TIMEOUT + 5


def _host_processes_with(marker: str) -> list[int]:
    pids = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if marker.encode() in Path(f"/proc/{name}/cmdline").read_bytes():
                    pids.append(int(name))
            except OSError:
                pass
    return pids


def test_fork_bombs_are_contained_and_cleaned_up(box):
    t0 = time.monotonic()
    r = box.run(candidate("import os\nwhile True:\n    os.fork()\ndef f():\n    return True"))
    assert not r.passed and r.status in ("timeout", "failed")
    marker = f"{random.randint(100, 999)}.{secrets.randbelow(10**6):06d}"  # a unique sleep argument
    code = ("import os, time\n"
            "n = 0\n"
            "while n < 5000:\n"
            "    try:\n"
            "        if os.fork() == 0:\n"
            f"            os.execv('/bin/sleep', ['sleep', {marker!r}])\n"
            "        n += 1\n"
            "    except OSError:\n"
            "        time.sleep(0.01)\n"
            "def f():\n    return True\n")
    r = box.run(candidate(code))
    assert not r.passed
    assert time.monotonic() - t0 < 2 * TIMEOUT + 10
    deadline = time.monotonic() + 5
    while _host_processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _host_processes_with(marker) == [], "sandboxed processes survived the sandbox"
    assert box.run(candidate("def f():\n    return True")).passed  # the host can still start sandboxes


def test_memory_hogs_fail(box):
    r = box.run(candidate("x = bytearray(8 << 30)\ndef f():\n    return True"))
    assert r.status == "failed" and "MemoryError" in r.detail, r
    small = Sandbox(timeout=TIMEOUT, memory_mb=256)  # touching 1 GiB page by page is slow on a busy machine
    r = small.run(candidate("chunks = []\nwhile True:\n    chunks.append(b'x' * (16 << 20))\ndef f():\n    return True"))
    assert r.status == "failed" and "MemoryError" in r.detail, r


def test_writes_and_deletes_outside_the_sandbox_leave_the_host_untouched(box, repo_root, tmp_path):
    token = secrets.token_hex(6)
    targets = [repo_root / f".sandbox_escape_{token}", Path.home() / f".sandbox_escape_{token}"]
    victim_dir = repo_root / ".pytest_cache"
    victim_dir.mkdir(exist_ok=True)
    victim = victim_dir / f"sandbox_victim_{token}"
    victim.write_text("keep me")
    secret_file = Path.home() / f".sandbox_secret_{token}"
    secret_file.write_text("host secret")
    try:
        for path in targets:
            r = box.run(candidate(f"def f():\n    open({str(path)!r}, 'w').write('x')\n    return True"))
            assert not r.passed and not path.exists()
        r = box.run(candidate(f"import os\ndef f():\n    os.remove({str(victim)!r})\n    return True"))
        assert not r.passed and victim.read_text() == "keep me"
        r = box.run(candidate(f"import shutil\ndef f():\n    shutil.rmtree({str(repo_root / 'tests')!r})\n    return True"))
        assert not r.passed and (repo_root / "tests" / "conftest.py").is_file()
        r = box.run(candidate(f"def f():\n    return open({str(secret_file)!r}).read() == 'host secret'"))
        assert not r.passed  # the home directory (credentials, caches) is hidden
    finally:
        for path in [*targets, victim, secret_file]:
            path.unlink(missing_ok=True)


def test_environment_secrets_are_not_visible(box, monkeypatch):
    secret = "sk-fake-" + secrets.token_hex(8)
    monkeypatch.setenv("INSTRUCTCODER_FAKE_API_KEY", secret)
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    probe = ("import os, glob\n"
             "def leaked():\n"
             f"    hits = [k for k, v in os.environ.items() if {secret!r} in v]\n"
             "    for p in glob.glob('/proc/*/environ'):\n"
             "        try:\n"
             f"            hits += [p] if {secret!r}.encode() in open(p, 'rb').read() else []\n"
             "        except OSError:\n"
             "            pass\n"
             "    return hits\n")
    r = box.run(candidate(probe + "def f():\n    return bool(leaked())"))
    assert not r.passed  # a program that wants the secret does not get it
    r = box.run(candidate(probe + "def f():\n    print(sorted(os.environ))\n    return not leaked()"))
    assert r.passed, r.detail  # ...and the program did run and looked
    seen = set(ast.literal_eval(r.stdout.splitlines()[0]))
    assert seen <= set(sbx.SAFE_ENV) | {"PWD", "LC_CTYPE"}, seen


def test_network_is_unreachable(box):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(5)
    server.settimeout(0.2)
    port = server.getsockname()[1]
    accepted = []

    def accept_loop(stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                accepted.append(conn)
            except OSError:
                pass

    stop = threading.Event()
    thread = threading.Thread(target=accept_loop, args=(stop,), daemon=True)
    thread.start()
    try:
        code = ("import socket\n"
                "def f():\n"
                f"    s = socket.create_connection(('127.0.0.1', {port}), timeout=1)\n"
                "    s.sendall(b'exfiltrate')\n"
                "    return True\n")
        assert not box.run(candidate(code)).passed
        code2 = "import socket\ndef f():\n    socket.create_connection(('1.1.1.1', 53), timeout=1)\n    return True\n"
        assert not box.run(candidate(code2)).passed
        time.sleep(0.3)
        assert accepted == []
    finally:
        stop.set()
        thread.join()
        server.close()


def test_killing_the_parent_or_host_processes_fails_harmlessly(box):
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        code = ("import os, signal\n"
                "def f():\n"
                "    os.kill(os.getppid(), signal.SIGKILL)\n"
                f"    os.kill({sleeper.pid}, signal.SIGKILL)\n"
                "    return True\n")
        r = box.run(candidate(code))
        assert not r.passed and r.status != "error"
        assert sleeper.poll() is None, "a host process was killed from inside the sandbox"
        assert box.run(candidate("def f():\n    return True")).passed
    finally:
        sleeper.kill()
        sleeper.wait()


def test_output_floods_are_capped(box):
    for stream in ("stdout", "stderr"):
        t0 = time.monotonic()
        r = box.run(candidate(f"import sys\nfor _ in range(2000):\n    sys.{stream}.write('x' * 1_000_000)\n"
                              "def f():\n    return True"))
        assert not r.passed
        assert len(r.stdout) <= 1 << 20 and len(r.stderr) <= 1 << 20 and len(r.detail) < 4000
        assert time.monotonic() - t0 < TIMEOUT + 5


# --------------------------------------------------------------------------- harness errors
def test_an_interpreter_under_tmp_runs_inside_bubblewrap_and_the_rest_of_tmp_stays_hidden(tmp_path):
    """A checkout cloned under /tmp has its venv there, and the sandbox's /tmp is a private tmpfs: the
    interpreter's folders are bound back into it, read-only, and nothing else of the host's /tmp is."""
    if not HAS_BWRAP:
        pytest.skip("bubblewrap (bwrap) not installed: run `make sysdeps`")
    assert str(tmp_path).startswith("/tmp/")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "venv")], check=True, timeout=120)
    (tmp_path / "secret.txt").write_text("host only\n")
    try:
        sb = Sandbox(timeout=TIMEOUT, python=str(tmp_path / "venv" / "bin" / "python"), use_bwrap=True)
    except RuntimeError as exc:
        if "namespace" in str(exc):
            pytest.skip(f"bubblewrap cannot create namespaces here: {exc}")
        raise
    program = (f"import os, sys\nassert sys.executable == {str(tmp_path / 'venv' / 'bin' / 'python')!r}\n"
               f"assert not os.path.exists({str(tmp_path / 'secret.txt')!r})\n"
               f"def check():\n    pass\ncheck()")
    r = sb.run(program)
    assert sb.mode == "bubblewrap" and r.passed, r.detail


def test_sandbox_that_cannot_start_is_a_harness_error_not_a_failure(tmp_path):
    """A sandbox whose interpreter cannot start (as when bwrap cannot create a namespace) is retried,
    then reported as ``error``; it counts as not passed but is told apart from the candidate failing."""
    broken = Sandbox(timeout=TIMEOUT, retries=2, probe=False)
    broken.python = str(tmp_path / "missing-python")
    r = broken.run(candidate("def f():\n    return True"))
    assert r.status == "error" and r.attempts == 3 and not r.passed
    task = {"task_id": "T/0", "test": "def check():\n    pass\n", "context": ""}
    rows = evaluate_samples([task], [{"task_id": "T/0", "output": ""}], sandbox=broken, progress=False)
    assert rows[0]["status"] == "error" and rows[0]["passed"] is False
    assert score_results(rows)["errors"] == 1


# --------------------------------------------------------------------------- without bubblewrap
def test_without_bubblewrap_rlimits_and_scoring_still_apply(plain_box, monkeypatch):
    assert plain_box.mode == "rlimits-only"
    secret = "sk-fake-" + secrets.token_hex(8)
    monkeypatch.setenv("INSTRUCTCODER_FAKE_API_KEY", secret)
    assert plain_box.run(candidate("def f():\n    return True")).passed
    assert plain_box.run(candidate("def f():\n    return False")).status == "failed"
    assert plain_box.run(candidate("import os\nos._exit(0)\ndef f():\n    return True")).status == "failed"
    assert plain_box.run(candidate("import time\ntime.sleep(60)\ndef f():\n    return True")).status == "timeout"
    r = plain_box.run(candidate("x = bytearray(8 << 30)\ndef f():\n    return True"))
    assert r.status == "failed" and "MemoryError" in r.detail
    leak = f"import os\ndef f():\n    return any({secret!r} in v for v in os.environ.values())"
    assert not plain_box.run(candidate(leak)).passed


# --------------------------------------------------------------------------- EditEval through the API
EDITEVAL_SUBSET = [0, 5, 19, 33, 47, 60, 88, 101, 120, 142, 170, 185, 186, 188, 193]


def test_editeval_references_pass_and_inputs_fail(box, editeval_path):
    """A subset (numpy tasks, a ``{{Code}}`` task, the timing-sensitive EditEval/156, /188's urllib);
    all 194 run in benchmarks/bench_exec_eval.py."""
    tasks = load_editeval(editeval_path)
    picked = [t for t in tasks if int(t["task_id"].split("/")[1]) in EDITEVAL_SUBSET]
    assert any("{{Code}}" in t["context"] for t in picked)
    samples = [{"task_id": t["task_id"], "output": t[key], "kind": key} for key in ("output", "input") for t in picked]
    rows = evaluate_samples(tasks, samples, timeout=10.0, workers=2, sandbox=box, progress=False)
    assert [r["task_id"] for r in rows] == [s["task_id"] for s in samples]
    bad = [(r["task_id"], r["kind"], r["status"], r["detail"][-300:]) for r in rows
           if r["passed"] != (r["kind"] == "output")]
    assert bad == []
    assert all(r["status"] in sbx.STATUSES and "output" not in r for r in rows)


class _Scripted:
    """Fault injection: a sandbox whose runs give the scripted statuses in turn (the real one is tested above)."""

    def __init__(self, statuses: list[str]) -> None:
        self.statuses, self.calls = list(statuses), 0

    def run(self, program: str, timeout: float | None = None) -> sbx.RunResult:
        self.calls += 1
        return sbx.RunResult(status=self.statuses.pop(0), detail="", returncode=0, seconds=0.01)


def test_a_test_that_reads_a_clock_is_judged_by_most_of_its_runs():
    """A candidate as slow as the reference passes a timing test by chance on a loaded machine (the tuned
    model's unchanged copy of EditEval/159's input passed in one scoring of a run and failed in the next), so
    a test that reads a clock runs until most of ``TIMING_RUNS`` runs agree; other tests run once."""
    clock = {"task_id": "T/clock", "context": "", "test": "def check():\n    import time\n    t = time.time()\n"}
    plain = {"task_id": "T/plain", "context": "", "test": "def check():\n    pass\n"}
    assert (sbx.runs_needed(clock), sbx.runs_needed(plain)) == (sbx.TIMING_RUNS, 1) and sbx.TIMING_RUNS == 5

    def score(task: dict, statuses: list[str]) -> tuple[bool, str, int, int, str]:
        box = _Scripted(statuses)
        row = evaluate_samples([task], [{"task_id": task["task_id"], "output": ""}], sandbox=box, progress=False)[0]
        return row["passed"], row["status"], row["runs"], box.calls, row["detail"]

    assert score(clock, ["passed", "failed", "failed", "failed", "passed"])[:4] == (False, "failed", 4, 4)
    assert score(clock, ["failed", "passed", "timeout", "passed", "passed"])[:4] == (True, "passed", 5, 5)
    passed = score(clock, ["passed"] * 5)
    assert passed[:4] == (True, "passed", 3, 3) and "3 of 3 runs passed" in passed[4]
    assert score(plain, ["passed", "failed"])[:4] == (True, "passed", 1, 1)
    assert score(plain, ["failed", "passed"])[:4] == (False, "failed", 1, 1)


def test_editeval_timing_tasks_are_the_ones_that_read_a_clock(box, editeval_path):
    """EditEval's eight "make it faster" tasks are flagged, no other; in the real sandbox a candidate far
    faster than its reference passes the first three runs, the majority."""
    tasks = load_editeval(editeval_path)
    timed = [t for t in tasks if sbx.runs_needed(t) > 1]
    assert [t["task_id"] for t in timed] == [f"EditEval/{i}" for i in (31, 103, 131, 141, 156, 159, 161, 167)]
    slow = "def check():\n    import time\n    t0 = time.perf_counter(); time.sleep(0.2); slow = time.perf_counter() - t0\n" \
           "    t0 = time.perf_counter(); f(); assert time.perf_counter() - t0 < slow * 0.95\n"
    task = {"task_id": "T/fast", "context": "", "test": slow}
    row = evaluate_samples([task], [{"task_id": "T/fast", "output": "def f():\n    return 1\n"}], sandbox=box,
                           progress=False)[0]
    assert (row["passed"], row["runs"]) == (True, 3)


def test_evaluate_samples_rejects_unknown_tasks():
    with pytest.raises(ValueError, match="not in the tasks"):
        evaluate_samples([{"task_id": "a", "test": "def check(): pass"}], [{"task_id": "b", "output": ""}])


# --------------------------------------------------------------------------- the CLI
def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_exec_eval_cli_prints_pass_at_k_last(tmp_path, box, capsys):
    tasks = [{"task_id": f"T/{i}", "test": f"def check():\n    assert f() == {i}\n", "context": ""} for i in range(2)]
    samples = [{"task_id": f"T/{i}", "output": f"def f():\n    return {i if j < 1 + i else -1}"}
               for i in range(2) for j in range(5)]
    out = tmp_path / "r.jsonl"
    rc = exec_eval_cli(_write_jsonl(tmp_path / "t.jsonl", tasks), _write_jsonl(tmp_path / "s.jsonl", samples), out,
                       timeout=TIMEOUT)
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert rc == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["passed"] for r in rows] == [True] + [False] * 4 + [True] * 2 + [False] * 3
    # per task (n=5): c=1 and c=2 -> pass@1 = (0.2 + 0.4) / 2 = 30%, pass@5 = 100%
    assert last == "pass@1=30.00% pass@5=100.00% (3/10 samples, 2 tasks)"


def test_exec_eval_command_line_and_bad_inputs(tmp_path, repo_root):
    exe = Path(sys.executable).with_name("instructcoder")
    tasks = _write_jsonl(tmp_path / "t.jsonl", [{"task_id": "A", "test": "def check():\n    assert f()\n"}])
    samples = _write_jsonl(tmp_path / "s.jsonl", [{"task_id": "A", "output": "def f():\n    return 1"}])
    ok = subprocess.run([str(exe), "exec-eval", "--tasks", str(tasks), "--samples", str(samples),
                         "--out", str(tmp_path / "r.jsonl"), "--timeout", "5"], capture_output=True, text=True,
                        cwd=repo_root, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip().splitlines()[-1] == "pass@1=100.00% (1/1)"
    bad_json = tmp_path / "bad.jsonl"
    bad_json.write_text('{"task_id": "A", "output": "x"}\nnot json\n')
    unknown = _write_jsonl(tmp_path / "u.jsonl", [{"task_id": "Z", "output": ""}])
    for args, message in [((tmp_path / "missing.jsonl", samples), "file not found"),
                          ((tasks, bad_json), "not valid JSON"),
                          ((tasks, unknown), "not in the tasks")]:
        r = subprocess.run([str(exe), "exec-eval", "--tasks", str(args[0]), "--samples", str(args[1]),
                            "--out", str(tmp_path / "x.jsonl")], capture_output=True, text=True, timeout=120)
        assert r.returncode == 2 and message in r.stderr, (args, r.stderr)
