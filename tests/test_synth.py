"""The procedural edit synthesizer: every kind produces instances and every instance passes its check."""

from __future__ import annotations

import json
import sysconfig
from collections import Counter
from pathlib import Path

import pytest

from instructcoder_utils.config import SynthConfig
from instructcoder_utils.synth import KINDS, check_record, scenario_for, source_files, synthesize
from instructcoder_utils.synth_kinds import STRUCT_EDITS
from instructcoder_utils.synth_programs import (
    FAMILIES,
    PROGRAM_KINDS,
    Aggregate,
    make_program_instance,
    run_checked,
)

STDLIB = Path(sysconfig.get_paths()["stdlib"])


@pytest.fixture(scope="module")
def full_run():
    """One realistic run over the whole standard library (the test module's one slow step)."""
    return synthesize(SynthConfig(max_instances=2000, workers=2), seed=7)


@pytest.mark.slow
def test_every_kind_produces_verified_instances(full_run):
    records, counts = full_run
    assert len(records) == 2000
    kinds = Counter(r["meta"]["kind"] for r in records)
    missing_struct = [e.kind for e in STRUCT_EDITS if kinds[e.kind] == 0]
    assert not missing_struct, f"structural kinds without instances: {missing_struct}"
    assert len(kinds) >= 20
    failures = [(r["meta"]["kind"], why) for r in records if (why := check_record(r))]
    assert not failures, failures[:10]
    for k, c in counts.items():
        assert c["kept"] == kinds[k], k


def test_every_program_kind_is_reachable_and_checked():
    """Walk program indices until every behaviour kind has appeared; each instance re-checks."""
    seen: dict[str, dict] = {}
    for i in range(4000):
        kind, inst, _ = make_program_instance(3, i)
        if inst and kind not in seen:
            seen[kind] = inst
        if len(seen) == len(PROGRAM_KINDS):
            break
    assert set(seen) == set(PROGRAM_KINDS)
    for kind, inst in seen.items():
        rec = {"input": inst["input"], "output": inst["output"], "instruction": inst["instruction"],
               "source": f"synth:{kind}", "meta": {**inst, "verified": "execution", "program_seed": 3,
                                                    "program_index": int(inst["variant"].rsplit(":", 1)[1])}}
        assert check_record(rec) is None, kind


def test_records_shape_and_mix(full_run):
    records, _ = full_run
    assert len({r["id"] for r in records}) == len(records)
    assert len({(r["input"], r["output"]) for r in records}) == len(records)
    for r in records[:300]:
        assert set(r) == {"id", "instruction", "input", "output", "scenario", "source", "meta"}
        assert r["source"] == f"synth:{r['meta']['kind']}" and r["meta"]["kind"] in KINDS
        assert isinstance(r["meta"]["behaviour_change"], bool) and r["meta"]["intent"] and r["meta"]["origin"]
        assert r["scenario"] and r["input"].strip() != r["output"].strip()
    share = sum(r["meta"]["behaviour_change"] for r in records) / len(records)
    assert 0.4 <= share <= 0.8, share
    # natural variety: many distinct opening verbs and scenarios, sizes from a few lines to dozens
    verbs = Counter(r["instruction"].split()[0].strip("`").lower() for r in records)
    assert len(verbs) >= 25, verbs.most_common(10)
    assert len({r["scenario"] for r in records}) >= 25
    sizes = [r["input"].count("\n") + 1 for r in records]
    assert min(sizes) <= 6 and max(sizes) >= 30


def test_no_editeval_task_is_copied(full_run, editeval_path):
    records, _ = full_run
    tasks = [json.loads(line) for line in editeval_path.read_text().splitlines() if line.strip()]
    inputs = {"".join(t["input"].split()) for t in tasks}
    instructions = {t["instruction"].strip().lower() for t in tasks}
    assert not any("".join(r["input"].split()) in inputs for r in records)
    assert not any(r["instruction"].strip().lower() in instructions for r in records)


def test_deterministic_and_independent_of_workers():
    dirs = [str(STDLIB / "json"), str(STDLIB / "email")]
    cfg1 = SynthConfig(source_dirs=dirs, max_instances=150, workers=1, program_share=0.5)
    cfg2 = SynthConfig(source_dirs=dirs, max_instances=150, workers=2, program_share=0.5)
    a, ca = synthesize(cfg1, seed=11)
    b, cb = synthesize(cfg2, seed=11)
    assert a == b and ca == cb
    c, _ = synthesize(cfg1, seed=12)
    assert [r["id"] for r in a] != [r["id"] for r in c]


def test_checker_rejects_wrong_instances(full_run):
    records, _ = full_run
    prog = next(r for r in records if r["meta"]["verified"] == "execution")
    struct = next(r for r in records if r["meta"]["kind"] == "rename_function")
    assert check_record({**prog, "output": prog["input"]}) == "unchanged"
    assert check_record({**prog, "output": prog["output"] + "\nx = 1\n"}) == "not_reproducible"
    assert check_record({**struct, "output": struct["output"] + "\n" + struct["meta"]["check"]["old"] + " = 1\n"}) == "check_failed"
    assert check_record({**struct, "output": "def broken(:\n"}) == "syntax"


