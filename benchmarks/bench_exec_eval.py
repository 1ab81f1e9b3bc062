"""Benchmark: executing EditEval in the sandbox.

Scores all 194 reference outputs (should pass) and all 194 inputs (should fail) with the sandboxed
harness (``workers`` at a time), and times a naive baseline on the references: one plain
``subprocess.run([python, file])`` per program, sequentially, no sandbox (pass = exit status 0).
The design target: all references in <= 30 s on 2 cores.

    .venv/bin/python benchmarks/bench_exec_eval.py [--editeval PATH] [--workers 2] [--timeout 10]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from instructcoder_utils.sandbox import Sandbox, build_program, evaluate_samples  # noqa: E402
from instructcoder_utils.tasks import editeval_file, load_editeval  # noqa: E402


def naive_baseline(tasks: list[dict], timeout: float) -> tuple[float, list[str]]:
    """Sequential plain subprocesses, no isolation: the cost floor of 'just run it'. Returns the seconds
    and the task ids whose reference passed (exit status 0)."""
    passed = []
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        for t in tasks:
            path = Path(tmp, "prog.py")
            path.write_text(build_program(t, t["output"]))
            try:
                r = subprocess.run([sys.executable, str(path)], capture_output=True, timeout=timeout, cwd=tmp)
                if r.returncode == 0:
                    passed.append(t["task_id"])
            except subprocess.TimeoutExpired:
                pass
    return time.monotonic() - t0, passed


def children_cpu() -> float:
    """CPU seconds of finished child processes. Only meaningful for the plain baseline (a sandbox's
    grandchildren are reaped inside its PID namespace): on a busy machine it shows the work itself."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--editeval", default=None,
                    help="a copy of edit_eval.jsonl (default: the cache, ../shared or the pinned download)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--no-baseline", action="store_true")
    args = ap.parse_args()

    tasks = load_editeval(editeval_file(path=args.editeval))
    sandbox = Sandbox(timeout=args.timeout)
    print(f"# sandbox={sandbox.mode} workers={args.workers} timeout={args.timeout:g}s cpus={os.cpu_count()} "
          f"load={os.getloadavg()[0]:.1f}", flush=True)
    figures = {}
    for key, name in (("output", "references"), ("input", "inputs")):
        samples = [{"task_id": t["task_id"], "output": t[key]} for t in tasks]
        t0 = time.monotonic()
        rows = evaluate_samples(tasks, samples, timeout=args.timeout, workers=args.workers, sandbox=sandbox)
        seconds = time.monotonic() - t0
        passed = sum(r["passed"] for r in rows)
        errors = sum(r["status"] == "error" for r in rows)
        figures[name] = seconds
        value, unit = (passed, "passed") if key == "output" else (len(rows) - passed, "failed")
        odd = [r["task_id"] for r in rows if r["passed"] != (key == "output")]
        print(f"RESULT exec_eval_{name} seconds={seconds:.2f} instances={len(rows)} value={value} unit={unit} "
              f"errors={errors}" + (f" unexpected={','.join(odd)}" if odd else ""), flush=True)
    if not args.no_baseline:
        cpu0 = children_cpu()
        base_seconds, base_passed = naive_baseline(tasks, args.timeout)
        base_cpu = children_cpu() - cpu0
        ratio = base_seconds / figures["references"]
        base_failed = sorted(set(t["task_id"] for t in tasks) - set(base_passed), key=lambda i: int(i.split("/")[1]))
        print(f"RESULT exec_eval_throughput ratio={ratio:.2f} seconds={figures['references']:.2f} "
              f"baseline_seconds={base_seconds:.2f} baseline_cpu_seconds={base_cpu:.1f} baseline_passed={len(base_passed)} instances={len(tasks)}"
              + (f" baseline_failed={','.join(base_failed)}" if base_failed else ""))


if __name__ == "__main__":
    main()
