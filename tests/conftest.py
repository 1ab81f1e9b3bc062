"""Shared fixtures. Real components are started here by the tests themselves."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

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


def standalone_clone(repo: Path, parent: Path) -> Path:
    """A clone of the checkout in a folder of its own (no ``shared/`` beside it), carrying the working
    tree's uncommitted changes, so a test runs the code under test as a new user's clone would."""
    dst = parent / "instructcoder"
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(repo), str(dst)], check=True, timeout=120)
    changed = subprocess.run(["git", "-C", str(repo), "ls-files", "-mo", "--exclude-standard", "-z"],
                             capture_output=True, text=True, check=True).stdout.split("\0")
    for rel in filter(None, changed):
        src = repo / rel
        if src.is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel)
        else:
            (dst / rel).unlink(missing_ok=True)
    assert not (dst.parent / "shared").exists()
    return dst


def clone_env(clone: Path, cache: Path, editeval_url: str) -> dict[str, str]:
    """The clone's own package first on the path (for the runner and every notebook kernel), an empty user
    cache except for the materialized built-in model (linked, not rebuilt), and EditEval's address."""
    from instructcoder_utils.models import cache_dir

    cache.mkdir(parents=True, exist_ok=True)
    if not (cache / "models").exists():
        (cache / "models").symlink_to(cache_dir() / "models", target_is_directory=True)
    return {**os.environ, "PYTHONPATH": str(clone), "INSTRUCTCODER_CACHE": str(cache),
            "INSTRUCTCODER_EDITEVAL_URL": editeval_url}


@pytest.fixture(scope="session")
def clone(tmp_path_factory, repo_root) -> Path:
    return standalone_clone(repo_root, tmp_path_factory.mktemp("clone"))


@pytest.fixture(scope="session")
def study_env():
    """``study_env(clone, cache, editeval_url)``: the environment a clone's run gets (see ``clone_env``)."""
    return clone_env


@pytest.fixture(scope="session")
def smoke_study(tmp_path_factory, clone, editeval_path, smollm_dir) -> SimpleNamespace:
    """The whole study under the smoke profile, run once per session as `make reproduce` runs it on a clone
    with nothing beside it: EditEval downloaded from a loopback server into an empty cache, six notebooks
    with papermill, a real model. The end-to-end checks and ``instructcoder edit``'s share it."""
    from servers import FileServer

    tmp = tmp_path_factory.mktemp("smoke")
    out, cache = tmp / "smoke", tmp / "cache"
    with FileServer(editeval_path.read_bytes()) as server:
        proc = subprocess.run(
            [sys.executable, "-m", "instructcoder_utils.cli", "run", "--profile", "smoke", "--out", str(out)],
            capture_output=True, text=True, cwd=clone, timeout=1500, env=clone_env(clone, cache, server.url),
        )
    assert proc.returncode == 0, f"smoke run failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return SimpleNamespace(out=out, log=proc.stdout + proc.stderr, hits=server.hits, cache=cache)


@pytest.fixture(scope="session")
def smoke_run(smoke_study) -> tuple[Path, str]:
    """(output folder, log) of the smoke study."""
    return smoke_study.out, smoke_study.log
