"""The whole study under the smoke profile, as `make reproduce` runs it on a clone with nothing beside it:
EditEval comes from a loopback server, six notebooks run with papermill on a real model, then the report
is opened in headless Chromium."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from servers import free_port

from instructcoder_utils.files import read_json
from instructcoder_utils.tasks import EDITEVAL


@pytest.mark.slow
def test_clone_alone_fetches_editeval_once_and_scores_it(smoke_study):
    """The smoke study (conftest) runs on a clone with nothing beside it: EditEval came from the loopback
    server, once, into the run's empty cache."""
    assert smoke_study.hits == 1, "EditEval was not downloaded once (a copy beside the clone was used?)"
    assert EDITEVAL.cached(smoke_study.cache).is_file()
    summary = read_json(smoke_study.out / "summary.json")
    assert summary["evaluation"]["editeval"]["n"] == 4


def test_clone_alone_offline_stops_with_one_message(clone, study_env, tmp_path):
    """No copy anywhere and an address that cannot be reached: exit 2, the three ways named, no traceback,
    nothing in the cache and no stage started."""
    out, cache = tmp_path / "out", tmp_path / "cache"
    proc = subprocess.run(
        [sys.executable, "-m", "instructcoder_utils.cli", "run", "--profile", "smoke", "--out", str(out)],
        capture_output=True, text=True, cwd=clone, timeout=300,
        env=study_env(clone, cache, f"http://127.0.0.1:{free_port()}/edit_eval.jsonl"),
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "EditEval is not available" in errors[0] and "three ways" in errors[0], proc.stderr
    assert not (cache / "published").exists()
    assert not (out / "01_seeds").exists()


@pytest.mark.slow
def test_smoke_run_writes_every_stage_and_summary(smoke_run):
    out, log = smoke_run
    run = read_json(out / "run.json")
    for stage, entry in run["stages"].items():
        assert entry["status"] == "ok", f"{stage}: {entry}"
        assert entry["seconds"] > 0
        assert entry["peak_rss_mib"] > 100, f"{stage}: peak {entry['peak_rss_mib']} MiB, less than a kernel alone holds"
        assert (out / "notebooks" / f"{stage}.ipynb").is_file()
    summary = read_json(out / "summary.json")
    assert summary["dataset_size"]["train"] > 0
    assert summary["peak_rss_mib"] == max(e["peak_rss_mib"] for e in run["stages"].values())
    refs = read_json(out / "05_evaluation" / "references.json")
    for name in ("editeval", "own", "test_split"):
        scores = summary["evaluation"][name]
        assert 0 <= scores["base"] <= 100 and 0 <= scores["tuned"] <= 100
        assert refs[name]["tasks"] == scores["n"] and len(refs[name]["over_bound"]) <= refs[name]["tasks"]
    assert refs["editeval"]["passed"] == refs["editeval"]["with_tests"] == 4
    assert refs["editeval"]["over_bound"], "smoke's 64 new tokens are fewer than some of the first 4 references need"
    interp = read_json(out / "05_evaluation" / "interp-0.5" / "metrics.json")
    assert interp["identity"]["scale"] == 0.5 and list(interp["sets"]) == ["own"]  # half way, on sweep_sets
    assert (out / "06_analysis" / "figures" / "interpolation.png").is_file()
    assert not (out / "06_analysis" / "figures" / "sources.png").exists()  # one source: it would repeat kinds
    assert (out / "06_analysis" / "figures" / "kinds.png").is_file()
    assert "report:" in log
    trained = [line for line in log.splitlines() if line.startswith("train main") and "100%" in line]
    assert trained, "stage 04's progress bar never reached the run's log"


@pytest.mark.slow
def test_report_renders_in_headless_chromium(smoke_run, repo_root):
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.skip("chromium/chromedriver not installed (make sysdeps installs them)")
    from instructcoder_utils.report import check_in_browser

    out, _ = smoke_run
    shot = repo_root / "outputs" / "smoke" / "report.png"
    result = check_in_browser(out / "06_analysis" / "report.html", screenshot=shot)
    assert result["images"] >= 5, result
    assert result["broken"] == [], f"figures that did not load: {result['broken']}"
    assert result["clipped"] == [] and not result["page_overflows"], result
    assert result["split_headers"] == [], f"table headers broken inside a word: {result['split_headers']}"
    assert result["answer_title"].startswith("Answer"), result  # the report opens with its answer...
    assert result["answer_bottom"] <= 1080, result  # ...on one screen
    assert shot.is_file() and shot.stat().st_size > 10_000
