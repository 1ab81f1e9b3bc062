"""Every notebook is committed clean: valid, tagged parameters cell, no outputs, teaching text."""

from __future__ import annotations

import json

import nbformat
import pytest

from instructcoder_utils.config import STAGES
from instructcoder_utils.pipeline import notebook_for


@pytest.mark.parametrize("stage", STAGES)
def test_notebook_is_clean_and_parameterized(stage):
    path = notebook_for(stage)
    raw = json.loads(path.read_text())
    nb = nbformat.reads(json.dumps(raw), as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, f"{path.name}: no code cells"
    first = code[0]
    assert "parameters" in first.metadata.get("tags", []), f"{path.name}: first code cell lacks the parameters tag"
    for name in ("profile", "out_dir", "overrides"):
        assert f"{name} =" in first.source, f"{path.name}: parameters cell lacks {name}"
    assert any("start_stage(" in c.source for c in code), f"{path.name}: does not call start_stage"
    for c in code:
        assert c.get("outputs") == [], f"{path.name}: committed with outputs"
        assert c.get("execution_count") is None, f"{path.name}: committed with execution counts"
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# "), "opens with a title"
    assert nb.cells[-1].cell_type == "markdown", f"{path.name}: should end with what to look at"
