"""Stage 02 with an LLM: self-instruct bootstrapping and scenario-conditional generation.

The scripted loopback server plays the LLM with fixed replies (good, malformed, partial, near-duplicate,
unparsable code, unchanged code), so the exact instances the stage must keep, and every rejection it
must count, are known in advance. A real ``transformers serve`` proves the path end to end.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from instructcoder_utils import generate as gen
from instructcoder_utils.config import ProfileError, load_profile
from instructcoder_utils.files import read_json, read_jsonl, write_jsonl
from instructcoder_utils.llm import LLMClient

# --------------------------------------------------------------------------- the script
SEEDS = [
    (
        "Add error handling so the function raises a ValueError when the list is empty.",
        "def mean(xs):\n    return sum(xs) / len(xs)\n",
        "def mean(xs):\n    if not xs:\n        raise ValueError('empty')\n    return sum(xs) / len(xs)\n",
    ),
    (
        "Make the string comparison case-insensitive.",
        "def same(a, b):\n    return a == b\n",
        'def same(a, b):\n    """Compare."""\n    return a == b\n',
    ),  # docstring only: no behaviour change
    ("Sort the records by date and then by name.", "x = 1\n", "x = 1\n"),  # unchanged: not an instance
]
INTENTS = ["alpha edits", "bravo edits", "charlie edits", "delta edits", "echo edits", "foxtrot edits"]

A1 = "Add a cache so repeated calls to the lookup function return stored results."
A4 = "Rename the variable tmp to total inside the summing loop."
C1 = "Convert the recursive directory walk into an iterative loop with an explicit stack."
D2 = "Validate that every email address contains exactly one at sign before saving it."
D3 = "Log a warning whenever the retry loop gives up after the last attempt."
D4 = "Replace the manual index loop with enumerate."
F1 = "Use a set to remove duplicate user ids while keeping the first occurrence order."

SELF_INSTRUCT = {  # round 1: alpha, bravo, charlie; round 2: delta, echo, foxtrot (intents cycle in order)
    "alpha edits": f"Here are new instructions:\n1. {A1}\n2. Add error handling so the function raises a "
    f"ValueError when the list is empty or None.\n3. Fix it\n4. {A4}\n\nHope this helps!",
    "bravo edits": "I'm sorry, but I can't help with that.",
    "charlie edits": f"1. {C1}\n2. Replace the",  # cut off mid-item: a partial reply
    "delta edits": f"1. Add a cache so repeated calls to the lookup function return the stored results.\n"
    f"2) {D2}\n**3.** {D3}\n4. {D4}\n5. An extra fifth instruction that was not asked for here.",
    "echo edits": "1. Make the string comparison case insensitive.\n2. Sort the records by date and then by their name.",
    "foxtrot edits": f"1. {F1}\n2. {F1}",
}
NEW = [A1, A4, C1, D2, D3, D4, F1]


def two_blocks(inp: str, outp: str, head: str = "") -> str:
    """A reply in the strict format: 'Input code:' / 'Output code:' each with a python block."""
    return head + "Input code:\n```python\n" + inp + "```\nOutput code:\n```python\n" + outp + "```"


CACHE_IN = "def find(db, k):\n    return db.query(k)\n"
CACHE_OUT = "_cache = {}\n\ndef find(db, k):\n    if k not in _cache:\n        _cache[k] = db.query(k)\n    return _cache[k]\n"
TOTAL_IN = "def total(xs):\n    tmp = 0\n    for x in xs:\n        tmp += x\n    return tmp\n"
TOTAL_OUT = TOTAL_IN.replace("tmp", "total")
IDS_IN = "def ids(xs):\n    return list(xs)\n"
IDS_OUT = "def ids(xs):\n    seen = set()\n    return [x for x in xs if not (x in seen or seen.add(x))]\n"
DECORATED = "**Input code:**\n```py\n" + IDS_IN + "```\n\n### Output Code\n```python\n" + IDS_OUT + "```"

INSTANCES = {  # instruction -> (scenario reply, instance reply, expected (input, output) or None)
    A1: (
        "1. a product catalog service\n2. a weather data dashboard\n3. a library loan tracker",
        two_blocks(CACHE_IN, CACHE_OUT),
        (CACHE_IN, CACHE_OUT),
    ),
    A4: (
        "1. a household budgeting script",
        two_blocks(TOTAL_IN, TOTAL_OUT, head="Sure.\n"),
        (TOTAL_IN, TOTAL_OUT),
    ),
    C1: ("Scenarios vary a lot, it depends.", None, None),  # no scenario list: no instance request
    D2: (
        "1. a user registration backend",
        two_blocks("def save(u):\n    db.add(u)\n", "def save(u:\n    db.add(u)\n"),
        None,
    ),  # output: bad syntax
    D3: (
        "1. a payment gateway client",
        two_blocks("def pay():\n    return 1\n", "def pay():\n    return 1\n"),
        None,
    ),  # output == input
    D4: (
        "1. a CSV report generator",
        "def report(rows):\n    for i, r in enumerate(rows):\n        print(i, r)\n",
        None,
    ),  # no fenced blocks
    F1: ("- 1) a mailing list manager\n- 2) a chat moderation bot", DECORATED, (IDS_IN, IDS_OUT)),
}


def program(server) -> None:
    """Fixed replies keyed by a substring that only the intended prompt contains."""
    for intent, text in SELF_INSTRUCT.items():
        server.on(f"kind of edit: {intent}.", text)
    for instruction, (scenarios, instance, _) in INSTANCES.items():
        server.on(f'Edit instruction: "{instruction}"', scenarios)
        if instance is not None:
            server.on(f"Instruction: {instruction}", instance)
    server.on(None, "UNEXPECTED REQUEST")


def make_out(tmp_path: Path, seeds=SEEDS) -> Path:
    out = tmp_path / "out"
    rows = [
        {
            "id": f"seed-{i}",
            "instruction": ins,
            "input": a,
            "output": b,
            "scenario": "repo.module",
            "source": "seed:rules",
            "meta": {"repo": "r"},
        }
        for i, (ins, a, b) in enumerate(seeds)
    ]
    write_jsonl(out / "01_seeds" / "seeds.jsonl", rows)
    return out


def profile(server=None, **gen_over):
    over = {
        "generation": {
            "method": "llm",
            "include_seeds": True,
            "self_instruct": {
                "num_prompt_instructions": 4,
                "num_seed_in_prompt": 3,
                "num_new_per_request": 4,
                "requests_per_round": 3,
                "max_rounds": 2,
                "target_pool_size": 100,
                "intents": INTENTS,
                "min_seed_instructions": 0,
                "max_tokens": 200,
            },
            "scenarios": {
                "scenarios_per_instruction": 3,
                "instances_per_instruction": 1,
                "max_instructions": None,
            },
        }
    }
    for k, v in gen_over.items():
        over["generation"][k] = {**over["generation"].get(k, {}), **v} if isinstance(v, dict) else v
    if server is not None:
        over["llm"] = server.llm_config().model_dump()
    return load_profile("smoke", over)


def run_stage(cfg, out: Path, client=None) -> gen.GenerationResult:
    stage_out = out / "02_generation"
    stage_out.mkdir(parents=True, exist_ok=True)
    return gen.run_generation(cfg, out, stage_out, progress=False, client=client)


def check_expected(out: Path, server) -> None:
    """The exact instances the script implies, and the rejections counted by reason."""
    recs = read_jsonl(out / "02_generation" / "instances.jsonl")
    by_src = {
        "seed": [r for r in recs if r["source"] == "seed"],
        "self_instruct": [r for r in recs if r["source"] == "self_instruct"],
    }
    assert len(recs) == 2 + 3
    assert [(r["instruction"], r["meta"]["behaviour_change"]) for r in by_src["seed"]] == [
        (SEEDS[0][0], True),
        (SEEDS[1][0], False),
    ]
    got = {r["instruction"]: r for r in by_src["self_instruct"]}
    want = {ins: exp for ins, (_, _, exp) in INSTANCES.items() if exp is not None}
    assert set(got) == set(want)
    intent_of = {A1: "alpha edits", A4: "alpha edits", F1: "foxtrot edits"}
    sent = {e["last_user"]: e for e in server.requests("Now your task")}
    for ins, (inp, outp) in want.items():
        r = got[ins]
        assert (r["input"], r["output"]) == (inp, outp)
        listed = gen.parse_numbered_list(INSTANCES[ins][0])
        assert r["scenario"] in listed  # picked from the scenario reply ...
        assert any(
            f"Scenario: {r['scenario']}\nInstruction: {ins}" in u for u in sent
        )  # ... and prompted with
        assert r["meta"]["kind"] == intent_of[ins].replace(" ", "_") and r["meta"]["behaviour_change"] is True
    assert got[A4]["scenario"] == "a household budgeting script"

    counts = read_json(out / "02_generation" / "counts.json")
    si = counts["self_instruct"]
    assert {
        k: si[k]
        for k in (
            "requests",
            "rounds",
            "malformed_replies",
            "partial_replies",
            "rejected_too_similar",
            "rejected_too_short",
            "extra_items_ignored",
            "new_instructions",
            "pool_size",
            "stopped_by",
        )
    } == {
        "requests": 6,
        "rounds": 2,
        "malformed_replies": 1,
        "partial_replies": 3,
        "rejected_too_similar": 5,
        "rejected_too_short": 2,
        "extra_items_ignored": 1,
        "new_instructions": 7,
        "pool_size": 10,
        "stopped_by": "max_rounds",
    }
    sc = counts["scenarios"]
    assert sc == {
        "scenario_requests": 7,
        "scenario_malformed_replies": 1,
        "scenario_partial_replies": 5,
        "instance_requests": 6,
        "rejected_syntax_output": 1,
        "rejected_unchanged": 1,
        "rejected_format": 1,
        "instances": 3,
    }
    assert counts["per_source"] == {"self_instruct": 3, "seed": 2} and counts["total"] == 5
    assert counts["per_kind"] == {"commit": 2, "alpha_edits": 2, "foxtrot_edits": 1}
    assert not server.requests("UNEXPECTED") and all(e["kind"] == "reply" for e in server.log)


# --------------------------------------------------------------------------- tests: scripted LLM
def test_bootstrap_and_scenarios_keep_exactly_the_expected_instances(scripted_server, tmp_path):
    program(scripted_server)
    out = make_out(tmp_path)
    cfg = profile(scripted_server)
    result = run_stage(cfg, out)
    assert [x["instruction"] for x in result.self_instruct.instructions] == NEW
    check_expected(out, scripted_server)
    assert len(scripted_server.log) == 6 + 7 + 6
    # round 2 prompts show 3 seeds + 1 generated instruction; round 1 prompts only seeds
    r2 = scripted_server.requests("kind of edit: delta edits.")[0]["last_user"]
    assert sum(s[0] in r2 for s in SEEDS) == 3 and sum(x in r2 for x in (A1, A4, C1)) == 1
    usage = read_json(out / "02_generation" / "usage.json")
    assert usage["requests"] == 19 and usage["prompt_tokens"] > 0

    first = (out / "02_generation" / "instances.jsonl").read_bytes()
    scripted_server.log.clear()
    run_stage(profile(scripted_server), out)  # a warm re-run: everything from the cache
    assert scripted_server.log == []
    assert (out / "02_generation" / "instances.jsonl").read_bytes() == first
    assert read_json(out / "02_generation" / "usage.json")["cache_hits"] == 19


class Interrupted(Exception):
    pass


class DiesMidway:
    """Passes the first ``calls`` batches to the real client, sends part of the next one, then dies."""

    def __init__(self, client: LLMClient, calls: int, then: int):
        self.client, self.calls, self.then = client, calls, then

    def run(self, requests, desc="llm", parse=None):
        if self.calls == 0:
            self.client.run(list(requests)[: self.then], desc=desc)
            raise Interrupted(desc)
        self.calls -= 1
        return self.client.run(requests, desc=desc, parse=parse)


def test_interrupted_run_resumes_without_resending(scripted_server, tmp_path):
    program(scripted_server)
    out = make_out(tmp_path)
    cfg = profile(scripted_server)
    stage_out = out / "02_generation"
    stage_out.mkdir(parents=True)
    client = LLMClient(cfg.llm, cache_path=stage_out / "llm_cache.sqlite")
    # round 1 done, round 2 dies after one of its three requests was answered
    with pytest.raises(Interrupted):
        run_stage(cfg, out, client=DiesMidway(client, calls=1, then=1))
    client.close()
    assert not (stage_out / "instances.jsonl").exists()  # nothing half-written
    before = [e["last_user"] for e in scripted_server.log]
    assert len(before) == 3 + 1

    scripted_server.log.clear()
    run_stage(cfg, out)
    after = [e["last_user"] for e in scripted_server.log]
    assert not set(before) & set(after)  # nothing answered before is asked again
    assert len(before) + len(after) == 19
    check_expected(out, scripted_server)

    scripted_server.log.clear()
    first = (stage_out / "instances.jsonl").read_bytes()
    run_stage(cfg, out)
    assert scripted_server.log == [] and (stage_out / "instances.jsonl").read_bytes() == first


def test_bootstrap_stops_at_the_target_pool_size(scripted_server, tmp_path):
    program(scripted_server)
    cfg = profile(scripted_server, self_instruct={"target_pool_size": 5, "max_rounds": 5})
    client = LLMClient(cfg.llm, cache_path=tmp_path / "cache.sqlite")
    res = gen.self_instruct(
        client, [s[0] for s in SEEDS], cfg.generation.self_instruct, cfg.seed, progress=False
    )
    client.close()
    assert [x["instruction"] for x in res.instructions] == [A1, A4]
    assert res.counts["stopped_by"] == "target_pool_size" and res.counts["rounds"] == 1
    assert res.counts["over_target"] == 2 and res.counts["pool_size"] == 5
    assert [x["intent"] for x in res.instructions] == ["alpha edits"] * 2
    assert len(scripted_server.log) == 3


def test_failed_requests_are_counted_not_fatal(scripted_server, tmp_path):
    from servers import error

    scripted_server.on("kind of edit: bravo edits.", error(400))
    program(scripted_server)
    cfg = profile(scripted_server, self_instruct={"max_rounds": 1})
    client = LLMClient(cfg.llm, cache_path=tmp_path / "cache.sqlite")
    res = gen.self_instruct(
        client, [s[0] for s in SEEDS], cfg.generation.self_instruct, cfg.seed, progress=False
    )
    client.close()
    assert res.counts["failed_requests"] == 1 and "malformed_replies" not in res.counts
    assert [x["instruction"] for x in res.instructions] == [A1, A4, C1]


# --------------------------------------------------------------------------- tests: pieces
def test_numbered_list_parsing_is_robust():
    text = (
        'Sure! Here are some:\n1. Add a cache to the lookup.\n2) **Instruction:** Make it "fast"\n'
        "   and robust.\n**3.** Handle empty lists\n- 4: `Use a set`\nI hope these help.\n\n5."
    )
    assert gen.parse_numbered_list(text) == [
        "Add a cache to the lookup.",
        'Make it "fast" and robust.',
        "Handle empty lists",
        "Use a set",
    ]
    assert gen.parse_numbered_list(None) == [] and gen.parse_numbered_list("no list at all") == []


@pytest.mark.parametrize(
    "reply,reason",
    [
        ("nothing here", "format"),
        ("Input code:\n```python\ndef f(:\n```\nOutput code:\n```python\nx = 1\n```", "syntax_input"),
        ("Input code:\n```python\nx = 1\n```\nOutput code:\n```python\nx =\n```", "syntax_output"),
        ("Input code:\n```python\nx = 1\n```\nOutput code:\n```python\nx = 1\n```", "unchanged"),
        ("Input code:\n```python\nx = 1\n```\n", "format"),
    ],
)
def test_instance_replies_are_rejected_by_reason(reply, reason):
    with pytest.raises(gen.InstanceRejected) as exc:
        gen.parse_instance_reply(reply)
    assert exc.value.reason == reason


def test_behaviour_change_heuristic():
    base = "def f(x):\n    return x\n"
    assert not gen.behaviour_changes(
        base, 'def f(x: int) -> int:\n    """Doc."""\n    # note\n    return x\n'
    )
    assert gen.behaviour_changes(base, "def f(x):\n    return x + 1\n")


def test_templates_render_and_are_versioned():
    for name in (gen.SELF_INSTRUCT_PROMPT, gen.SCENARIOS_PROMPT, gen.INSTANCES_PROMPT):
        tpl = gen.load_template(name)
        assert tpl.name == name and name.endswith("_v1") and tpl.system
    msgs = gen.load_template(gen.INSTANCES_PROMPT).render(scenario="a shop", instruction="Do {{x}} now")
    assert msgs[-1]["content"].endswith("Scenario: a shop\nInstruction: Do {{x}} now")
    assert "{quantity}" in msgs[-1]["content"]  # code braces in the few-shot example stay intact
    with pytest.raises(KeyError, match="scenario"):
        gen.load_template(gen.INSTANCES_PROMPT).render(instruction="x")


def test_small_seed_file_falls_back_to_builtin_seeds(tmp_path):
    path = make_out(tmp_path, seeds=SEEDS[:1]) / "01_seeds" / "seeds.jsonl"
    s = gen.load_seeds(path, min_instructions=8)
    builtin = gen.builtin_seed_instructions()
    assert len(builtin) >= 8 and s.instructions[0] == SEEDS[0][0]
    assert s.instructions[1:] == [b for b in builtin if b != SEEDS[0][0]] and "built-in" in s.note
    assert gen.load_seeds(path, min_instructions=1).builtin_added == 0
    with pytest.raises(FileNotFoundError, match="seeds.jsonl"):
        gen.load_seeds(tmp_path / "missing" / "seeds.jsonl", 1)


def test_llm_method_without_a_provider_says_what_to_set(tmp_path):
    cfg = profile(None)
    with pytest.raises(ProfileError, match="llm.provider"):
        run_stage(cfg, make_out(tmp_path))


# --------------------------------------------------------------------------- real server
@pytest.mark.slow
def test_stage_end_to_end_through_transformers_serve(transformers_server, tmp_path):
    """The real client against a real OpenAI-compatible server with the built-in model.

    Quality is irrelevant (tiny replies); what must hold is that every step's requests go through the
    real client and server and the stage writes its outputs. Three short requests in all.
    """
    out = make_out(tmp_path, seeds=[])
    over = {
        "llm": {
            "provider": "openai",
            "base_url": str(transformers_server),
            "model": transformers_server.model,
            "concurrency": 2,
            "timeout_s": 120,
            "max_retries": 0,
        },
        "generation": {
            "method": "llm",
            "self_instruct": {
                "requests_per_round": 1,
                "max_rounds": 1,
                "num_new_per_request": 2,
                "max_tokens": 24,
            },
            "scenarios": {
                "scenarios_per_instruction": 2,
                "scenario_max_tokens": 12,
                "max_tokens": 24,
                "max_instructions": 1,
            },
        },
    }
    cfg = load_profile("smoke", over)
    result = run_stage(cfg, out)
    counts = read_json(out / "02_generation" / "counts.json")
    usage = read_json(out / "02_generation" / "usage.json")
    assert counts["seeds"]["builtin_added"] == len(gen.builtin_seed_instructions())
    assert counts["self_instruct"]["requests"] == 1 and "failed_requests" not in counts["self_instruct"]
    assert usage["requests"] >= 1 and usage["completion_tokens"] > 0
    assert len(read_jsonl(out / "02_generation" / "instances.jsonl")) == len(result.records)
    sc = counts["scenarios"]
    if not result.self_instruct.instructions:  # the tiny model listed nothing usable: drive step 2 directly
        client = LLMClient(cfg.llm, cache_path=out / "02_generation" / "llm_cache.sqlite")
        one = [{"id": "x", "instruction": gen.builtin_seed_instructions()[0], "intent": None, "round": 0}]
        sc = gen.scenario_instances(client, one, cfg.generation.scenarios, cfg.seed, progress=False).counts
        client.close()
    assert sc["scenario_requests"] == 1 and "scenario_failed_requests" not in sc
    assert sc.get("instance_requests", 0) == 1 - sc.get("scenario_malformed_replies", 0)
    assert "instance_failed_requests" not in sc
    print(json.dumps({"self_instruct": counts["self_instruct"], "scenarios": sc}))
