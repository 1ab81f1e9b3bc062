"""The LLM judge: the paper's GPT-4 evaluation, for edits that have no tests to run.

The paper's headline table (134 real commits) is scored by GPT-4 reading the instruction, the input and
the model's edit and deciding whether the edit does what was asked. Here any OpenAI-compatible model does
it through the LLM client (cached, retried, budgeted): a rubric prompt returns a JSON verdict per edit,
and base vs tuned are also compared pairwise, once in each order, because judges favour a position; a
pair counts as a win only when both orders agree. Where tests exist too, the verdicts are compared with
the execution results, which says how far the judge can be trusted where they do not.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .config import Profile
from .files import iter_jsonl, write_json, write_jsonl

PROMPT_VERSION = "judge-v1"
SYSTEM = ("You are a meticulous senior Python reviewer. You judge whether a code edit does exactly what "
          "an instruction asks, without breaking the rest of the code.")
RUBRIC = """Instruction:
{instruction}

Original code:
```python
{input}
```

Edited code:
```python
{candidate}
```
{reference}
Judge the edited code. It is correct only if it carries out the whole instruction, keeps the behaviour
the instruction does not ask to change, and is valid Python. Unchanged code is incorrect unless the
instruction needs no change.
Reply with one JSON object and nothing else:
{{"correct": true or false, "score": an integer from 1 (wrong) to 10 (perfect), "reason": "one sentence"}}"""
REFERENCE = "\nA reference edit (one correct answer among many):\n```python\n{output}\n```\n"
PAIRWISE = """Instruction:
{instruction}

Original code:
```python
{input}
```

Edit A:
```python
{a}
```

Edit B:
```python
{b}
```

