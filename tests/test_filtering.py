"""Stage 03: validation, ROUGE-L, MinHash, decontamination, splits, export/loader and statistics."""

from __future__ import annotations

import json
import random

import pytest

from instructcoder_utils import filtering, stats
from instructcoder_utils.config import load_profile
from instructcoder_utils.dedup import Decontaminator, code_tokens, minhash_dedup
from instructcoder_utils.files import make_record, read_json, read_jsonl

FUNCS = ["load", "parse", "merge", "count", "render", "fetch", "store", "scale", "split", "clean"]
NOUNS = ["rows", "items", "users", "prices", "lines", "words", "nodes", "paths", "scores", "tags"]


def program(i: int) -> str:
    """A distinct small function per i (different names and bodies, so no accidental near-duplicates)."""
    f, n = FUNCS[i % 10], NOUNS[(i // 10) % 10]
    return (f"def {f}_{n}_{i}({n}, limit={i}):\n    total_{i} = 0\n    for v{i} in {n}:\n"
            f"        if v{i} > {i * 7 % 13}:\n            total_{i} += v{i} * {i}\n    return total_{i} - {i}\n")


def edited(code: str) -> str:
    return code.replace("    return", "    if not limit:\n        return None\n    return")


INSTR = [
    "Return None when the limit is zero in {f}.", "Make {f} stop early when the limit is zero.",
    "Guard against a zero limit at the start of {f}.", "Handle limit equal to zero inside {f} by returning None.",
    "Add an early exit to {f} for a falsy limit.", "Update {f} so a zero limit gives None.",
]


def good(i: int, source: str = "synth:guard") -> dict:
    code = program(i)
    words = [f"w{k}" for k in range(40)]  # random words keep the instructions ROUGE-L-distinct
    instr = INSTR[i % len(INSTR)].format(f=f"`{FUNCS[i % 10]}_{NOUNS[(i // 10) % 10]}_{i}`")
    instr += " Note: " + " ".join(random.Random(i).sample(words, 10)) + "."
    return make_record(f"r{i}", instr, code, edited(code), scenario=["finance", "web"][i % 2], source=source,
                       kind="guard", behaviour_change=True)


@pytest.fixture(scope="module")
def cfg():
    return load_profile("smoke")


@pytest.fixture(scope="module")
def tokenizer(smollm_dir):
    from instructcoder_utils.models import load_tokenizer

    return load_tokenizer("builtin:smollm2-135m-instruct")


def test_validation_reasons(tokenizer, cfg):
    ok = good(1)
    bad = {
        "empty_output": {**good(2), "output": "   "},
        "refusal": {**good(3), "output": "I'm sorry, but I cannot help with that.\n"},
        "input_equals_output": {**good(4), "output": program(4) + "\n"},
        "instruction_too_short": {**good(5), "instruction": "Fix."},
        "instruction_no_verb": {**good(6), "instruction": "Zero totals, and None for empty inputs."},
        "output_syntax_error": {**good(7), "output": "def broken(:\n    pass\n"},
        "output_too_long": {**good(8), "output": edited(program(8)) + "\n".join(f"x{j} = {j}" for j in range(400))},
    }
    kept, removed = filtering.validate([ok, *bad.values()], cfg.filtering.refusal_patterns, 3,
                                       max_output_tokens=200, tokenizer=tokenizer)
    assert [r["id"] for r in kept] == ["r1"]
    got = {r["id"]: why for r, why in removed}
    assert got == {rec["id"]: why for why, rec in bad.items()}
    # "cannot" inside code (an error message) is not a refusal
    code_ok = {**good(9), "output": edited(program(9)).replace("return None", "raise ValueError('limit cannot be 0')")}
    assert filtering.validate([code_ok], cfg.filtering.refusal_patterns)[0] == [code_ok]


def test_rouge_step_groups_instances_of_one_instruction():
    a, b, c = good(1), good(2), good(3)
    b["instruction"] = a["instruction"]  # a second scenario instance of the same instruction: kept
    c["instruction"] = a["instruction"].replace("zero", "0")  # a near-duplicate instruction: dropped
    d = {**good(4), "source": "seed", "instruction": a["instruction"] + " now"}
    kept, removed = filtering.rouge_novelty([a, b, c, d], 0.7, sources=["synth"])
    assert [r["id"] for r in kept] == ["r1", "r2", "r4"]  # d's source is not filtered
    assert [r["id"] for r, _ in removed] == ["r3"]
    kept, _ = filtering.rouge_novelty([a, b, c, d], 0.7, sources="all")
    assert [r["id"] for r in kept] == ["r1", "r2"]


def test_minhash_removes_planted_near_duplicates():
    codes = [program(i) for i in range(300)]
    planted = {}
    rng = random.Random(0)
    for _ in range(60):
        src = rng.randrange(300)
        planted[len(codes)] = src
        codes.append(codes[src].replace("    total", "    # a comment\n    total", 1) + "\n\n")
    res = minhash_dedup(codes, threshold=0.75, num_perm=128, shingle_size=5)
    assert all(not res.keep[i] and res.cluster_of[i] == s for i, s in planted.items())
    assert sum(res.keep) == 300
    assert sum(size * n for size, n in res.cluster_sizes().items()) == len(codes)
    # workers give the same signatures as one process
    assert minhash_dedup(codes, 0.75, workers=2).keep == res.keep
    assert code_tokens("x = 1  # comment\nY=2") == ["x", "=", "1", "y", "=", "2"]


def test_decontamination_names_the_task(editeval_path, cfg, tmp_path):
    tasks = read_jsonl(editeval_path)
    t = tasks[17]
    leaked = make_record("leak", "Tidy up this function for me please.", t["input"], t["output"], source="synth:x")
    leaked_instr = make_record("leak2", t["instruction"], program(1), edited(program(1)), source="synth:x")
    clean = good(2)
    own = tmp_path / "own.jsonl"
    own.write_text(json.dumps({"task_id": "own/0", "instruction": "Sort the numbers descending.",
                               "input": program(3), "output": edited(program(3)), "test": "", "context": ""}) + "\n")
    sets = {"EditEval": editeval_path, "own": own}
    kept, removed, matches = filtering.decontaminate([leaked, leaked_instr, clean, good(3)], sets,
                                                     cfg.filtering.decontamination)
    assert [r["id"] for r in kept] == ["r2"]
    by_id = {m["id"]: m for m in matches}
    assert by_id["leak"]["task_id"] == t["task_id"] and by_id["leak"]["rule"] == "code_ngram"
    assert by_id["leak2"]["task_id"] == t["task_id"] and by_id["leak2"]["rule"] == "instruction_ngram"
    assert by_id["r3"]["task_id"] == "own/0"
    dec = Decontaminator(10, 6)
    assert dec.match("anything", ["x = 1"]) == {"code": (0.0, None), "instruction": (0.0, None)}


def test_splits_are_deterministic_and_disjoint():
    recs = [good(i) for i in range(200)]
    a = filtering.split_records(recs, 0.1, 0.05, 6, seed=1)
    b = filtering.split_records(list(reversed(recs)), 0.1, 0.05, 6, seed=1)
    assert {k: sorted(r["id"] for r in v) for k, v in a.items()} == {k: sorted(r["id"] for r in v) for k, v in b.items()}
    assert (len(a["train"]), len(a["validation"]), len(a["test"])) == (174, 20, 6)
    ids = [r["id"] for v in a.values() for r in v]
    assert len(ids) == len(set(ids)) == 200
    c = filtering.split_records(recs, 0.1, 0.05, 6, seed=2)
    assert {r["id"] for r in c["test"]} != {r["id"] for r in a["test"]}
    tiny = filtering.split_records(recs[:3], 0.5, 0.5, None, seed=1)
    assert len(tiny["train"]) >= 1


def test_export_and_loader_roundtrip(tmp_path):
    splits = {"train": [good(i) for i in range(5)], "validation": [good(9)], "test": []}
    paths = filtering.export_instructcoder(splits, tmp_path / "export")
    rows = read_jsonl(paths["train"])
    assert set(rows[0]) == {"instruction", "input", "output"}
    back = filtering.load_instructcoder_jsonl(paths["train"])
    assert [(r["instruction"], r["input"], r["output"]) for r in back] == [
        (r["instruction"], r["input"], r["output"]) for r in splits["train"]]
    assert back[0]["id"] == "train-1" and back[0]["source"] == "instructcoder"
    # a published-style JSON list with extra keys, and a folder of jsonl files
    pub = tmp_path / "pub.json"
    pub.write_text(json.dumps([{"id": 7, "instruction": "Add x.", "input": "a=1", "output": "a=1\nx=2", "lang": "py"}]))
    r = filtering.load_instructcoder_jsonl(pub)[0]
    assert r["id"] == "7" and r["meta"]["lang"] == "py"
    assert len(filtering.load_instructcoder_jsonl(tmp_path / "export")) == 6
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"instruction": "x", "input": "y"}) + "\n")
    with pytest.raises(ValueError, match=r"bad.jsonl: row 1: missing or non-string output"):
        filtering.load_instructcoder_jsonl(bad)


