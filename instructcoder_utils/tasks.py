"""Execution-checked editing benchmarks in EditEval format: EditEval itself and the project's own tasks.

A task is ``{task_id, instruction, input, output, test, context, META}``: ``output`` is a reference edit,
``test`` defines ``check()``, and ``context`` (optional) is a program with a ``{{Code}}`` marker. See
``sandbox.build_program`` for how a candidate is turned into the program that is executed.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from .config import REPO_ROOT
from .files import read_jsonl
from .published import PublishedFile, obtain

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


# EditEval (MIT) as its authors publish it, pinned to a commit: the latest, whose EditEval/47 has the
# refined instruction. Never copied into this repository; ``editeval_file`` finds or fetches it.
EDITEVAL = PublishedFile(
    name="EditEval",
    filename="edit_eval.jsonl",
    url="https://raw.githubusercontent.com/qishenghu/InstructCoder/"
        "1e7befb4700405e74c2cf1a21b761dd36dcc8735/edit_eval/edit_eval.jsonl",
    sha256="748403e73bb0a642fb1626f3e03ebcaa2f0058da8b922ceb0f675410c19a68dd",
    url_env="INSTRUCTCODER_EDITEVAL_URL",
    config_key="evaluation.editeval_path",
    dev_copy=REPO_ROOT.parent / "shared" / "data" / "editeval" / "edit_eval.jsonl",
    licence="MIT",
)


def editeval_file(cfg=None, path: str | Path | None = None) -> Path:
    """EditEval's file: ``path`` or the profile's ``evaluation.editeval_path`` when given, else the user cache,
    the development copy beside the checkout, or the pinned download (see ``published.obtain``)."""
    if path is None and cfg is not None and cfg.evaluation.editeval_path:
        path = cfg.resolve_path(cfg.evaluation.editeval_path)
    return obtain(EDITEVAL, path)


def load_editeval(path: str | Path) -> list[dict[str, Any]]:
    """The 194 EditEval tasks from its JSONL file (found or fetched by ``editeval_file``)."""
    return validate_tasks(read_jsonl(path), str(path))


def own_tasks_path() -> Path:
    return Path(str(resources.files("instructcoder_utils") / "data" / "own_tasks.jsonl"))


def load_own_tasks() -> list[dict[str, Any]]:
    """The project's own benchmark (``Own/0``...): everyday edits written for this project, independent of
    EditEval and of the synthetic training data; each reference passes its test and each input fails."""
    return validate_tasks(read_jsonl(own_tasks_path()), "own_tasks.jsonl")
