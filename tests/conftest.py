"""Shared fixtures. Real components are started here by the tests themselves."""

from __future__ import annotations

import os
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
