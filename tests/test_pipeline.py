"""The runner: executes notebooks with papermill, records run.json, skips unchanged stages,
and stops on a failing notebook naming the stage, the cell and the error."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from instructcoder_utils import pipeline, progress
from instructcoder_utils.files import read_json

PARAMS = 'profile = "smoke"\nout_dir = None\noverrides = {}'


def _nb(path, body: str) -> None:
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    p = new_code_cell(PARAMS)
    p.metadata["tags"] = ["parameters"]
    setup = new_code_cell(
        "from instructcoder_utils.pipeline import start_stage\n"
        f"cfg, out, stage_out = start_stage({path.stem!r}, profile, out_dir, overrides)"
    )
    nb.cells = [p, setup, new_code_cell(body)]
    nbformat.write(nb, path)


@pytest.fixture()
def fake_notebooks(tmp_path, monkeypatch):
    nbdir = tmp_path / "notebooks"
    nbdir.mkdir()
    _nb(nbdir / "01_seeds.ipynb", "(stage_out / 'seeds.jsonl').write_text('{}\\n')\nprint('lora_r', cfg.training.lora_r)")
    _nb(nbdir / "02_generation.ipynb", "assert (out / '01_seeds' / 'seeds.jsonl').exists()\nx = 1")
    monkeypatch.setattr(pipeline, "NOTEBOOK_DIR", nbdir)
    monkeypatch.setattr(pipeline, "package_source_hash", lambda: "fixed-source")  # isolate from edits elsewhere
    return nbdir


def test_run_records_manifest_and_skips_unchanged(fake_notebooks, tmp_path):
    out = tmp_path / "out"
    m = pipeline.run("smoke", out_dir=str(out), overrides={"training": {"lora_r": 4}})
    assert [s["status"] for s in m["stages"].values()] == ["ok", "ok"]
    run = read_json(out / "run.json")
    assert run["profile"]["training"]["lora_r"] == 4 and run["seed"] == 1234
    assert run["packages"]["torch"].startswith("2.13.0")
    assert all(run["stages"][s]["seconds"] > 0 for s in ("01_seeds", "02_generation"))
    assert (out / "notebooks" / "01_seeds.ipynb").is_file()
    executed = nbformat.read(out / "notebooks" / "01_seeds.ipynb", as_version=4)
    assert any("lora_r 4" in "".join(o.get("text", "") for o in c.get("outputs", [])) for c in executed.cells)
    assert (out / "summary.json").is_file()

    again = pipeline.run("smoke", out_dir=str(out), overrides={"training": {"lora_r": 4}})
    assert all(s["status"].startswith("skipped") for s in again["stages"].values())
    changed = pipeline.run("smoke", out_dir=str(out), overrides={"training": {"lora_r": 8}})
    assert all(s["status"] == "ok" for s in changed["stages"].values())
    forced = pipeline.run("smoke", out_dir=str(out), overrides={"training": {"lora_r": 8}}, only=["generation"],
                          force=True)
    assert forced["stages"]["01_seeds"]["status"] == "not selected"
    assert forced["stages"]["02_generation"]["status"] == "ok"


def test_kernels_talk_over_unix_sockets_not_tcp_ports(fake_notebooks, tmp_path):
    """A TCP port can be taken between jupyter_client picking it and the kernel binding it, which once hung a
    run; a stage's kernel talks to the runner over Unix sockets (``pipeline.kernel_manager_class``)."""
    _nb(fake_notebooks / "02_generation.ipynb",
        "import json\nfrom ipykernel.connect import get_connection_info\n"
        "print('transport', json.loads(get_connection_info())['transport'])")
    out = tmp_path / "out"
    pipeline.run("smoke", out_dir=str(out))
    executed = nbformat.read(out / "notebooks" / "02_generation.ipynb", as_version=4)
    printed = "".join(o.get("text", "") for c in executed.cells for o in c.get("outputs", []))
    assert "transport ipc" in printed, printed


def _run_in_process(nbdir: Path, out: Path, check: str = "") -> subprocess.CompletedProcess:
    """`pipeline.run('smoke')` on the fake notebooks in a process of its own, as the CLI runs it: its
    memory is not pytest's (which grows and shrinks with the tests before), and pytest's log capture does
    not hide what it prints. `check` runs after the run."""
    script = ("import os\nfrom pathlib import Path\nfrom instructcoder_utils import pipeline, progress\n"
              f"pipeline.NOTEBOOK_DIR = Path({str(nbdir)!r})\n"
              "pipeline.package_source_hash = lambda: 'fixed-source'\n"
              f"pipeline.run('smoke', out_dir={str(out)!r})\n" + check)
    env = {k: v for k, v in os.environ.items() if k != progress.ENV}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_progress_bars_print_lines_into_the_run_log(fake_notebooks, tmp_path):
    """papermill's log forwards printed text, not widgets: a stage's bars reach the terminal as lines, each
    once (in a process of its own: pytest's log capture would hide a second copy)."""
    _nb(fake_notebooks / "02_generation.ipynb",
        "from instructcoder_utils.progress import bar\nfor _ in bar(range(7), desc='counting', unit='thing'):\n"
        "    pass")
    proc = _run_in_process(fake_notebooks, tmp_path / "out",
                           "assert progress.ENV not in os.environ, 'the runner keeps its own environment'\n")
    done = [line for line in proc.stderr.splitlines() if line.startswith("counting") and "7/7" in line]
    assert len(done) == 1 and "\r" not in proc.stderr, proc.stderr[-3000:]


