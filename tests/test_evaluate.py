"""Stage 05: code extraction on real replies, stopping, generation with the real model and resume,
scoring and metrics, base-vs-tuned comparison, and the LLM judge against a scripted real server."""

from __future__ import annotations

import ast
import json
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from instructcoder_utils import evaluate as E
from instructcoder_utils import judge as J
from instructcoder_utils.config import load_profile
from instructcoder_utils.files import read_json, read_jsonl, write_json, write_jsonl
from instructcoder_utils.prompts import FENCE, cut_reply, extract_code, reply_end

DATA = Path(__file__).parent / "data"


# --------------------------------------------------------------------------- extraction and stopping
def test_extract_code_on_real_model_replies():
    """Replies the built-in model actually wrote (tests/data/eval_replies.jsonl, every base prompt):
    the extracted program is what a reader takes from the reply, has no fence or chat token left."""
    rows = read_jsonl(DATA / "eval_replies.jsonl")
    assert len(rows) >= 8 and len({r["template"] for r in rows}) >= 3
    for r in rows:
        code = extract_code(r["reply"])
        assert FENCE not in code and "<|im_end|>" not in code, r["reply"]
        assert code == r["expected"], (r["task_id"], r["template"])


@pytest.mark.parametrize("reply, expected", [
    ("```python\ndef f():\n    return 1\n```", "def f():\n    return 1\n"),
    ("Sure! Here it is:\n```python\nx = 1\n```\nThis sets x to one.", "x = 1\n"),
    ("```python\nx = 1\ny = 2", "x = 1\ny = 2\n"),  # cut before the closing fence
    ("```\nx = 1\n```", "x = 1\n"),
    ("def f(a):\n    return a + 1\n\nThis function now adds one to its argument.", "def f(a):\n    return a + 1\n"),
    ("x = 1<|im_end|>", "x = 1\n"),
    ("", ""),
])
def test_extract_code_shapes(reply, expected):
    assert extract_code(reply) == expected


def test_reply_end_stops_at_closing_fence_only():
    assert reply_end("chat_v1", "```python\nx = 1\n") is None
    text = "```python\nx = 1\n```\nand some prose"
    assert cut_reply("chat_v1", text) == "```python\nx = 1\n```"
    prose_then_fence = "Here you go:\n```\nx = 1\n"  # an opening fence after prose is not the end
    assert reply_end("chat_v1", prose_then_fence) is None
    assert cut_reply("alpaca_v1", "x = 1\n### Instruction: more") == "x = 1"
    assert reply_end("plain_v1", "def a():\n    pass\n\n\ndef b():\n    pass\n") is None  # PEP 8 blank lines