def test_execution_check_catches_a_wrong_claim():
    """A behaviour edit claimed as a refactoring (or vice versa) fails; so does code that disagrees with its reference."""
    import random

    fam = next(f for f in FAMILIES if isinstance(f, Aggregate))
    rng = random.Random(0)
    names = fam.names(rng)
    old = {**fam.base(rng), "empty": "natural", "skip_none": False, "bug": False, "style": "each"}
    new = {**old, "skip_none": True}
    oc, nc = fam.render(dict(names), old), fam.render(dict(names), new)
    calls = fam.inputs(random.Random(1), names, old, new) + [(([1, None, 2],), {})]
    assert run_checked(fam, names, old, new, oc, nc, calls, True) is None
    assert run_checked(fam, names, old, new, oc, nc, calls, False) == "behaviour_changed"
    assert run_checked(fam, names, old, old, oc, nc, calls, True) == "reference_mismatch"


def test_every_edit_has_varied_phrasings():
    from instructcoder_utils.synth_programs import FAMILIES as fams

    for e in STRUCT_EDITS + [e for f in fams for e in f.edits]:
        assert len(e.phrasings) >= 4, e.kind
        assert len({p.split()[0] for p in e.phrasings}) >= 3, (e.kind, e.phrasings)


def test_scenarios_and_sources(tmp_path):
    assert scenario_for("email.message") == "email processing"
    assert scenario_for("http.client") == "web/networking"
    assert scenario_for("json.decoder") == scenario_for("csv") == "data serialization"
    assert scenario_for("somethingelse") == "general utilities"
    files = source_files(["stdlib"])
    assert files and not any(".test." in f".{m}." or m.startswith("idlelib") for m, _ in files)
    with pytest.raises(FileNotFoundError, match="source_dirs"):
        source_files([str(tmp_path / "missing")])
    with pytest.raises(ValueError, match="generation.synth.kinds"):
        synthesize(SynthConfig(kinds=["no_such_kind"], max_instances=5))


def test_custom_source_dir(tmp_path):
    (tmp_path / "shop.py").write_text(
        "import os\nimport sys\n\n\ndef totalPrice(items, rate=0.2):\n    result = []\n    for it in items:\n"
        "        result.append(it * (1 + rate))\n    print('done %s' % len(result))\n    return result\n"
    )
    cfg = SynthConfig(source_dirs=[str(tmp_path)], max_instances=10, program_share=0.0, max_function_lines=40)
    records, counts = synthesize(cfg, seed=1)
    kinds = {r["meta"]["kind"] for r in records}
    assert {"rename_function", "remove_unused_imports", "loop_to_comprehension", "print_to_logging"} <= kinds
    assert all(check_record(r) is None for r in records)
    assert all(r["meta"]["origin"].startswith("shop:") for r in records)


def _program_sample(seed: int = 3, per_family: int = 3) -> list[dict]:
    """The first instances of every family: two behaviour edits and one refactoring where it has one."""
    got: dict[tuple[str, bool], list[dict]] = {}
    for i in range(600):
        _, inst, _ = make_program_instance(seed, i)
        if inst is None:
            continue
        key = (inst["family"], inst["behaviour_change"])
        if len(got.setdefault(key, [])) < (per_family - 1 if key[1] else 1):
            got[key].append(inst)
    return [x for v in got.values() for x in v]


def test_program_tests_pass_on_output_and_fail_on_input_in_the_sandbox():
    """Each program instance's test, run exactly as EditEval's harness runs it (real sandbox): the
    reference output passes; the input fails when the edit changes behaviour and passes a refactoring."""
    import ast

    from instructcoder_utils.sandbox import Sandbox, evaluate_samples

    sample = _program_sample()
    assert {x["family"] for x in sample} == {f.name for f in FAMILIES}
    assert any(not x["behaviour_change"] for x in sample) and sum(x["behaviour_change"] for x in sample) >= 15
    tasks = []
    for j, x in enumerate(sample):
        assert "def check" in x["test"] and "test_dropped" not in x, x["variant"]
        cases = next(n.value for n in ast.parse(x["test"]).body
                     if isinstance(n, ast.Assign) and n.targets[0].id == "_IC_CASES")
        src = ast.get_source_segment(x["test"], cases)
        assert repr(ast.literal_eval(src)) == src  # expected values are plain Python literals
        tasks.append({"task_id": str(j), "test": x["test"]})
    samples = ([{"task_id": str(j), "output": x["output"], "want": True, "v": x["variant"]} for j, x in enumerate(sample)]
               + [{"task_id": str(j), "output": x["input"], "want": not x["behaviour_change"], "v": x["variant"]}
                  for j, x in enumerate(sample)])
    rows = evaluate_samples(tasks, samples, timeout=10, workers=2, progress=False, sandbox=Sandbox(timeout=10))
    wrong = [(r["v"], r["want"], r["status"], r["detail"][-200:]) for r in rows if r["passed"] != r["want"]]
    assert not wrong, wrong[:3]
    assert all(r["status"] == "failed" for r in rows if not r["want"])  # an assertion, not a crash or timeout


