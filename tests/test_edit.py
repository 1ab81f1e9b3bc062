"""``instructcoder edit`` and notebook 05's "Try your own edit": the smoke run's real models on a small file,
every bad input refused before a model loads, and nothing written for an edit that does not parse."""

from __future__ import annotations

import difflib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from instructcoder_utils import cli
from instructcoder_utils.config import PARAMS_DIR
from instructcoder_utils.edit import Edit, Editor, form, program_with_test, run_test_file, study
from instructcoder_utils.files import read_json

CODE = '''def average(values):
    total = 0
    for v in values:
        total += v
    return total / len(values)
'''
INSTRUCTION = "Return 0.0 for an empty list instead of dividing by zero."


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "stats.py"
    path.write_text(CODE)
    return path


def _edit(capsys, *args: str) -> tuple[int, str, str]:
    rc = cli.main(["edit", *map(str, args)])
    got = capsys.readouterr()
    return rc, got.out, got.err


def _written_as_printed(path: Path, before: str, out: str) -> None:
    """The file and its .orig after --write: the original kept, the edit written, the diff printed the same."""
    orig = path.with_name(path.name + ".orig")
    if "unchanged" in out:
        assert path.read_text() == before and not orig.exists()
        return
    assert orig.read_text() == before
    after = path.read_text()
    assert after != before
    compile(after, str(path), "exec")  # only valid Python is written
    name = str(path)
    expected = "".join(difflib.unified_diff(before.splitlines(True), after.splitlines(True), name, name))
    assert out.startswith(expected), f"printed diff differs from what was written:\n{out}"


# --------------------------------------------------------------------------- bad input (no model loads)
def test_bad_input_is_one_line_and_exit_2(tmp_path, source, capsys):
    binary = tmp_path / "latin1.py"
    binary.write_bytes("s = 'café'\n".encode("latin-1"))
    untrained = tmp_path / "empty_run"
    untrained.mkdir()
    missing_adapter = tmp_path / "lost_run"
    (missing_adapter / "04_training").mkdir(parents=True)
    (missing_adapter / "04_training" / "runs.json").write_text(json.dumps(
        {"main": "main", "runs": [{"name": "main", "adapter": "04_training/main/adapter"}]}))
    cases = {
        "no such file": [tmp_path / "nope.py", "--instruction", INSTRUCTION, "--run", untrained],
        "not UTF-8": [binary, "--instruction", INSTRUCTION, "--run", untrained],
        "instruction is empty": [source, "--instruction", "  \n", "--run", untrained],
        "no trained model": [source, "--instruction", INSTRUCTION, "--run", untrained],
        "no trained weights": [source, "--instruction", INSTRUCTION, "--run", missing_adapter],
        "neither tuned, base": [source, "--instruction", INSTRUCTION, "--model", tmp_path / "weights"],
        "no such folder": [source, "--instruction", INSTRUCTION, "--run", tmp_path / "no_run"],
    }
    for why, args in cases.items():
        rc, out, err = _edit(capsys, *args, "--write")
        assert rc == 2, f"{why}: exit {rc}\n{err}"
        assert err.startswith("error: ") and err.count("\n") == 1 and why in err, f"{why}: {err!r}"
        assert out == ""
    assert source.read_text() == CODE and sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == [
        "latin1.py", "stats.py"]  # nothing written, no .orig


def test_write_keeps_an_existing_orig(tmp_path, source, capsys):
    orig = source.with_name("stats.py.orig")
    orig.write_text("an older original\n")
    rc, _, err = _edit(capsys, source, "--instruction", INSTRUCTION, "--model", "base", "--run", tmp_path, "--write")
    assert rc == 2 and "exists already" in err
    assert orig.read_text() == "an older original\n" and source.read_text() == CODE