def test_stats_measures():
    assert stats.edit_ratio("a\nb\nc", "a\nb\nc") == 0.0
    assert stats.edit_ratio("a\nb", "a\nc") == pytest.approx(2 / 3)
    assert stats.changed_lines("a\nb\nc", "a\nx\nc\nd") == 3
    assert stats.verb_object("Please add a docstring to parse.") == ("add", "docstring")
    assert stats.verb_object("Refactoring the loops into comprehensions") == ("refactor", "loop")
    assert stats.verb_object("In `foo`, replace the magic number") == ("replace", "magic")
    assert stats.has_verb("`f` should reject negatives") and not stats.has_verb("Zero totals for empty inputs")


def test_run_filtering_end_to_end(cfg, tokenizer, tmp_path, editeval_path):
    from datasets import load_from_disk

    tasks = read_jsonl(editeval_path)
    recs = [good(i) for i in range(60)]
    recs.append({**good(60), "output": recs[0]["input"], "input": recs[0]["input"]})  # input == output
    recs.append({**good(61), "input": recs[5]["input"] + "\n# trailing comment\n"})  # near-duplicate input
    recs.append(make_record("leak", "Clean up the code below please.", tasks[3]["input"], tasks[3]["output"] + "\n",
                            source="synth:x", kind="x"))
    report = filtering.run_filtering(recs, cfg, tmp_path, tokenizer=tokenizer, progress=False)
    steps = {s["step"]: s for s in report["steps"]}
    assert steps["validation"]["by_reason"] == {"input_equals_output": 1}
    assert steps["minhash"]["removed"] == 1 and steps["decontamination"]["removed"] == 1
    assert report["input"] == 63 and report["output"] == sum(report["final"].values())
    for s in report["steps"]:
        assert s["in"] - s["removed"] == s["out"]
    assert read_json(tmp_path / "filter_report.json")["final"] == report["final"]
    ds = load_from_disk(str(tmp_path / "dataset"))
    assert {k: len(v) for k, v in ds.items()} == report["final"]
    assert json.loads(ds["train"][0]["meta"])["kind"] == "guard"
    assert read_jsonl(tmp_path / "decontamination.jsonl")[0]["task_id"] == tasks[3]["task_id"]
    out = stats.describe(filtering.dataset_records(ds["train"]), tmp_path / "tables", tmp_path / "figures",
                         tokenizer=tokenizer, dpi=60)
    assert (tmp_path / "tables" / "lengths.md").is_file() and (tmp_path / "tables" / "verb_objects.csv").is_file()
    assert all(p.is_file() for p in out["figures"]) and len(out["figures"]) >= 5
    assert "sources" not in {p.stem for p in out["figures"]}  # the synthesizer is the one origin here
    assert out["tables"]["lengths"].set_index("field").loc["edit ratio", "mean"] > 0