def test_program_tests_reach_the_test_split_and_structural_ones_have_none():
    """Synthesized records keep meta.test through the DatasetDict (meta as JSON) into evaluation tasks."""
    from instructcoder_utils.evaluate import _record_to_task
    from instructcoder_utils.filtering import split_records, to_dataset_dict

    cfg = SynthConfig(source_dirs=[str(STDLIB / "json")], max_instances=120, workers=1, program_share=0.5)
    records, counts = synthesize(cfg, seed=5)
    prog = {r["id"] for r in records if r["meta"]["verified"] == "execution"}
    assert prog and len(prog) < len(records)
    with_test = sum(c.get("with_test", 0) for c in counts.values())
    dropped = sum(n for c in counts.values() for k, n in c.items() if k.startswith("test_dropped:"))
    assert with_test + dropped == len(prog) and with_test >= 0.9 * len(prog)
    ds = to_dataset_dict(split_records(records, 0.1, 0.5, None, seed=0))
    assert not any("test" in r["meta"] for r in records if r["id"] not in prog)  # structural: exact match
    has_test = {r["id"]: "test" in r["meta"] for r in records}
    tasks = [_record_to_task(r) for r in ds["test"]]
    assert tasks and all(bool(t["test"]) == has_test[t["task_id"]] for t in tasks)
    assert any(t["test"] for t in tasks) and any(not t["test"] for t in tasks)


def test_one_phrasing_says_each_edit_its_first_way(tmp_path):
    """The phrasing ablation's data: the same instance (code, edits, checks) with each edit said in its
    first phrasing. Program instances are regenerated with the same random draws; structural ones keep
    their fields; a record the synthesizer did not make keeps its instruction."""
    from instructcoder_utils.synth import one_phrasing
    from instructcoder_utils.synth_kinds import STRUCT_BY_KIND

    def said_first(text: str, edits) -> bool:
        return any(text.lower().startswith(e.phrasings[0].split("{")[0].lower()) for e in edits)

    fams, changed = {f.name: f for f in FAMILIES}, 0
    for i in range(300):
        _, inst, _ = make_program_instance(5, i)
        _, first, _ = make_program_instance(5, i, first_phrasing=True)
        if inst is None:
            assert first is None
            continue
        assert {**first, "instruction": ""} == {**inst, "instruction": ""}
        meta = json.dumps({**inst, "verified": "execution", "program_seed": 5, "program_index": i})
        assert one_phrasing({"instruction": inst["instruction"], "meta": meta}) == first["instruction"]
        changed += first["instruction"] != inst["instruction"]
        if not inst["also"]:
            assert said_first(first["instruction"], [e for e in fams[inst["family"]].edits if e.kind == inst["kind"]])
    assert changed > 150  # three in four are said another way first (four phrasings per edit)

    (tmp_path / "shop.py").write_text(
        "import os\nimport sys\n\n\ndef totalPrice(items, rate=0.2):\n    result = []\n    for it in items:\n"
        "        result.append(it * (1 + rate))\n    print('done %s' % len(result))\n    return result\n"
    )
    records, _ = synthesize(SynthConfig(source_dirs=[str(tmp_path)], max_instances=10, program_share=0.0), seed=1)
    for r in records:
        new = one_phrasing(r)
        assert said_first(new, STRUCT_BY_KIND[r["meta"]["kind"]]), (r["instruction"], new)
        assert one_phrasing({**r, "instruction": new}) == new
    assert one_phrasing({"instruction": "Make it faster.", "meta": "{}"}) == "Make it faster."


def test_one_scenario_writes_each_program_for_its_familys_first_domain():
    """The scenario ablation's data: the same edit of the same program, written for the family's first
    domain; an instance already there is unchanged, and refactorings keep theirs."""
    from instructcoder_utils.synth import one_scenario

    fams, moved, same_edit = {f.name: f for f in FAMILIES}, 0, 0
    for i in range(200):
        _, inst, _ = make_program_instance(5, i)
        if inst is None:
            continue
        meta = {**inst, "verified": "execution", "program_seed": 5, "program_index": i}
        new = one_scenario({**inst, "meta": json.dumps(meta)})
        first = fams[inst["family"]].domains[0][0]
        if new is None:
            continue
        assert new["scenario"] == first
        _, again, _ = make_program_instance(5, i, first_domain=True)
        assert again["kind"] == inst["kind"]
        if inst["scenario"] == first:
            assert again == inst
        moved += new["input"] != inst["input"]
        same_edit += (again["also"], again["intent"]) == (inst["also"], inst["intent"])
    assert moved > 100 and same_edit > 180
    struct = {"instruction": "Add type hints.", "input": "a", "output": "b", "scenario": "x", "meta": {"kind": "k"}}
    assert one_scenario(struct) == {k: struct[k] for k in ("instruction", "input", "output", "scenario")}
