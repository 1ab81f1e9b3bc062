"""Shared fixtures. Real components are started here by the tests themselves."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from servers import *  # noqa: E402,F401,F403  (server fixtures: scripted loopback server, transformers serve)

EDITEVAL = (REPO.parent / "shared" / "data" / "editeval" / "edit_eval.jsonl").resolve()


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def editeval_path() -> Path:
    if not EDITEVAL.is_file():
        pytest.fail(f"EditEval not found beside the checkout: {EDITEVAL}")
    return EDITEVAL


@pytest.fixture(scope="session")
def smollm_dir() -> str:
    """The built-in model, materialized once into the user cache (real weights, no download)."""
    from instructcoder_utils.models import resolve_model

    return resolve_model("builtin:smollm2-135m-instruct")


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory, repo_root, smollm_dir):
    """The whole study under the smoke profile, run once per session as `make reproduce` runs it (six
    notebooks with papermill, a real model): the end-to-end checks and ``instructcoder edit``'s share it."""
    out = tmp_path_factory.mktemp("smoke") / "smoke"
    proc = subprocess.run(
        [sys.executable, "-m", "instructcoder_utils.cli", "run", "--profile", "smoke", "--out", str(out)],
        capture_output=True, text=True, cwd=repo_root, timeout=1500,
    )
    assert proc.returncode == 0, f"smoke run failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return out, proc.stdout + proc.stderr
