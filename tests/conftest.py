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


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def editeval_path() -> Path:
    """EditEval as a run finds it: the cache, the development copy beside the checkout, or the download."""
    from instructcoder_utils.published import PublishedFileError
    from instructcoder_utils.tasks import editeval_file

    try:
        return editeval_file()
    except PublishedFileError as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="session")
def smollm_dir() -> str:
    """The built-in model, materialized once into the user cache (real weights, no download)."""
    from instructcoder_utils.models import resolve_model

    return resolve_model("builtin:smollm2-135m-instruct")
