"""Execution-based scoring of code edits: build EditEval programs and run them in a sandbox.

Model output is untrusted code, so every program runs in its own process inside bubblewrap (read-only
root, private ``/tmp``, no network, own PID namespace, the host's home hidden) with rlimits (CPU, address
space, processes, file size), a scrubbed environment, a wall-clock timeout that kills the whole sandbox,
and output capped by the file-size limit. Without bubblewrap it still runs (rlimits only) and says so once.

A program passes only if ``check()`` *returned*: a random per-run nonce is written after ``check()`` and
must appear in stdout, so ``sys.exit(0)`` / ``os._exit(0)`` before the end does not count. A sandbox that
fails to start is a harness ``error`` (retried with back-off, reported), never the candidate failing.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import resource
import secrets
import shutil
import signal
import site
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .files import read_jsonl, write_jsonl
from .progress import bar as progress_bar

DEFAULT_TIMEOUT = 10.0
STATUSES = ("passed", "failed", "timeout", "error")
PASS_AT_KS = (1, 5, 10)
# A test that times the candidate against a slow reference (EditEval's "optimize" tasks) runs up to this
# many times and its verdict is the majority's: one run of a candidate about as fast as the reference (the
# input copied unchanged, say) passes or fails by the machine's load; most of five runs rarely do both ways.
TIMING_RUNS = 5
_TIMING_TEST = re.compile(r"\btime\.(?:time|perf_counter|monotonic|process_time)\b|\btimeit\b|\bperf_counter\b")

# The only variables a candidate sees: no API keys, tokens or proxies from the parent.
SAFE_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "HOME": "/tmp",
    "TMPDIR": "/tmp",
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}

# Runs inside the sandbox as ``python -I -S -c RUNNER token uid sitepath script``. It writes a start token
# (so a harness failure is told apart from a candidate failure), drops root to a throw-away uid (so the
# process limit applies: the kernel exempts uid 0 from it), and runs the script as ``__main__``.
# ``-S`` skips .pth processing (an editable-install finder costs ~90 ms per program); the venv's
# site-packages are added explicitly, exit()/quit()/help() restored as ``site`` would, and ``urllib.parse``
# pre-imported as a normal start-up in this venv does (EditEval/188's reference uses it after ``import urllib``).
RUNNER = (
    "import os, sys\n"
    "a = sys.argv\n"
    "os.write(1, a[1].encode() + b'\\n')\n"
    "u = int(a[2])\n"
    "if u >= 0:\n"
    "    os.setgroups([]); os.setgid(u); os.setuid(u)\n"
    "s = a[4]\n"
    "sys.path[:0] = [os.path.dirname(os.path.abspath(s))]\n"
    "sys.path.extend(p for p in a[3].split(os.pathsep) if p)\n"
    "sys.argv = [s]\n"
    "del a, u\n"
    "import site, urllib.parse\n"
    "site.setquit(); site.sethelper(); site.setcopyright()\n"
    "import runpy\n"
    "runpy.run_path(s, run_name='__main__')\n"
)

_SIGNAL_DETAIL = {
    signal.SIGXCPU: "CPU time limit exceeded",
    signal.SIGXFSZ: "output or file size limit exceeded",
    signal.SIGKILL: "killed (SIGKILL; memory or process limit, or killed by itself)",
    signal.SIGSEGV: "segmentation fault",
}
# The runner's own frames (its ``-c`` source and runpy) are dropped from tracebacks shown as ``detail``.
_RUNNER_FRAME = re.compile(r'^  File "(?:<string>|<frozen runpy>)", line \d+, in \S+\n', re.MULTILINE)
_warned: set[str] = set()
_warn_lock = threading.Lock()


def _warn_once(key: str, message: str) -> None:
    """Degraded isolation must be visible, but once per process, not once per program."""
    with _warn_lock:
        if key in _warned:
            return
        _warned.add(key)
    warnings.warn(message, RuntimeWarning, stacklevel=3)
    print(f"warning: {message}", file=sys.stderr)


# --------------------------------------------------------------------------- programs and scores
def build_program(task: dict[str, Any], code: str) -> str:
    """The program EditEval's harness runs for a candidate: context with ``{{Code}}`` replaced, the test,
    and a call to ``check()`` (exactly the authors' construction; the sandbox adds its sentinel)."""
    context = task.get("context") or ""
    program = context.replace("{{Code}}", code) if "{{Code}}" in context else code
    return program + "\n\n" + task["test"] + "\n\n" + "check()"


def runs_needed(task: dict[str, Any]) -> int:
    """How many runs a candidate's verdict is the majority of: ``TIMING_RUNS`` for a test that reads a clock."""
    return TIMING_RUNS if _TIMING_TEST.search(task.get("test") or "") else 1


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of Chen et al. (2021): 1 - C(n-c, k) / C(n, k), computed stably."""
    if not 0 <= c <= n or k < 1:
        raise ValueError(f"pass_at_k needs 0 <= c <= n and k >= 1, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def score_results(results: Sequence[dict[str, Any]], ks: Sequence[int] = PASS_AT_KS) -> dict[str, Any]:
    """pass@k (in %) averaged over tasks, for every k <= the smallest sample count, plus status counts.
    Harness errors count as not passed, and are reported so they are never mistaken for model failures."""
    per_task: dict[str, list[bool]] = defaultdict(list)
    for r in results:
        per_task[r["task_id"]].append(bool(r["passed"]))
    statuses = Counter(r["status"] for r in results)
    n_min = min((len(v) for v in per_task.values()), default=0)
    scores = {
        f"pass@{k}": 100.0 * sum(pass_at_k(len(v), sum(v), k) for v in per_task.values()) / len(per_task)
        for k in ks
        if per_task and k <= n_min
    }
    return {
        **scores,
        "tasks": len(per_task),
        "samples": len(results),
        "passed": sum(r["passed"] for r in results),
        "statuses": {s: statuses.get(s, 0) for s in STATUSES},
        "errors": statuses.get("error", 0),
    }


def format_score(score: dict[str, Any]) -> str:
    """The one-line summary ``pass@1=12.37% (24/194)`` (pass@k for more samples per task)."""
    ks = " ".join(f"{k}={v:.2f}%" for k, v in score.items() if k.startswith("pass@"))
    if not ks:
        return "pass@1=n/a (0 samples)"
    tail = f"({score['passed']}/{score['samples']}"
    tail += ")" if score["samples"] == score["tasks"] else f" samples, {score['tasks']} tasks)"
    return f"{ks} {tail}"


# --------------------------------------------------------------------------- the sandbox
@dataclass
class RunResult:
    """What one execution gave: ``status`` is passed | failed | timeout | error (harness)."""

    status: str
    detail: str
    returncode: int | None
    seconds: float
    attempts: int = 1
    stdout: str = ""
    stderr: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def _user_task_count(uid: int) -> int:
    """Tasks (threads included) the kernel counts against RLIMIT_NPROC for ``uid`` right now."""
    n = 0
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            if os.stat(f"/proc/{name}").st_uid == uid:
                n += len(os.listdir(f"/proc/{name}/task"))
        except OSError:
            continue
    return n


def _interpreter_paths(python: str) -> tuple[list[str], list[str]]:
    """(directories the interpreter needs, its site-packages) for ``python``."""
    # not by realpath: every venv's python links to the same base interpreter, yet its prefix is its own
    if os.path.abspath(python) == os.path.abspath(sys.executable):
        info = {
            "dirs": [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix],
            "site": site.getsitepackages(),
        }
    else:
        code = (
            "import json, site, sys; print(json.dumps({'dirs': [sys.prefix, sys.base_prefix, sys.exec_prefix,"
            " sys.base_exec_prefix], 'site': site.getsitepackages()}))"
        )
        out = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=60, check=True)
        info = json.loads(out.stdout)
    dirs = [os.path.realpath(p) for p in info["dirs"] + info["site"]]
    dirs.append(os.path.dirname(os.path.dirname(os.path.realpath(python))))
    return sorted(set(dirs)), [p for p in info["site"] if os.path.isdir(p)]


def _minimal(paths: list[str]) -> list[str]:
    """Drop paths that lie under another path of the list."""
    out: list[str] = []
    for p in sorted(set(paths)):
        if not any(p == q or p.startswith(q.rstrip("/") + "/") for q in out):
            out.append(p)
    return out


class Sandbox:
    """Runs one Python program per call, isolated; thread-safe, so a pool of workers can share one.

    ``use_bwrap=None`` picks bubblewrap when it is installed and works (checked once by a probe run);
    otherwise programs run with rlimits only, in a private temporary directory, with a warning.

    Inside bubblewrap the host's home directory is an empty tmpfs (only the interpreter's own folders are
    bound back, read-only), ``/tmp`` is a private size-limited tmpfs and the working directory. Run as
    root, the kernel exempts uid 0 from RLIMIT_NPROC, so the runner switches to a random unprivileged uid
    before the candidate runs (no user namespace is needed then); run as a normal user, bubblewrap makes a
    user namespace and the process limit counts that user's tasks plus ``max_procs``.
    """

    def __init__(
        self,
        timeout: float = DEFAULT_TIMEOUT,
        *,
        memory_mb: int = 1024,
        max_procs: int = 32,
        file_mb: int = 16,
        tmp_mb: int = 64,
        use_bwrap: bool | None = None,
        python: str | None = None,
        retries: int = 6,
        probe: bool = True,
    ) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
        self.timeout = float(timeout)
        self.memory_mb, self.max_procs, self.file_mb, self.tmp_mb = memory_mb, max_procs, file_mb, tmp_mb
        self.retries = retries
        self.python = os.path.abspath(python or sys.executable)
        self._dirs, self._site = _interpreter_paths(self.python)
        self.is_root = os.geteuid() == 0
        bwrap = shutil.which("bwrap")
        if use_bwrap and not bwrap:
            raise RuntimeError("use_bwrap=True but bubblewrap (bwrap) is not installed (make sysdeps)")
        self.bwrap = bwrap if use_bwrap is not False else None
        # As root only a non-zero uid makes RLIMIT_NPROC bite; the sandbox (or the probe) decides.
        self.drop_uid = self.is_root
        if probe:
            self._probe(explicit=use_bwrap is True)
        elif not self.bwrap:
            self._warn_unsandboxed("bubblewrap disabled or not installed")

    @property
    def mode(self) -> str:
        return "bubblewrap" if self.bwrap else "rlimits-only"

    # ------------------------------------------------------------------ probing
    def _probe(self, explicit: bool) -> None:
        """Run a trivial program once, so a sandbox that cannot work is found before 194 programs are
        scored as errors; bubblewrap that cannot create namespaces falls back to rlimits only."""
        probe = "import json, os\nassert os.getcwd()\ndef check():\n    pass\ncheck()"
        if self.bwrap:
            r = self.run(probe, timeout=max(self.timeout, 30.0))
            if r.passed:
                return
            if explicit:
                raise RuntimeError(f"bubblewrap sandbox does not work here: {r.detail}")
            self.bwrap = None
            self._warn_unsandboxed(f"bubblewrap is installed but failed ({r.detail.strip()[:200]})")
        else:
            self._warn_unsandboxed("bubblewrap (bwrap) is not installed; `make sysdeps` installs it")
        r = self.run(probe, timeout=max(self.timeout, 30.0))
        if not r.passed and self.drop_uid:
            self.drop_uid = False
            _warn_once("root-nproc", "running as root without bubblewrap: the interpreter is not readable by "
                       "an unprivileged uid, so the process-count limit is not enforced")
            r = self.run(probe, timeout=max(self.timeout, 30.0))
        if not r.passed:
            raise RuntimeError(f"the interpreter {self.python} cannot run programs here: {r.detail}")

    def _warn_unsandboxed(self, why: str) -> None:
        _warn_once("no-bwrap", f"{why}: running candidate programs WITHOUT the bubblewrap sandbox "
                   "(rlimits, scrubbed environment and timeouts only; the filesystem and network are exposed)")

    # ------------------------------------------------------------------ commands
    def _bwrap_cmd(self, prog_host: str, workdir: str, argv: list[str]) -> list[str]:
        cmd = [self.bwrap, "--ro-bind", "/", "/"]
        for home in self._hidden_homes():
            cmd += ["--perms", "0755", "--tmpfs", home, *self._bind_back(home)]
        # an interpreter under /tmp (a checkout cloned there) is bound back into the private /tmp, read-only
        cmd += ["--perms", "1777", "--size", str(self.tmp_mb << 20), "--tmpfs", "/tmp", *self._bind_back("/tmp"),
                "--perms", "0777", "--dir", workdir, "--ro-bind", prog_host, f"{workdir}/main.py",
                "--proc", "/proc", "--dev", "/dev"]
        if self.is_root:  # no user namespace: the runner drops to an unprivileged uid itself
            cmd += ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try"]
        else:
            cmd += ["--unshare-all"]
        cmd += ["--die-with-parent", "--new-session", "--chdir", workdir, "--"]
        return cmd + argv

    def _bind_back(self, top: str) -> list[str]:
        """bwrap arguments that bind the interpreter's own folders under ``top`` (a folder the sandbox
        replaces by an empty tmpfs) back into it, read-only, with the folders leading to them."""
        args: list[str] = []
        for keep in _minimal([d for d in self._dirs if d.startswith(top.rstrip("/") + "/")]):
            parts = Path(keep).relative_to(top).parts
            for i in range(1, len(parts)):
                args += ["--perms", "0755", "--dir", str(Path(top, *parts[:i]))]
            args += ["--ro-bind", keep, keep]
        return args

    def _hidden_homes(self) -> list[str]:
        """Home directories (credentials, caches) are replaced by empty ones; only the interpreter's
        own directories inside them are bound back."""
        homes = {os.path.realpath(Path.home())}
        if self.is_root:
            homes.add("/root")
        inside_needed = [h for h in homes if any(h == d or h.startswith(d.rstrip("/") + "/") for d in self._dirs)]
        return sorted(h for h in homes if h != "/" and os.path.isdir(h) and h not in inside_needed)

    def _preexec(self, timeout: float) -> Callable[[], None]:
        cpu = int(math.ceil(timeout)) + 1
        mem = self.memory_mb << 20
        fsize = self.file_mb << 20
        nproc = self.max_procs if self.drop_uid else _user_task_count(os.getuid()) + self.max_procs + 16

        def limit() -> None:  # runs in the child between fork and exec: only plain system calls
            resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
            resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
            resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            try:  # if memory runs out anyway, the kernel kills a sandboxed process first
                with open("/proc/self/oom_score_adj", "w") as fh:
                    fh.write("1000")
            except OSError:
                pass

        return limit

    # ------------------------------------------------------------------ running
    def run(self, program: str, *, timeout: float | None = None, sentinel: bool = True) -> RunResult:
        """Execute ``program``; retries harness errors (sandbox failed to start) with back-off."""
        timeout = float(timeout or self.timeout)
        result = None
        for attempt in range(1, self.retries + 2):
            result = self._run_once(program, timeout, sentinel)
            result.attempts = attempt
            if result.status != "error" or attempt > self.retries:
                break
            time.sleep(min(0.25 * 2 ** (attempt - 1), 4.0) * (0.5 + random.random()))
        assert result is not None
        return result

    def _run_once(self, program: str, timeout: float, sentinel: bool) -> RunResult:
        start_token, nonce = secrets.token_hex(16), secrets.token_hex(16)
        if sentinel:
            program = program + f"\n\n__import__('os').write(1, b'{nonce}\\n')\n"
        host = tempfile.mkdtemp(prefix="icsbx-")
        try:
            prog = os.path.join(host, "main.py")
            with open(prog, "w", encoding="utf-8") as fh:
                fh.write(program)
            os.chmod(prog, 0o644)
            if self.bwrap:
                workdir, env = "/tmp/work", dict(SAFE_ENV)
            else:
                workdir = os.path.join(host, "work")
                os.mkdir(workdir)
                os.chmod(host, 0o755)
                os.chmod(workdir, 0o777)
                shutil.copy(prog, os.path.join(workdir, "main.py"))
                env = {**SAFE_ENV, "HOME": workdir, "TMPDIR": workdir}
            uid = random.randrange(1_000_000, 1_900_000) if self.drop_uid else -1
            argv = [self.python, "-I", "-S", "-B", "-c", RUNNER, start_token, str(uid),
                    os.pathsep.join(self._site), f"{workdir}/main.py"]
            cmd = self._bwrap_cmd(prog, workdir, argv) if self.bwrap else argv
            return self._execute(cmd, env, workdir if not self.bwrap else host, host, timeout,
                                 start_token, nonce if sentinel else None)
        finally:
            shutil.rmtree(host, ignore_errors=True)

    def _execute(self, cmd: list[str], env: dict[str, str], cwd: str, host: str, timeout: float,
                 start_token: str, nonce: str | None) -> RunResult:
        out_path, err_path = os.path.join(host, "stdout"), os.path.join(host, "stderr")
        t0 = time.monotonic()
        timed_out = False
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            try:
                proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env, cwd=cwd,
                                        preexec_fn=self._preexec(timeout), start_new_session=True)
            except OSError as exc:
                return RunResult("error", f"sandbox failed to start: {exc}", None, 0.0)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:
                _kill_group(proc.pid)
                proc.wait()
        seconds = time.monotonic() - t0
        stdout, stderr = _read_capped(out_path), _read_capped(err_path)
        started = stdout.startswith(start_token + "\n")
        stdout = stdout[len(start_token) + 1:] if started else stdout
        rc = proc.returncode
        if not started:
            if timed_out:
                return RunResult("error", f"sandbox did not start within {timeout:g} s", rc, seconds,
                                 stderr=stderr)
            return RunResult("error", f"sandbox failed to start: {_tail(stderr) or f'exit status {rc}'}", rc,
                             seconds, stderr=stderr)
        if timed_out:
            return RunResult("timeout", f"wall-clock timeout after {timeout:g} s", rc, seconds, 1, stdout, stderr)
        reached_end = nonce is None or _file_contains(out_path, f"{nonce}\n".encode())
        if nonce is not None:
            stdout = stdout.replace(f"{nonce}\n", "", 1)
        if rc == 0 and reached_end:
            return RunResult("passed", "", rc, seconds, 1, stdout, stderr)
        return RunResult("failed", self._failure_detail(rc, stderr, nonce), rc, seconds, 1, stdout, stderr)

    def _failure_detail(self, rc: int, stderr: str, nonce: str | None) -> str:
        sig = -rc if rc < 0 else (rc - 128 if self.bwrap and rc > 128 else 0)
        if sig:
            try:
                name = signal.Signals(sig).name
            except ValueError:
                name = f"signal {sig}"
            return f"{name}: {_SIGNAL_DETAIL.get(sig, 'killed by a signal')}" + (
                f"\n{_tail(stderr)}" if stderr.strip() else "")
        if rc == 0:
            return "exited before check() returned (sentinel missing; sys.exit/os._exit?)"
        return _tail(stderr) or f"exit status {rc}"


def _kill_group(pgid: int) -> None:
    """SIGKILL the whole process group (bubblewrap then tears down the PID namespace with it)."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _read_capped(path: str, limit: int = 1 << 20) -> str:
    """At most ``limit`` bytes of a captured stream (the file-size rlimit already bounds the file)."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(limit)
    except OSError:
        return ""
    return data.decode("utf-8", errors="replace")


def _file_contains(path: str, needle: bytes) -> bool:
    """Whether the whole captured stream (bounded by the file-size rlimit) contains ``needle``: the
    sentinel is looked for past the reporting cap too, so long legitimate output still passes."""
    try:
        with open(path, "rb") as fh:
            return needle in fh.read()
    except OSError:
        return False


def _tail(text: str, limit: int = 1500) -> str:
    text = _RUNNER_FRAME.sub("", text).strip()
    return text if len(text) <= limit else "..." + text[-limit:]


# --------------------------------------------------------------------------- evaluation API
def _index_tasks(tasks: Sequence[dict[str, Any]], where: str = "tasks") -> dict[str, dict[str, Any]]:
    by_id: dict[str, dict[str, Any]] = {}
    for i, t in enumerate(tasks):
        for key in ("task_id", "test"):
            if not isinstance(t.get(key), str):
                raise ValueError(f"{where}: row {i + 1} needs a string '{key}' (EditEval format: task_id, "
                                 "instruction, input, output, test, context)")
        if t["task_id"] in by_id:
            raise ValueError(f"{where}: duplicate task_id {t['task_id']!r}")
        by_id[t["task_id"]] = t
    return by_id


def _check_samples(samples: Sequence[dict[str, Any]], by_id: dict[str, Any], where: str = "samples") -> None:
    for i, s in enumerate(samples):
        if s.get("task_id") not in by_id:
            raise ValueError(f"{where}: row {i + 1} has task_id {s.get('task_id')!r}, which is not in the tasks")
        if not isinstance(s.get("output"), (str, type(None))):
            raise ValueError(f"{where}: row {i + 1} ('{s['task_id']}') needs 'output' as a string")


def evaluate_samples(
    tasks: Sequence[dict[str, Any]],
    samples: Sequence[dict[str, Any]],
    timeout: float = DEFAULT_TIMEOUT,
    workers: int = 2,
    progress: bool = True,
    sandbox: Sandbox | None = None,
) -> list[dict[str, Any]]:
    """Execute every sample's ``output`` against its task's test, ``workers`` sandboxes at a time.

    Returns one row per sample, in order: the sample's fields except ``output``, plus ``passed``,
    ``status`` (passed|failed|timeout|error), ``detail``, ``seconds``, ``returncode``, ``attempts`` and
    ``runs`` (a test that reads a clock runs until most of ``TIMING_RUNS`` runs agree: see there).
    """
    by_id = _index_tasks(tasks)
    _check_samples(samples, by_id)
    sb = sandbox or Sandbox(timeout=timeout)
    jobs = [(build_program(by_id[s["task_id"]], s.get("output") or ""), runs_needed(by_id[s["task_id"]]))
            for s in samples]

    def one(job: tuple[str, int]) -> tuple[RunResult, int]:
        program, runs = job
        majority, by_verdict = runs // 2 + 1, {True: [], False: []}
        while max(len(v) for v in by_verdict.values()) < majority:
            r = sb.run(program, timeout=timeout)
            by_verdict[r.passed].append(r)
        verdict = by_verdict[len(by_verdict[True]) >= majority]
        r, done = verdict[-1], sum(len(v) for v in by_verdict.values())
        if runs > 1:
            r.detail = (f"{r.detail}\n(the test reads a clock: {len(by_verdict[True])} of {done} runs passed; "
                        f"the verdict is the majority of up to {runs})")
        return r, done

    runs: list[tuple[RunResult, int]] = []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for r in progress_bar(pool.map(one, jobs), total=len(jobs), desc="exec", disable=not progress, unit="prog"):
            runs.append(r)
    results = []
    for s, (r, n) in zip(samples, runs, strict=True):
        row = {k: v for k, v in s.items() if k != "output"}
        row.update(task_id=s["task_id"], passed=r.passed, status=r.status, detail=r.detail,
                   seconds=round(r.seconds, 3), returncode=r.returncode, attempts=r.attempts, runs=n)
        results.append(row)
    errors = sum(r.status == "error" for r, _ in runs)
    if errors:
        print(f"warning: {errors} of {len(runs)} programs hit a HARNESS error (the sandbox failed to start, "
              "after retries); they count as not passed but are not the candidate's fault", file=sys.stderr)
    return results


def exec_eval_cli(tasks_path: str | Path, samples_path: str | Path, out_path: str | Path,
                  timeout: float = DEFAULT_TIMEOUT, workers: int = 2) -> int:
    """``instructcoder exec-eval``: score a samples file; the last line printed is the pass@k summary."""
    try:
        if timeout <= 0 or workers < 1:
            raise ValueError(f"--timeout must be > 0 and --workers >= 1 (got {timeout}, {workers})")
        tasks = read_jsonl(tasks_path)
        samples = read_jsonl(samples_path)
        by_id = _index_tasks(tasks, where=str(tasks_path))
        _check_samples(samples, by_id, where=str(samples_path))
        if not samples:
            raise ValueError(f"{samples_path}: no samples")
        sandbox = Sandbox(timeout=timeout)
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    n_tasks = len({s["task_id"] for s in samples})
    print(f"exec-eval: {len(samples)} samples for {n_tasks} of {len(tasks)} tasks; sandbox={sandbox.mode}, "
          f"timeout={timeout:g}s, workers={workers}", flush=True)
    t0 = time.monotonic()
    results = evaluate_samples(tasks, samples, timeout=timeout, workers=workers, sandbox=sandbox)
    write_jsonl(out_path, results)
    score = score_results(results)
    st = score["statuses"]
    print(f"statuses: passed={st['passed']} failed={st['failed']} timeout={st['timeout']} "
          f"error={st['error']} (harness errors count as not passed); {time.monotonic() - t0:.1f} s")
    print(f"results: {out_path}")
    print(format_score(score), flush=True)
    return 0


__all__ = [
    "DEFAULT_TIMEOUT",
    "RunResult",
    "Sandbox",
    "build_program",
    "evaluate_samples",
    "exec_eval_cli",
    "format_score",
    "pass_at_k",
    "score_results",
]