def test_run_folder_brings_its_own_profile(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    assert study(run, None)[0].name == "tiny"  # no run.json: the default profile
    (run / "run.json").write_text(json.dumps({"profile": {"name": "mine", "evaluation": {"max_new_tokens": 7}}}))
    cfg, out = study(run, None)
    assert (cfg.name, cfg.evaluation.max_new_tokens, out) == ("mine", 7, run.resolve())
    assert study(run, "smoke")[0].name == "smoke"  # --profile wins


# --------------------------------------------------------------------------- the edit and its test (no model)
def test_edit_reports_unchanged_diffs_and_invalid_python():
    same = Edit("m", "chat_v1", CODE, CODE.rstrip() + "\n\n", "", 3, "stop")
    assert same.unchanged and same.problem is None and same.diff() == ""
    changed = Edit("m", "chat_v1", CODE, CODE.replace("total = 0", "total = 0.0"), "", 3, "stop")
    assert not changed.unchanged and "-    total = 0\n+    total = 0.0\n" in changed.diff("stats.py")
    assert "line 2" in Edit("m", "chat_v1", CODE, "def f():\nreturn 1\n", "", 3, "length").problem
    assert Edit("m", "chat_v1", CODE, "", "Sure, here it is", 3, "eos").problem == "the reply holds no code"


def test_test_file_runs_after_the_code_in_the_sandbox():
    fixed = CODE.replace("    total = 0\n", "    if not values:\n        return 0.0\n    total = 0\n")
    asserts = "assert average([1, 2, 3]) == 2\nassert average([]) == 0.0\n"
    check = "def check():\n    assert average([]) == 0.0\n"
    assert program_with_test(CODE, check).endswith("check()")  # EditEval's form: the call is added
    assert program_with_test(CODE, check + "check()\n").count("\ncheck()") == 1  # a test that calls it: as it is
    for test in (asserts, check):
        assert run_test_file(fixed, test, timeout=10).passed
        failed = run_test_file(CODE, test, timeout=10)
        assert failed.status == "failed" and "ZeroDivisionError" in failed.detail


# --------------------------------------------------------------------------- the smoke run's models
@pytest.mark.slow
def test_cli_edits_a_file_with_the_tuned_model(smoke_run, source, repo_root):
    out, _ = smoke_run
    proc = subprocess.run(
        [sys.executable, "-m", "instructcoder_utils.cli", "edit", str(source), "--instruction", INSTRUCTION,
         "--run", str(out), "--write"], capture_output=True, text=True, cwd=repo_root, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    main = read_json(out / "04_training" / "runs.json")["main"]
    assert f"tuned-{main} (prompt " in proc.stderr and "new tokens" in proc.stderr
    assert proc.stdout.startswith(f"--- {source}\n+++ {source}\n@@ ") or proc.stdout == f"{source}: the model returned the code unchanged\n"
    _written_as_printed(source, CODE, proc.stdout)


@pytest.mark.slow
@pytest.mark.parametrize("model", ["base", "04_training/frac0.5"])
def test_cli_edits_with_the_base_model_and_a_weights_folder(smoke_run, source, capsys, model):
    out, _ = smoke_run
    chosen = read_json(out / "05_evaluation" / "base_prompts.json")["best"]
    which = "base" if model == "base" else out / model
    rc, printed, err = _edit(capsys, source, "--instruction", INSTRUCTION, "--run", out, "--model", which, "--write")
    assert rc == 0, err
    label = f"base-{chosen} (prompt {chosen})" if model == "base" else "dir-frac0.5 (prompt "
    assert label in err, err
    _written_as_printed(source, CODE, printed)


@pytest.mark.slow
def test_cli_test_flag_reports_the_sandbox_verdict(smoke_run, source, tmp_path, capsys):
    out, _ = smoke_run
    test = tmp_path / "test_stats.py"
    test.write_text("assert average([1, 2, 3]) == 2\n")  # the input passes it; a broken edit would not
    rc, printed, err = _edit(capsys, source, "--instruction", INSTRUCTION, "--run", out, "--test", test, "--write")
    verdict = [line for line in printed.splitlines() if line.startswith(f"test {test}: ")]
    assert len(verdict) == 1, printed
    passed = verdict[0].endswith(": passed")
    assert rc == (0 if passed else 1), err
    if passed:
        _written_as_printed(source, CODE, printed)
        assert run_test_file(source.read_text(), test.read_text(), timeout=10).passed
    else:
        assert source.read_text() == CODE and "not written" in err


@pytest.mark.slow
def test_nothing_written_when_the_reply_does_not_parse(smoke_run, source, tmp_path, capsys):
    """Eight new tokens cannot hold the edited function: the reply is cut mid-line and must not be written."""
    out, _ = smoke_run
    profile = yaml.safe_load((PARAMS_DIR / "smoke.yaml").read_text())
    profile["evaluation"]["max_new_tokens"] = 8
    short = tmp_path / "short.yaml"
    short.write_text(yaml.safe_dump(profile))
    rc, printed, err = _edit(capsys, source, "--instruction", INSTRUCTION, "--run", out, "--profile", short, "--write")
    assert rc == 1, err
    assert "8 new tokens, cut at its token bound" in err or "holds no code" in err, err
    assert "is not valid Python" in err and "left as it was" in err
    assert source.read_text() == CODE and not source.with_name("stats.py.orig").exists()


@pytest.mark.slow
def test_form_button_edits_with_both_models(smoke_run, capsys):
    """A press of the form's button edits the text now in the form (outside a kernel its output is printed)."""
    out, _ = smoke_run
    cfg, _ = study(out, None)
    instruction, code, button, shown = form(Editor(cfg, out), INSTRUCTION, CODE).children
    code.value = CODE.replace("average", "mean")
    button.click()
    printed = capsys.readouterr().out
    base = read_json(out / "05_evaluation" / "base_prompts.json")["label"]
    main = read_json(out / "04_training" / "runs.json")["main"]
    assert f"== {base} " in printed and f"== tuned-{main} " in printed, printed
    assert "average" not in printed  # the text in the form, not the example it started with
    assert "mean(values)" in printed or printed.count("returned the code unchanged") == 2, printed
    instruction.value = " "
    button.click()
    assert "error: the instruction is empty" in capsys.readouterr().out


@pytest.mark.slow
def test_notebook_section_ran_under_papermill(smoke_run):
    """The smoke run executed notebook 05 with papermill: its last section edited the example with both models."""
    out, _ = smoke_run
    nb = json.loads((out / "notebooks" / "05_evaluation.ipynb").read_text())
    cells = [c for c in nb["cells"] if c["cell_type"] == "code"]
    compare = next(c for c in cells if "editor.compare(" in "".join(c["source"]))
    assert not [o for o in compare["outputs"] if o["output_type"] == "error"]
    result = next(o for o in compare["outputs"] if o["output_type"] == "execute_result")
    text, page = "".join(result["data"]["text/plain"]), "".join(result["data"]["text/html"])
    base = read_json(out / "05_evaluation" / "base_prompts.json")["label"]
    main = read_json(out / "04_training" / "runs.json")["main"]
    parts = text.split("== ")[1:]
    assert [p.split(" ")[0] for p in parts] == [base, f"tuned-{main}"], text
    for part in parts:
        assert "@@ " in part or "the model returned the code unchanged" in part, part
    assert page.count("<td") == 2 and base in page
    shown = next(c for c in cells if "edit.form(" in "".join(c["source"]))
    assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in shown["outputs"])