def test_progress_lines_mode_writes_one_line_per_redraw(monkeypatch, capsys):
    monkeypatch.setenv(progress.ENV, "lines")
    monkeypatch.setattr(progress, "LINE_SECONDS", 0.0)  # every update redraws
    for _ in progress.bar(range(5), desc="steps", mininterval=0, miniters=1):
        pass
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert err.endswith("\n") and "\r" not in err
    assert [line.split("|")[2].split()[0] for line in lines] == ["0/5", "1/5", "2/5", "3/5", "4/5", "5/5"], err


def test_progress_lines_mode_prints_a_bar_without_total_closing_once(monkeypatch, capsys):
    """Without a total the line has no "<remaining": closing redraws the last count at another rate."""
    monkeypatch.setenv(progress.ENV, "lines")
    monkeypatch.setattr(progress, "LINE_SECONDS", 0.0)
    for _ in progress.bar(iter(range(3)), desc="files, dirs", mininterval=0):
        pass
    counts = [line.split(": ")[1].split(" [")[0] for line in capsys.readouterr().err.splitlines()]
    assert counts == ["0it", "1it", "2it", "3it"], counts


def test_progress_lines_mode_keeps_tqdms_monitor_away(monkeypatch):
    """tqdm's monitor thread redraws a bar whose dynamic `miniters` grew above 1 and leaves its last-print
    time as it was, so the next update printed the same line again a second later (seen in a run's log)."""
    monkeypatch.setenv(progress.ENV, "lines")
    b = progress.bar(range(3), desc="steps")
    assert b.miniters == 1 and not b.dynamic_miniters and b.mininterval >= 30
    b.close()


def test_run_records_each_stage_peak_memory(fake_notebooks, tmp_path):
    """The peak counts the kernel's memory, not only the runner's: a stage that holds 400 MiB more for a
    second peaks that much above one that does not. The runner runs in a process of its own: inside pytest
    its resident memory (2.4 GiB after the tests before) moved by more than the 400 MiB between stages."""
    _nb(fake_notebooks / "02_generation.ipynb", "import time\nblock = b'x' * (400 << 20)\ntime.sleep(1.5)")
    out = tmp_path / "out"
    _run_in_process(fake_notebooks, out)
    stages = read_json(out / "run.json")["stages"]
    light, heavy = (stages[s]["peak_rss_mib"] for s in ("01_seeds", "02_generation"))
    assert light > 20 and heavy - light > 300, (light, heavy)
    assert read_json(out / "summary.json")["peak_rss_mib"] == heavy
    _run_in_process(fake_notebooks, out)  # skipped stages keep their figure
    again = read_json(out / "run.json")["stages"]["02_generation"]
    assert again["status"].startswith("skipped") and again["peak_rss_mib"] == heavy, again


def test_failing_notebook_names_stage_cell_and_error(fake_notebooks, tmp_path):
    _nb(fake_notebooks / "02_generation.ipynb", "raise RuntimeError('the model replied nonsense')")
    out = tmp_path / "out"
    with pytest.raises(pipeline.StageFailed) as e:
        pipeline.run("smoke", out_dir=str(out))
    msg = str(e.value)
    assert "02_generation" in msg and "RuntimeError" in msg and "the model replied nonsense" in msg and "cell" in msg
    run = read_json(out / "run.json")
    assert run["stages"]["01_seeds"]["status"] == "ok"
    assert run["stages"]["02_generation"]["status"] == "failed"
    # a re-run resumes: the finished stage is skipped, the failed one runs again
    _nb(fake_notebooks / "02_generation.ipynb", "y = 2")
    m = pipeline.run("smoke", out_dir=str(out))
    assert m["stages"]["01_seeds"]["status"].startswith("skipped")
    assert m["stages"]["02_generation"]["status"] == "ok"


def test_unknown_stage_is_a_clear_error(fake_notebooks, tmp_path):
    with pytest.raises(ValueError, match="unknown stage"):
        pipeline.run("smoke", out_dir=str(tmp_path / "o"), only=["07_magic"])


def test_progress_lines_key_ignores_the_bar_width():
    """A closing redraw whose rate has one digit fewer draws a wider bar: still the same state, one line."""
    import io

    sink = io.StringIO()
    lines = progress._Lines(sink)
    lines.write("\rsteps: 100%|######| 5/5 [00:00<00:00, 11024.45it/s]")
    lines.write("\rsteps: 100%|#######| 5/5 [00:00<00:00, 9637.65it/s]")
    lines.write("\rsteps: 100%|#######| 5/5 [00:01<00:00, 9637.65it/s]")
    assert len(sink.getvalue().splitlines()) == 2