Which edit carries out the instruction better (correctness first, then keeping unrelated code intact)?
Reply with one JSON object and nothing else:
{{"winner": "A" or "B" or "tie", "reason": "one sentence"}}"""
_OBJ = re.compile(r"\{.*\}", re.S)


# --------------------------------------------------------------------------- verdict parsing
def _json_object(text: str) -> dict[str, Any]:
    """The JSON object in a reply (bare, fenced or wrapped in prose); ValueError when there is none."""
    m = _OBJ.search(text or "")
    if not m:
        raise ValueError("no JSON object in the judge's reply")
    try:
        obj = json.loads(m.group(0))
    except json.JSONDecodeError as exc:
        raise ValueError(f"judge reply is not valid JSON: {exc.msg}") from None
    if not isinstance(obj, dict):
        raise ValueError("judge reply is not a JSON object")
    return obj


def parse_verdict(text: str) -> dict[str, Any]:
    """``{"correct": bool, "score": 1-10, "reason": str}``; ValueError for anything else."""
    obj = _json_object(text)
    correct = obj.get("correct")
    if isinstance(correct, str) and correct.lower() in ("true", "false"):
        correct = correct.lower() == "true"
    if not isinstance(correct, bool):
        raise ValueError(f"verdict needs 'correct' true/false, got {obj.get('correct')!r}")
    score = obj.get("score")
    if score is not None and not (isinstance(score, (int, float)) and 1 <= score <= 10):
        raise ValueError(f"verdict 'score' must be 1-10, got {score!r}")
    return {"correct": correct, "score": score, "reason": str(obj.get("reason", ""))[:500]}


def parse_preference(text: str) -> dict[str, Any]:
    """``{"winner": "A"|"B"|"tie", "reason": str}``; ValueError for anything else."""
    obj = _json_object(text)
    winner = str(obj.get("winner", "")).strip().strip('"').upper()
    if winner not in ("A", "B", "TIE"):
        raise ValueError(f"preference needs 'winner' A, B or tie, got {obj.get('winner')!r}")
    return {"winner": "tie" if winner == "TIE" else winner, "reason": str(obj.get("reason", ""))[:500]}


# --------------------------------------------------------------------------- requests
def _client(cfg: Profile, cache_path: Path):
    from .llm import LLMClient

    jc = cfg.evaluation.judge
    llm = cfg.llm.model_copy(update={"model": jc.model or cfg.llm.model, "temperature": 0.0,
                                     "max_tokens": jc.max_tokens})
    return LLMClient(llm, cache_path=cache_path)


def _messages(user: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def judge_edits(client, items: Sequence[dict[str, Any]], desc: str = "judge") -> list[dict[str, Any]]:
    """One rubric verdict per item ``{id, instruction, input, candidate, reference?}``; a malformed or
    failed verdict is kept with ``correct=None`` and its error, so it is counted, never guessed."""
    from .llm import ChatRequest

    reqs = []
    for it in items:
        ref = REFERENCE.format(output=it["reference"].rstrip()) if it.get("reference") else ""
        user = RUBRIC.format(instruction=it["instruction"].strip(), input=it["input"].rstrip(),
                             candidate=(it["candidate"] or "").rstrip(), reference=ref)
        reqs.append(ChatRequest(it["id"], _messages(user), PROMPT_VERSION, temperature=0.0))
    rows = []
    for it, r in zip(items, client.run(reqs, desc=desc, parse=parse_verdict), strict=True):
        v = r.parsed if r.ok else {"correct": None, "score": None, "reason": ""}
        rows.append({"id": it["id"], **v, "error": r.error, "malformed": bool(r.error and "parse error" in r.error)})
    return rows


def judge_pairs(client, items: Sequence[dict[str, Any]], desc: str = "judge-pairwise") -> list[dict[str, Any]]:
    """Base vs tuned per item ``{id, instruction, input, base, tuned}``, asked in both orders.

    Order 1 shows base as A; order 2 shows tuned as A. The pair's winner is the model both orders
    prefer; disagreeing orders (position bias) and ties are a tie."""
    from .llm import ChatRequest

    reqs = []
    for it in items:
        for order, (a, b) in (("bt", (it["base"], it["tuned"])), ("tb", (it["tuned"], it["base"]))):
            user = PAIRWISE.format(instruction=it["instruction"].strip(), input=it["input"].rstrip(),
                                   a=(a or "").rstrip(), b=(b or "").rstrip())
            reqs.append(ChatRequest(f"{it['id']}#{order}", _messages(user), PROMPT_VERSION, temperature=0.0))
    res = {r.id: r for r in client.run(reqs, desc=desc, parse=parse_preference)}
    rows = []
    for it in items:
        picks = {}
        for order in ("bt", "tb"):
            r = res[f"{it['id']}#{order}"]
            w = r.parsed["winner"] if r.ok else None
            picks[order] = None if w is None else ("tie" if w == "tie" else
                                                   {"bt": {"A": "base", "B": "tuned"},
                                                    "tb": {"A": "tuned", "B": "base"}}[order][w])
        if None in picks.values():
            winner = None
        else:
            winner = picks["bt"] if picks["bt"] == picks["tb"] else "tie"
        rows.append({"id": it["id"], "base_first": picks["bt"], "tuned_first": picks["tb"], "winner": winner,
                     "consistent": None if winner is None else picks["bt"] == picks["tb"]})
    return rows


# --------------------------------------------------------------------------- summaries
def verdict_summary(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in rows if r["correct"] is not None]
    return {"items": len(rows), "judged": len(ok), "malformed": sum(r["malformed"] for r in rows),
            "failed": sum(r["correct"] is None and not r["malformed"] for r in rows),
            "accuracy": round(100 * sum(r["correct"] for r in ok) / len(ok), 2) if ok else None}


def pair_summary(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    c = Counter(r["winner"] for r in rows)
    done = [r for r in rows if r["winner"] is not None]
    return {"pairs": len(rows), "tuned_wins": c["tuned"], "base_wins": c["base"], "ties": c["tie"],
            "failed": c[None],
            "position_consistency": round(100 * sum(r["consistent"] for r in done) / len(done), 2) if done else None}


def agreement(verdicts: Sequence[dict[str, Any]], passed: dict[str, bool]) -> dict[str, Any]:
    """How often the judge's verdict equals the execution result, and Cohen's kappa (chance-corrected)."""
    pairs = [(bool(v["correct"]), passed[v["id"]]) for v in verdicts if v["correct"] is not None and v["id"] in passed]
    n = len(pairs)
    if not n:
        return {"n": 0, "agreement": None, "kappa": None}
    po = sum(a == b for a, b in pairs) / n
    pj, pe_ = sum(a for a, _ in pairs) / n, sum(b for _, b in pairs) / n
    pe = pj * pe_ + (1 - pj) * (1 - pe_)
    kappa = (po - pe) / (1 - pe) if pe < 1 else None
    return {"n": n, "agreement": round(100 * po, 2), "kappa": None if kappa is None else round(kappa, 3),
            "judge_correct": sum(a for a, _ in pairs), "tests_passed": sum(b for _, b in pairs)}


# --------------------------------------------------------------------------- the stage's judge step
def _sample0(stage_out: Path, label: str, set_name: str) -> dict[str, dict[str, Any]]:
    return {r["task_id"]: r for r in iter_jsonl(Path(stage_out) / label / "results.jsonl")
            if r["set"] == set_name and r["sample"] == 0}


def run_judge(cfg: Profile, stage_out: Path, sets: dict[str, list[dict[str, Any]]], base_label: str,
              tuned_label: str) -> dict[str, Any]:
    """Judge base and tuned edits on ``judge.sets``: rubric accuracy per model, pairwise wins (both
    orders), and agreement with execution where the tasks have tests. Writes ``judge.json`` and the
    per-item verdicts under ``judge/``."""
    jc = cfg.evaluation.judge
    stage_out = Path(stage_out)
    client = _client(cfg, stage_out / "llm_cache.sqlite")
    report: dict[str, Any] = {"model": jc.model or cfg.llm.model, "prompt_version": PROMPT_VERSION, "sets": {}}
    try:
        for set_name in [s for s in jc.sets if s in sets]:
            tasks = sets[set_name][: jc.max_items] if jc.max_items else sets[set_name]
            res = {lbl: _sample0(stage_out, lbl, set_name) for lbl in (base_label, tuned_label)}
            entry: dict[str, Any] = {}
            for role, lbl in (("base", base_label), ("tuned", tuned_label)):
                items = [{"id": f"{set_name}/{t['task_id']}/{role}", "instruction": t["instruction"],
                          "input": t["input"], "candidate": res[lbl][t["task_id"]]["output"], "reference": t["output"]}
                         for t in tasks if t["task_id"] in res[lbl]]
                rows = judge_edits(client, items, desc=f"judge {role}/{set_name}")
                for r, it in zip(rows, items, strict=True):
                    r["task_id"] = it["id"].split("/", 1)[1].rsplit("/", 1)[0]
                write_jsonl(stage_out / "judge" / f"{set_name}_{role}.jsonl", rows)
                executed = {r["task_id"]: bool(r["passed"]) for r in res[lbl].values() if r["scoring"] == "execution"}
                entry[role] = verdict_summary(rows)
                entry[role]["vs_execution"] = agreement([{**r, "id": r["task_id"]} for r in rows], executed)
            if jc.pairwise:
                items = [{"id": f"{set_name}/{t['task_id']}", "instruction": t["instruction"], "input": t["input"],
                          "base": res[base_label][t["task_id"]]["output"], "tuned": res[tuned_label][t["task_id"]]["output"]}
                         for t in tasks if t["task_id"] in res[base_label] and t["task_id"] in res[tuned_label]]
                rows = judge_pairs(client, items, desc=f"judge pairs/{set_name}")
                write_jsonl(stage_out / "judge" / f"{set_name}_pairs.jsonl", rows)
                entry["pairwise"] = pair_summary(rows)
            report["sets"][set_name] = entry
        report["usage"] = client.usage
    finally:
        client.close()
    write_json(stage_out / "judge.json", report)
    return report
