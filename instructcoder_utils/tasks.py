"""Execution-checked editing benchmarks in EditEval format: EditEval itself and the project's own tasks.

A task is ``{task_id, instruction, input, output, test, context, META}``: ``output`` is a reference edit,
``test`` defines ``check()``, and ``context`` (optional) is a program with a ``{{Code}}`` marker. See
``sandbox.build_program`` for how a candidate is turned into the program that is executed.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from .files import read_jsonl

TASK_FIELDS = ("task_id", "instruction", "input", "output", "test")


def validate_tasks(tasks: list[dict[str, Any]], where: str) -> list[dict[str, Any]]:
    """One clear error for a malformed row or a duplicate id; ``context`` defaults to ""."""
    seen: set[str] = set()
    for i, t in enumerate(tasks, 1):
        missing = [k for k in TASK_FIELDS if not isinstance(t.get(k), str)]
        if missing:
            raise ValueError(f"{where}: row {i} lacks string field(s) {missing}; EditEval format needs "
                             f"{list(TASK_FIELDS)} (+ optional context)")
        if t["task_id"] in seen:
            raise ValueError(f"{where}: duplicate task_id {t['task_id']!r} (row {i})")
        seen.add(t["task_id"])
        t.setdefault("context", "")
        t["context"] = t["context"] or ""
    return tasks


def load_editeval(path: str | Path) -> list[dict[str, Any]]:
    """The 194 EditEval tasks from its JSONL file (kept beside the checkout, not in the package)."""
    return validate_tasks(read_jsonl(path), str(path))


def own_tasks_path() -> Path:
    return Path(str(resources.files("instructcoder_utils") / "data" / "own_tasks.jsonl"))


def load_own_tasks() -> list[dict[str, Any]]:
    """The project's own benchmark (``Own/0``...): everyday edits written for this project, independent of
    EditEval and of the synthetic training data; each reference passes its test and each input fails."""
    return validate_tasks(read_jsonl(own_tasks_path()), "own_tasks.jsonl")