@pytest.mark.slow
@pytest.mark.parametrize(("room", "waste"), [(64, 0.15), (3, 0.0)])
def test_continuous_batching_matches_generate(smollm_dir, monkeypatch, room, waste):
    """Greedy replies from continuous batching (rows leave at their bound, new prompts join a running
    batch with a cache of another length) are the replies ``model.generate`` writes one prompt at a time,
    whether a step writes into the cache's spare columns or (``room`` 3) often has to regrow it first,
    and whether admitted prompts are prefilled together or (``waste`` 0) in runs of one length each."""
    import torch

    from instructcoder_utils import decoding
    from instructcoder_utils.decoding import continuous_generate
    from instructcoder_utils.models import load_model, load_tokenizer

    monkeypatch.setattr(decoding, "ROOM", room)
    monkeypatch.setattr(decoding, "PAD_WASTE", waste)

    tok = load_tokenizer("builtin:smollm2-135m-instruct")
    model = load_model("builtin:smollm2-135m-instruct", dtype="fp32", device="cpu").eval()
    texts = ["def add(a, b):", "Write a haiku about the sea.", "x = [1, 2, 3]\nprint(", "Name three colours.",
             "class Stack:\n    def __init__(self):", "import os\n"]
    prompts = [tok.apply_chat_template([{"role": "user", "content": t}], tokenize=False, add_generation_prompt=True)
               for t in texts]
    ids = [tok(p, add_special_tokens=False).input_ids for p in prompts]
    limits = [6, 20, 9, 14, 4, 11]
    got = {r.index: r for r in continuous_generate(model, ids, limits, eos_id=tok.eos_token_id, batch_size=3)}
    assert sorted(got) == list(range(len(ids)))
    for i, p in enumerate(ids):
        with torch.inference_mode():
            out = model.generate(torch.tensor([p]), max_new_tokens=limits[i], do_sample=False,
                                 pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
        ref = out[0, len(p):].tolist()
        ref = ref[:-1] if ref[-1] == tok.eos_token_id else ref
        assert got[i].ids == ref, (i, tok.decode(got[i].ids), tok.decode(ref))
        assert got[i].reason == ("length" if len(ref) == limits[i] else "eos")


def test_length_chunks_bound_the_padding_and_keep_order():
    """Prompts taken longest first are prefilled in consecutive runs whose padding stays within the bound."""
    from instructcoder_utils.decoding import length_chunks

    lengths = [400, 390, 380, 200, 100, 99, 98, 97, 96, 30]
    runs = length_chunks(lengths, 0.15)
    assert [i for r in runs for i in r] == list(range(len(lengths)))  # every prompt once, in order
    for r in runs:
        part = [lengths[i] for i in r]
        assert len(part) == 1 or part[0] * len(part) <= 1.15 * sum(part)
    assert [list(r) for r in runs] == [[0, 1, 2], [3], [4, 5, 6, 7, 8], [9]]
    assert length_chunks([], 0.15) == [] and length_chunks([7, 7, 7], 0.0) == [range(0, 3)]
    assert len(length_chunks(lengths, float("inf"))) == 1  # no bound: one padded batch


def test_continuous_batching_stop_rule_and_sampling(smollm_dir):
    """The caller's stop rule ends a row where it says; sampling is seeded (same seed, same replies)."""
    from instructcoder_utils.decoding import continuous_generate
    from instructcoder_utils.models import load_model, load_tokenizer

    tok = load_tokenizer("builtin:smollm2-135m-instruct")
    model = load_model("builtin:smollm2-135m-instruct", dtype="fp32", device="cpu").eval()
    ids = [tok("Count: 1, 2, 3,", add_special_tokens=False).input_ids, tok("Hello", add_special_tokens=False).input_ids]
    rows = list(continuous_generate(model, ids, [30, 30], eos_id=tok.eos_token_id, batch_size=2,
                                    is_done=lambda i, new: i == 0 and len(new) == 3))
    first = next(r for r in rows if r.index == 0)
    assert first.reason == "stop" and len(first.ids) == 3
    named = list(continuous_generate(model, ids, [30, 30], eos_id=tok.eos_token_id, batch_size=2,
                                     is_done=lambda i, new: "loop" if i == 1 and len(new) == 2 else None))
    assert next(r for r in named if r.index == 1).reason == "loop"  # a string names the reason
    runs = [[r.ids for r in sorted(continuous_generate(model, ids, [8, 8], eos_id=tok.eos_token_id, batch_size=2,
                                                        temperature=0.9, top_p=0.9, seed=5), key=lambda r: r.index)]
            for _ in range(2)]
    assert runs[0] == runs[1]


def test_decoding_bounds_new_tokens_by_input():
    d = E.Decoding(max_new_tokens=384, factor=1.5, slack=64)
    assert d.bound(10) == 79 and d.bound(1000) == 384


def test_over_bound_names_references_longer_than_their_bound():
    """A reference that adds many lines to a one-line input is longer than the bound its input gets; one
    as long as its input is not; a larger slack admits it. Whitespace words stand in for tokens."""
    d = E.Decoding(max_new_tokens=384, factor=1.5, slack=8)
    words = lambda text: len(text.split())  # noqa: E731
    grow = {"task_id": "grow", "input": "x = 1", "output": "\n".join(f"y{i} = {i}" for i in range(10))}
    same = {"task_id": "same", "input": "x = 1", "output": "x = 2"}
    assert E.over_bound([grow, same], d, "chat_v1", words) == ["grow"]
    assert E.over_bound([grow, same], replace(d, slack=64), "chat_v1", words) == []
    assert E.over_bound([grow], replace(d, max_new_tokens=20, slack=64), "chat_v1", words) == ["grow"]


# --------------------------------------------------------------------------- generation with the real model
@pytest.fixture
def tiny_cfg():
    return load_profile("smoke", {"evaluation": {"max_new_tokens": 40, "batch_size": 2, "sets": ["own"],
                                                 "base_prompts": ["chat_v1"], "limit": 2}})


@pytest.mark.slow
def test_generate_score_and_resume(tiny_cfg, tmp_path, smollm_dir):
    """Real SmolLM2 on 2 own tasks: rows appended, executed in the sandbox, metrics written; a second
    call generates nothing and gives the same metrics."""
    sets = E.load_sets(tiny_cfg, tmp_path)
    spec = E.base_specs(tiny_cfg)[0]
    m1 = E.evaluate_model(tiny_cfg, tmp_path, spec, sets, progress=False)["own"]
    rows = read_jsonl(tmp_path / spec.label / "samples.jsonl")
    assert len(rows) == 2 and m1["generation"]["generated"] == 2
    for r in rows:
        assert r["new_tokens"] <= 40 and r["stop"] in ("stop", "eos", "length", "loop")
    results = read_jsonl(tmp_path / spec.label / "results.jsonl")
    assert {r["scoring"] for r in results} == {"execution"}
    assert {r["status"] for r in results} <= {"passed", "failed", "timeout"}
    m2 = E.evaluate_model(tiny_cfg, tmp_path, spec, sets, progress=False)["own"]
    assert m2["generation"]["generated"] == 0 and m2["generation"]["cached"] == 2
    assert m2["generation"]["stops"] == m1["generation"]["stops"]  # counted over the scored replies, cached too
    assert sum(m2["generation"]["stops"].values()) == 2
    assert len(read_jsonl(tmp_path / spec.label / "samples.jsonl")) == 2
    assert m2["pass@1"] == m1["pass@1"]
    assert read_json(tmp_path / spec.label / "metrics.json")["sets"]["own"]["tasks"] == 2


@pytest.mark.slow
def test_one_stream_for_many_prompts_writes_what_separate_calls_write(tiny_cfg, tmp_path, smollm_dir):
    """Two prompt templates on two sets' tasks in one continuous batch: each reply lands in its own
    model's store, equal (greedy) to the reply a call per template and set writes; the stats are per set."""
    sets = E.load_sets(tiny_cfg, tmp_path)
    tasks = sets["own"]
    halves = {"a": tasks[:1], "b": tasks[1:]}
    specs = [E.ModelSpec(f"base-{t}", tiny_cfg.training.base_model, t) for t in ("chat_v1", "alpaca_v1")]
    d = E.decoding_from(tiny_cfg)
    gen = E.HFGenerator(specs[0], "fp32", 2)
    plan = [(s, name, ts) for s in specs for name, ts in halves.items()]
    together = E.generate_hf(gen, plan, d, {s.label: E.store_for(tmp_path / "one", s) for s in specs}, 4, False)
    assert set(together) == {(s.label, n) for s in specs for n in halves}
    assert all(st["generated"] == 1 and st["cached"] == 0 for st in together.values())
    for s in specs:
        for name, ts in halves.items():
            E.generate_hf(gen, [(s, name, ts)], d, {s.label: E.store_for(tmp_path / "apart", s)}, 1, False)
        one = {r["key"]: (r["set"], r["reply"]) for r in read_jsonl(tmp_path / "one" / s.label / "samples.jsonl")}
        apart = {r["key"]: (r["set"], r["reply"]) for r in read_jsonl(tmp_path / "apart" / s.label / "samples.jsonl")}
        assert one == apart and len(one) == 2
    again = E.generate_hf(gen, plan, d, {s.label: E.store_for(tmp_path / "one", s) for s in specs}, 4, False)
    assert all(st["generated"] == 0 and st["cached"] == 1 for st in again.values())
    tuned = E.ModelSpec("tuned", tiny_cfg.training.base_model, "chat_v1", adapter=str(tmp_path))
    with pytest.raises(ValueError, match="one model at a time"):
        E.generate_hf(gen, [(tuned, "a", halves["a"])], d, {"tuned": E.store_for(tmp_path, tuned)}, 4, False)


def test_sample_store_survives_a_cut_line(tmp_path):
    path = tmp_path / "samples.jsonl"
    path.write_text(json.dumps({"key": "a", "reply": "x"}) + "\n" + '{"key": "b", "rep')
    store = E.SampleStore(path)
    assert "a" in store and "b" not in store
    store.add([{"key": "b", "reply": "y"}])
    assert [r["key"] for r in read_jsonl(path)] == ["a", "b"]


def test_cache_key_changes_with_what_matters(tiny_cfg):
    task = {"instruction": "do it", "input": "x = 1\n"}
    spec = E.ModelSpec("base-chat_v1", "builtin:smollm2-135m-instruct", "chat_v1")
    d = E.decoding_from(tiny_cfg)
    k = E.sample_key(spec.identity(), d, "fp32", task, 0)
    assert k == E.sample_key(spec.identity(), d, "fp32", dict(task), 0)
    other = E.ModelSpec("base-plain_v1", "builtin:smollm2-135m-instruct", "plain_v1")
    assert k != E.sample_key(other.identity(), d, "fp32", task, 0)
    assert k != E.sample_key(spec.identity(), E.Decoding(max_new_tokens=41), "fp32", task, 0)
    assert k != E.sample_key(spec.identity(), d, "fp32", {**task, "input": "x = 2\n"}, 0)
    off = replace(d, loop_repeats=0)
    assert d.loop_repeats and k != E.sample_key(spec.identity(), off, "fp32", task, 0)
    old = {f: v for f, v in asdict(off).items() if f != "loop_repeats"}  # off: the key from before the guard
    assert E.sample_key(spec.identity(), off, "fp32", task, 0) == E._sha(spec.identity(), old, "fp32", E.task_hash(task), 0)


# --------------------------------------------------------------------------- scoring and metrics
def test_edit_ratio_and_bins():
    assert E.edit_ratio("a\nb\n", "a\nb\n") == 0.0
    assert E.edit_ratio("a\nb\n", "a\nc\n") == pytest.approx(2 / 3)
    assert E.ratio_bin(0.0) == "0.0-0.2" and E.ratio_bin(1.0) == "0.8-1.0"


def test_score_set_executes_tests_and_matches_when_no_tests(tmp_path):
    tasks = [
        {"task_id": "T/0", "instruction": "add one", "input": "def f(x):\n    return x\n",
         "output": "def f(x):\n    return x + 1\n", "test": "def check():\n    assert f(1) == 2\n", "context": ""},
        {"task_id": "T/1", "instruction": "rename", "input": "a = 1\n", "output": "b = 1\n", "test": None, "context": ""},
        {"task_id": "T/2", "instruction": "rename", "input": "a = 1\n", "output": "b = 1\n", "test": None, "context": ""},
    ]
    samples = [
        {"task_id": "T/0", "sample": 0, "reply": "```python\ndef f(x):\n    return x + 1\n```"},
        {"task_id": "T/1", "sample": 0, "reply": "```python\nb   =   1\n```"},  # same AST as the reference
        {"task_id": "T/2", "sample": 0, "reply": "a = 1"},  # unchanged
    ]
    cache = E.ExecCache(tmp_path / "exec.jsonl")
    res = E.score_set(tasks, samples, cache, timeout=10, workers=1, progress=False)
    assert [r["scoring"] for r in res] == ["execution", "exact_match", "exact_match"]
    assert [r["passed"] for r in res] == [True, True, False]
    assert [r["unchanged"] for r in res] == [False, False, True]
    m = E.set_metrics(res)
    assert m["pass@1"] == pytest.approx(200 / 3) and m["unchanged"] == 1
    assert sum(b["samples"] for b in m["by_edit_ratio"].values()) == 3
    # executed once: the verdict is cached and reused
    assert len(read_jsonl(tmp_path / "exec.jsonl")) == 1
    again = E.score_set(tasks[:1], samples[:1], cache, timeout=10, workers=1, progress=False)
    assert again[0]["passed"] and len(read_jsonl(tmp_path / "exec.jsonl")) == 1


def test_compare_mcnemar_and_scores(tmp_path):
    base = {f"t{i}": i < 2 for i in range(12)}
    tuned = {f"t{i}": i < 1 or 2 <= i < 10 for i in range(12)}
    c = E.compare(base, tuned)
    assert c["gained"] == sorted(f"t{i}" for i in range(2, 10)) and c["lost"] == ["t1"]
    assert c["both"] == 1 and c["neither"] == 2
    from scipy.stats import binomtest

    assert c["mcnemar_exact_p"] == pytest.approx(binomtest(8, 9, 0.5).pvalue, abs=1e-6)
    # scores.json from the per-model files
    sets = {"own": [{"task_id": t} for t in base]}
    for label, verdicts in (("base-chat_v1", base), ("tuned-main", tuned)):
        rows = [{"set": "own", "task_id": t, "sample": 0, "passed": v, "status": "passed" if v else "failed",
                 "scoring": "execution", "unchanged": False, "empty": False, "edit_ratio": 0.5, "output": ""}
                for t, v in verdicts.items()]
        write_jsonl(tmp_path / label / "results.jsonl", rows)
        write_json(tmp_path / label / "metrics.json", {"model": label, "sets": {"own": E.set_metrics(rows)}})
    tuned_m = read_json(tmp_path / "tuned-main" / "metrics.json")["sets"]
    base_rep = {"label": "base-chat_v1", "best": "chat_v1", "selection_set": "own", "pass@1": {}}
    out = E.write_scores(tmp_path, sets, base_rep, {"main": "tuned-main", "template": "chat_v1", "sets": tuned_m})
    s = read_json(tmp_path / "scores.json")["sets"]["own"]
    assert s == {**s, "base": pytest.approx(100 * 2 / 12, abs=0.01), "tuned": pytest.approx(100 * 9 / 12, abs=0.01),
                 "n": 12}
    assert out["comparison"]["own"]["gained"] == c["gained"]


def test_compare_with_several_samples_uses_every_sample(tmp_path):
    """Sampled decoding: a task is gained when the tuned model passes more of its samples. Judged on sample
    0 alone, t0 (first samples fail for both) would be a tie and t1 a loss."""
    verdicts = {"base-chat_v1": {"t0": [0, 1, 0, 0, 0], "t1": [1, 0, 0, 0, 0], "t2": [0] * 5, "t3": [1] * 5},
                "tuned-main": {"t0": [0, 1, 1, 1, 1], "t1": [0, 1, 1, 0, 0], "t2": [0] * 5, "t3": [1] * 5}}
    for label, per_task in verdicts.items():
        write_jsonl(tmp_path / label / "results.jsonl",
                    [{"set": "own", "task_id": t, "sample": i, "passed": bool(v), "output": f"{label} {t} {i}"}
                     for t, vs in per_task.items() for i, v in enumerate(vs)])
    shares = E._per_task(tmp_path, "tuned-main", "own")
    assert shares == {"t0": 0.8, "t1": 0.4, "t2": 0.0, "t3": 1.0}
    c = E.compare(E._per_task(tmp_path, "base-chat_v1", "own"), shares)
    assert c["gained"] == ["t0", "t1"] and c["lost"] == [] and c["both"] == 1 and c["neither"] == 1
    assert c["mcnemar_exact_p"] == 0.5
    # the flipped examples show a passing sample of the winner and a failing one of the other model
    write_json(tmp_path / "comparison.json", {"own": c})
    sets = {"own": [{"task_id": t, "instruction": "", "input": ""} for t in ("t0", "t1", "t2", "t3")]}
    flips = E.flipped_examples(tmp_path, sets, "base-chat_v1", "tuned-main", "own")
    assert [(f["task_id"], f["base"], f["tuned"]) for f in flips] == [
        ("t0", "base-chat_v1 t0 0", "tuned-main t0 1"), ("t1", "base-chat_v1 t1 1", "tuned-main t1 1")]


# --------------------------------------------------------------------------- the LLM judge
def test_parse_verdicts():
    assert J.parse_verdict('Verdict:\n```json\n{"correct": true, "score": 9, "reason": "ok"}\n```')["correct"] is True
    assert J.parse_verdict('{"correct": "false", "score": 2}')["correct"] is False
    for bad in ("I think it is right", '{"correct": "maybe"}', '{"correct": true, "score": 42}', "{oops}"):
        with pytest.raises(ValueError):
            J.parse_verdict(bad)
    assert J.parse_preference('{"winner": "tie"}')["winner"] == "tie"
    with pytest.raises(ValueError):
        J.parse_preference('{"winner": "C"}')


def test_judge_with_scripted_server(scripted_server, tmp_path):
    """Rubric verdicts and pairwise comparisons in both orders through the real client and a real
    server; a malformed verdict is counted, and a position-biased judge yields ties, not wins."""
    from instructcoder_utils.llm import LLMClient

    scripted_server.on("BROKEN", "I would say it looks fine.")
    scripted_server.on("Edit A:\n```python\nTUNED", '{"winner": "A", "reason": "tuned first"}')
    scripted_server.on("Edit A:\n```python\nBASE_GOOD", '{"winner": "A", "reason": "base"}')
    scripted_server.on("Edit A:\n```python\nBASE_BAD", '{"winner": "B", "reason": "tuned"}')
    scripted_server.on("Edited code", lambda body: '{"correct": %s, "score": 7, "reason": "r"}'
                       % ("true" if "GOOD" in body["messages"][-1]["content"] else "false"))
    client = LLMClient(scripted_server.llm_config(), cache_path=tmp_path / "cache.sqlite")
    try:
        items = [{"id": "a", "instruction": "i", "input": "x", "candidate": "GOOD = 1"},
                 {"id": "b", "instruction": "i", "input": "x", "candidate": "BAD = 1"},
                 {"id": "c", "instruction": "i", "input": "x", "candidate": "BROKEN = 1"}]
        rows = J.judge_edits(client, items)
        assert [r["correct"] for r in rows] == [True, False, None]
        assert rows[2]["malformed"]
        summ = J.verdict_summary(rows)
        assert summ["malformed"] == 1 and summ["accuracy"] == 50.0
        agree = J.agreement(rows, {"a": True, "b": True})
        assert agree["n"] == 2 and agree["agreement"] == 50.0
        pairs = [{"id": "p1", "instruction": "i", "input": "x", "base": "BASE_BAD", "tuned": "TUNED"},
                 {"id": "p2", "instruction": "i", "input": "x", "base": "BASE_GOOD", "tuned": "TUNED"}]
        prow = J.judge_pairs(client, pairs)
        # p1: base-first says B (tuned), tuned-first says A (tuned): a consistent tuned win.
        # p2: each order prefers whatever is shown first: position bias, so a tie.
        assert [r["winner"] for r in prow] == ["tuned", "tie"]
        assert len(scripted_server.requests("Edit A")) == 4
        ps = J.pair_summary(prow)
        assert ps["tuned_wins"] == 1 and ps["ties"] == 1 and ps["position_consistency"] == 50.0
        n_before = len(scripted_server.requests())
        J.judge_pairs(client, pairs)  # cached: nothing is sent again
        assert len(scripted_server.requests()) == n_before
    finally:
        client.close()


def test_extract_fixture_is_parseable_python_mostly():
    """Sanity of the fixture itself: most fenced replies of the real model hold parseable code."""
    rows = read_jsonl(DATA / "eval_replies.jsonl")
    fenced = [r for r in rows if "```" in r["reply"]]
    ok = 0
    for r in fenced:
        try:
            ast.parse(r["expected"])
            ok += 1
        except SyntaxError:
            pass
    assert ok >= len(fenced) // 2


def test_run_judge_writes_report_with_agreement(scripted_server, tmp_path):
    """The stage's judge step end to end: verdicts for base and tuned, pairs, agreement with tests."""
    scripted_server.on("Edit A", '{"winner": "tie", "reason": "same"}')
    scripted_server.on("Edited code", lambda body: '{"correct": %s, "score": 5, "reason": "r"}'
                       % ("true" if "return x + 1" in body["messages"][-1]["content"].split("Edited code")[1]
                          .split("A reference")[0] else "false"))
    cfg = load_profile("smoke", {"llm": scripted_server.llm_config().model_dump(mode="json"),
                                 "evaluation": {"judge": {"enabled": True, "sets": ["own"]}}})
    tasks = [{"task_id": f"Own/{i}", "instruction": "add one", "input": "def f(x):\n    return x\n",
              "output": "def f(x):\n    return x + 1\n"} for i in range(3)]
    good, bad = "def f(x):\n    return x + 1\n", "def f(x):\n    return x\n"
    for label, outs in (("base-chat_v1", [bad, bad, good]), ("tuned-main", [good, good, bad])):
        write_jsonl(tmp_path / label / "results.jsonl",
                    [{"set": "own", "task_id": t["task_id"], "sample": 0, "output": o, "passed": o == good,
                      "scoring": "execution"} for t, o in zip(tasks, outs, strict=True)])
    rep = J.run_judge(cfg, tmp_path, {"own": tasks}, "base-chat_v1", "tuned-main")
    own = rep["sets"]["own"]
    assert own["base"]["accuracy"] == pytest.approx(100 / 3, abs=0.01)
    assert own["tuned"]["accuracy"] == pytest.approx(200 / 3, abs=0.01)
    assert own["tuned"]["vs_execution"]["agreement"] == 100.0
    assert own["pairwise"]["ties"] == 3
    assert read_json(tmp_path / "judge.json")["sets"]["own"]["pairwise"]["pairs"] == 3


def test_an_interpolated_model_has_replies_of_its_own():
    """Its scale is part of the identity that keys cached replies, and only then: a model at scale 1 keeps
    the keys its replies were cached under before interpolations existed."""
    spec = E.ModelSpec("tuned-main", "builtin:smollm2-135m-instruct", "chat_v1")
    half = E.ModelSpec("interp-0.5", "builtin:smollm2-135m-instruct", "chat_v1", scale=0.5)
    assert "scale" not in spec.identity() and half.identity() == {**spec.identity(), "scale": 0.5}
