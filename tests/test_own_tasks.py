"""The project's own benchmark: well-formed, every reference passes its test and every input fails, through
the real sandbox (so a task that cannot tell a correct edit from the unedited code is caught)."""

from __future__ import annotations

import ast
import shutil
from collections import Counter

import pytest

from instructcoder_utils.sandbox import Sandbox, evaluate_samples
from instructcoder_utils.tasks import TASK_FIELDS, load_own_tasks, own_tasks_path


def test_own_tasks_are_well_formed():
    tasks = load_own_tasks()
    assert len(tasks) >= 48
    ids = [t["task_id"] for t in tasks]
    assert len(set(ids)) == len(ids)
    assert ids == [f"Own/{i}" for i in range(len(tasks))]
    for t in tasks:
        assert all(t[k].strip() for k in TASK_FIELDS), t["task_id"]
        assert t["context"] == "" and t["input"] != t["output"], t["task_id"]
        for key in ("input", "output", "test"):
            ast.parse(t[key])  # valid Python
        assert "def check(" in t["test"], t["task_id"]
        assert 5 <= len(t["input"].splitlines()) <= 30 and len(t["output"].splitlines()) <= 40, t["task_id"]
    kinds = Counter(t["META"]["kind"] for t in tasks)
    assert len(kinds) >= 8, kinds  # a spread of everyday edit kinds, not one pattern
    assert own_tasks_path().name == "own_tasks.jsonl"


@pytest.mark.slow  # ~10 s idle (108 programs on 2 workers); kept in the default run: it proves the benchmark
def test_own_references_pass_and_inputs_fail():
    if not shutil.which("bwrap"):
        pytest.skip("bubblewrap (bwrap) not installed: run `make sysdeps`")
    tasks = load_own_tasks()
    samples = [{"task_id": t["task_id"], "output": t[key], "kind": key} for key in ("output", "input") for t in tasks]
    rows = evaluate_samples(tasks, samples, timeout=10.0, workers=2, sandbox=Sandbox(timeout=10.0), progress=False)
    wrong = [(r["task_id"], r["kind"], r["status"], r["detail"][-200:]) for r in rows
             if r["passed"] != (r["kind"] == "output")]
    assert wrong == []
    assert not any(r["status"] in ("error", "timeout") for r in rows)  # inputs fail on assertions, quickly
