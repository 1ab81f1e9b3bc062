"""Response formats: the search/replace (changed-region) format round-trips every kind of edit the
synthesizer makes, and replies a model might write are read the way a reader would."""

from __future__ import annotations

import pytest

from instructcoder_utils.config import SynthConfig
from instructcoder_utils.prompts import (
    DIVIDER,
    REPLACE,
    SEARCH,
    TEMPLATES,
    apply_diff,
    cut_reply,
    edited_program,
    extract_code,
    fingerprint,
    get_template,
    looping,
    make_diff,
    render_response,
)
from instructcoder_utils.synth import synthesize


def _fenced(body: str) -> str:
    return f"```python\n{body}\n```"


def test_diff_round_trips_on_synthesized_edits():
    """Every synthesized instance: applying the blocks made from (input, output) gives the output."""
    rows, counts = synthesize(SynthConfig(max_instances=400, workers=1), seed=7)
    assert len([k for k, n in counts.items() if n]) > 20
    for r in rows:
        reply = render_response("chat_diff_v1", r["output"], r["input"])
        assert apply_diff(r["input"], reply).rstrip("\n") == r["output"].rstrip("\n"), r["instruction"]


@pytest.mark.parametrize("before, after", [
    ("a = 1\nb = 2\nc = 3\n", "a = 1\nb = 20\nc = 3\n"),          # one line changed
    ("x = 1\nx = 1\ny = 2\n", "x = 1\nx = 1\ny = 3\n"),           # search text widened until unique
    ("def f():\n    return 1\n", "import os\n\ndef f():\n    return 1\n"),  # pure insertion at the top
    ("import sys\n\n\ndef f():\n    pass\n", "def f():\n    pass\n"),       # deletion with blank lines
    ("a\nb\nc\nd\ne\nf\n", "A\nb\nc\nd\ne\nF\n"),                   # two separate blocks
])
def test_make_and_apply_diff(before, after):
    diff = make_diff(before, after)
    assert diff.count(SEARCH) == diff.count(DIVIDER) == diff.count(REPLACE) >= 1
    assert apply_diff(before, _fenced(diff)) == after


def test_apply_diff_tolerates_what_small_models_write():
    before = "def f(x):\n    if x:\n        return 1\n    return 0\n"
    loose = f"{SEARCH}\n    if x:   \n{DIVIDER}\n    if x is not None:\n{REPLACE}"  # trailing spaces
    assert "if x is not None:" in apply_diff(before, _fenced(loose))
    nowhere = f"{SEARCH}\n    while y:\n{DIVIDER}\n    pass\n{REPLACE}"
    assert apply_diff(before, _fenced(nowhere)) == before  # a block that matches nowhere changes nothing
    assert apply_diff(before, "no blocks here") is None


def test_edited_program_reads_each_format():
    before = "a = 1\nb = 2\n"
    diff_reply = _fenced(make_diff(before, "a = 1\nb = 3\n")) + "<|im_end|>"
    assert edited_program("chat_diff_v1", diff_reply, before) == "a = 1\nb = 3\n"
    assert edited_program("chat_diff_v1", _fenced("a = 5"), before) == "a = 5\n"  # whole program instead
    assert edited_program("chat_v1", _fenced("a = 5"), before) == "a = 5\n"


@pytest.mark.parametrize("name", [n for n, t in TEMPLATES.items() if t.edit_format == "whole"])
def test_a_reply_in_the_template_format_gives_back_its_program(name):
    """The response a template trains (and what a model writes in its format), followed by what a model
    writes after it, is cut at its end and read back as the program."""
    program = "def area(w, h):\n    \"\"\"Area.\"\"\"\n\n\n    return w * h\n"
    reply = render_response(name, program) + "\n\n\n\n### Next task\nSure! Here is more:\n```python\nx = 1\n```\n"
    assert extract_code(cut_reply(name, reply)) == program


def test_template_fingerprint_is_stable_for_whole_program_templates():
    """Cache keys of the whole-program templates did not change when the edit format was added."""
    t = get_template("chat_v1")
    assert "edit_format" not in fingerprint(t)
    assert "diff" in fingerprint(get_template("chat_diff_v1"))


def test_looping_stops_repeated_blocks_the_input_does_not_have():
    src = "def f(x):\n    return x\n"
    loop = "```python\ndef f(x):\n" + "    if x:\n        return\n" * 3
    assert looping(loop, src)                          # a 2-line block written three times
    assert not looping(loop, src, repeats=4)           # ... but not four
    assert not looping(loop.rstrip("\n"), src)        # a line not yet complete does not count (2 repeats)
    assert looping(loop + "    ", src)                 # a token of newline + indent: the lines before it count
    assert not looping("x = 1\n" * 3, "a\nx = 1\nx = 1\nx = 1\n")  # the input repeats it too
    assert looping("x = 1\n" * 3, "x = 1\n")
    assert not looping("\n\n\n\n", "")              # blank lines are no loop
    assert not looping(loop, src, max_block=1)         # blocks longer than max_block are not looked for
