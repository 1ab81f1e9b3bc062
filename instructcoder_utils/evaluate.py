"""Stage 05: models write edits for every evaluation task, the edits are executed (or compared), scored.

The paper scores the tuned model by running its edits against each task's tests (EditEval, pass@k with the
unbiased estimator) and by a GPT-4 judge (``judge.py``). Here a model is the base model with one prompt
template, or base + a LoRA adapter from stage 04 with the template it was trained on, or a model behind an
OpenAI-compatible endpoint. Generation is batched (length-sorted, left-padded), stops each sequence at the
closing fence of its reply, and bounds new tokens by the input's length, because a rambling 135M model
spends most of its time after the answer. Every reply is appended to ``samples.jsonl`` under a key of
(model, adapter hash, template, decoding, task), so a crash loses nothing and a re-run regenerates nothing.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from .config import Profile
from .files import iter_jsonl, read_json, record_meta, write_json, write_jsonl
from .models import TRAINED_WEIGHTS, is_trained_dir
from .progress import bar as progress_bar
from .prompts import (
    cut_reply,
    edited_program,
    fingerprint,
    get_template,
    looping,
    render_prompt,
    render_response,
    reply_end,
)
from .stats import edit_ratio  # the paper's r, as stage 03 reports it

GEN_VERSION = "gen-v1"  # bump when generation logic changes what a cached reply would be
LOOP_GUARD_VERSION = 2  # in the key of replies written with the loop guard on; v1 missed most loops
SETS = ("editeval", "own", "test_split")
EDIT_RATIO_BINS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0001)


# --------------------------------------------------------------------------- tasks
def _sha(*parts: Any) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(json.dumps(p, sort_keys=True, default=str).encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def task_hash(task: dict[str, Any]) -> str:
    """What the model sees of a task; a changed task is regenerated, an unchanged one never."""
    return _sha(task["instruction"], task["input"])


def _record_to_task(rec: dict[str, Any]) -> dict[str, Any]:
    """A stage-03 record as an EditEval task; its test program (``meta.test``) when it has one, else
    none: such tasks are scored by exact match of the normalized code."""
    meta = record_meta(rec)
    test = meta.get("test") if isinstance(meta.get("test"), str) and "def check" in meta.get("test", "") else None
    return {
        "task_id": str(rec["id"]), "instruction": rec["instruction"], "input": rec["input"],
        "output": rec["output"], "test": test, "context": meta.get("context") or "",
        "META": {"kind": meta.get("kind"), "behaviour_change": meta.get("behaviour_change")},
    }


def load_test_split(out: Path) -> list[dict[str, Any]]:
    """The in-distribution test split written by stage 03."""
    path = Path(out) / "03_filtering" / "dataset"
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: not found (run stage 03_filtering first, or drop test_split from "
                                "evaluation.sets)")
    from datasets import load_from_disk

    ds = load_from_disk(str(path))
    if "test" not in ds:
        raise ValueError(f"{path}: the DatasetDict has no 'test' split (splits: {', '.join(ds)})")
    return [_record_to_task(r) for r in ds["test"]]


def load_sets(cfg: Profile, out: Path) -> dict[str, list[dict[str, Any]]]:
    """Every evaluation set of the profile as EditEval-format tasks, cut to ``evaluation.limit``."""
    from .tasks import editeval_file, load_editeval, load_own_tasks

    ev = cfg.evaluation
    loaders = {
        "editeval": lambda: load_editeval(editeval_file(cfg)),
        "own": load_own_tasks,
        "test_split": lambda: load_test_split(out),
    }
    sets = {}
    for name in ev.sets:
        tasks = loaders[name]()
        tasks = tasks[: ev.limit] if ev.limit else tasks
        cap = ev.set_limits.get(name)
        sets[name] = tasks[:cap] if cap else tasks
    return sets


def sets_table(sets: dict[str, list[dict[str, Any]]]):
    """One row per set: tasks, how many have tests, mean edit ratio of the references."""
    import pandas as pd

    rows = []
    for name, tasks in sets.items():
        ratios = [edit_ratio(t["input"], t["output"]) for t in tasks]
        rows.append({"set": name, "tasks": len(tasks), "with tests": sum(bool(t.get("test")) for t in tasks),
                     "with {{Code}} context": sum("{{Code}}" in (t.get("context") or "") for t in tasks),
                     "mean edit ratio": round(sum(ratios) / max(1, len(ratios)), 3)})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- models and decoding
@dataclass(frozen=True)
class Decoding:
    temperature: float = 0.0
    n: int = 1
    max_new_tokens: int = 512
    factor: float = 1.5
    slack: int = 64
    top_p: float = 0.95
    loop_repeats: int = 0  # stop a reply whose last lines repeat this often (prompts.looping); 0 = never

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    def bound(self, input_tokens: int) -> int:
        """New tokens allowed for an input: an edit is about as long as its input, never the max for all."""
        return max(8, min(self.max_new_tokens, int(self.factor * input_tokens + self.slack)))


def decoding_from(cfg: Profile) -> Decoding:
    ev = cfg.evaluation
    n = ev.n_samples if ev.temperature > 0 else 1
    return Decoding(ev.temperature, n, ev.max_new_tokens, ev.new_tokens_factor, ev.new_tokens_slack, ev.top_p,
                    ev.loop_repeats)


@dataclass
class ModelSpec:
    """One model to evaluate: ``label`` names its folder under 05_evaluation/."""

    label: str
    base_model: str
    template: str
    adapter: str | None = None
    kind: str = "hf"  # hf | api
    role: str = "base"  # base | tuned | sweep | interpolation | api
    run: str | None = None
    info: dict[str, Any] = field(default_factory=dict)
    scale: float = 1.0  # how far from the base model towards the adapter's weights (models.load_trained)

    def identity(self) -> dict[str, Any]:
        t = get_template(self.template)
        ident = {"model": self.base_model, "adapter": adapter_hash(self.adapter) if self.adapter else None,
                 "kind": self.kind, "template": self.template, "template_hash": _sha(fingerprint(t)), "gen": GEN_VERSION}
        if self.scale != 1.0:  # only then: the replies cached before this field existed keep their keys
            ident["scale"] = self.scale
        return ident


def adapter_hash(path: str | Path) -> str:
    """Content hash of an adapter folder: a retrained adapter is regenerated, the same one is not."""
    p = Path(path)
    files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix in (".safetensors", ".bin", ".json"))
    if not files:
        raise FileNotFoundError(f"{p}: no trained weights (a LoRA adapter or {TRAINED_WEIGHTS})")
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode())
        h.update(hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()[:16]


def sample_key(identity: dict[str, Any], decoding: Decoding, dtype: str, task: dict[str, Any], sample: int) -> str:
    d = asdict(decoding)
    if not d["loop_repeats"]:  # off: the key replies had before the loop guard existed, so they stay cached
        del d["loop_repeats"]
    else:
        d["loop_guard"] = LOOP_GUARD_VERSION
    return _sha(identity, d, dtype, task_hash(task), sample)


def pick_dtype(choice: str, device: str = "cpu") -> str:
    """bf16 where the device computes it natively (CUDA with bf16, CPUs with AVX512-BF16/AMX), else fp32:
    emulated bf16 on a CPU is slower than fp32."""
    if choice != "auto":
        return choice
    import torch

    if device.startswith("cuda"):
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    from .models import cpu_has_bf16

    return "bf16" if cpu_has_bf16() else "fp32"


# --------------------------------------------------------------------------- sample store (resume)
class SampleStore:
    """``samples.jsonl`` of one model, appended row by row (flushed), read back by key on a re-run."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.rows: dict[str, dict[str, Any]] = {}
        if self.path.is_file():
            try:
                for row in iter_jsonl(self.path):
                    self.rows[row["key"]] = row
            except ValueError:  # a line cut by a crash: keep what parses, rewrite cleanly
                self.rows = {}
                for line in self.path.read_text(encoding="utf-8").splitlines():
                    try:
                        row = json.loads(line)
                        self.rows[row["key"]] = row
                    except (json.JSONDecodeError, KeyError, TypeError):
                        continue
                write_jsonl(self.path, self.rows.values())

    def __contains__(self, key: str) -> bool:
        return key in self.rows

    def get(self, key: str) -> dict[str, Any]:
        return self.rows[key]

    def add(self, rows: Sequence[dict[str, Any]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
                self.rows[row["key"]] = row
            fh.flush()


# --------------------------------------------------------------------------- HF generation
class HFGenerator:
    """A local causal LM (+ merged LoRA adapter) that writes replies for prompts in batches."""

    def __init__(self, spec: ModelSpec, dtype: str = "auto", threads: int | None = None) -> None:
        import torch

        from .models import load_model, load_tokenizer, load_trained, pack_head

        if threads:
            torch.set_num_threads(threads)
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.dtype = pick_dtype(dtype, self.device)
        self.tok = load_tokenizer(spec.base_model)
        self.tok.padding_side = "left"
        model = load_model(spec.base_model, dtype=self.dtype, device=self.device)
        if spec.adapter:
            model = load_trained(model, spec.adapter, scale=spec.scale)
        self.model = model.eval()
        pack_head(self.model)  # CPU fp32: the vocabulary projection in oneDNN's packed layout
        self.spec = spec

    def prompt(self, task: dict[str, Any], template: str | None = None) -> str:
        return render_prompt(template or self.spec.template, task["instruction"], task["input"], self.tok)

    def input_tokens(self, task: dict[str, Any]) -> int:
        return count_tokens(self.tok, task["input"])

    def stream(self, prompts: Sequence[str], limits: Sequence[int], decoding: Decoding, batch_size: int,
               seed: int = 0, sources: Sequence[str] | None = None, templates: Sequence[str] | None = None):
        """Yield (index, reply cut at its end, new tokens, stop reason) as each reply completes
        (continuous batching: a finished row's slot goes to the next prompt at once). ``templates``
        names each prompt's template (its reply ends at that template's closing fence); by default
        the spec's. With ``sources`` (each prompt's input code) and ``decoding.loop_repeats``, a reply
        caught in a loop of repeated lines stops with reason "loop" instead of running to its token bound."""
        from .decoding import continuous_generate

        names = list(templates) if templates is not None else [self.spec.template] * len(prompts)
        ids = [self.tok(p, add_special_tokens=False).input_ids for p in prompts]
        guard = decoding.loop_repeats if sources is not None else 0

        def is_done(i: int, new: list[int]) -> str | None:
            text = self.tok.decode(new, skip_special_tokens=False)
            if reply_end(names[i], text) is not None:
                return "stop"
            if guard and looping(text, sources[i], guard):
                return "loop"
            return None

        for r in continuous_generate(self.model, ids, limits, eos_id=self.tok.eos_token_id, batch_size=batch_size,
                                     is_done=is_done, temperature=decoding.temperature, top_p=decoding.top_p,
                                     seed=seed, device=self.device):
            text = self.tok.decode(r.ids, skip_special_tokens=True)
            yield r.index, cut_reply(names[r.index], text), len(r.ids), r.reason

    def generate(self, prompts: Sequence[str], limits: Sequence[int], decoding: Decoding, batch_size: int = 8,
                 seed: int = 0) -> tuple[list[str], list[int], list[str]]:
        """Replies, new-token counts and stop reasons, in the order of ``prompts``."""
        out: dict[int, tuple[str, int, str]] = {}
        for i, reply, n, why in self.stream(prompts, limits, decoding, batch_size, seed):
            out[i] = (reply, n, why)
        got = [out[i] for i in range(len(prompts))]
        return [g[0] for g in got], [g[1] for g in got], [g[2] for g in got]


def stop_counts(samples: Sequence[dict[str, Any]]) -> dict[str, int]:
    """Why each reply ended: stop (its closing fence), eos, loop (``prompts.looping``) or length."""
    return dict(Counter(s.get("stop") or "?" for s in samples))


def _todo(tasks: Sequence[dict[str, Any]], spec: ModelSpec, decoding: Decoding, dtype: str,
          store: SampleStore) -> list[tuple[dict[str, Any], int, str]]:
    identity = spec.identity()
    todo = []
    for t in tasks:
        for s in range(decoding.n):
            key = sample_key(identity, decoding, dtype, t, s)
            if key not in store:
                todo.append((t, s, key))
    return todo


def store_for(stage_out: Path, spec: ModelSpec) -> SampleStore:
    return SampleStore(Path(stage_out) / spec.label / "samples.jsonl")


def generate_edits(gen: HFGenerator, tasks: Sequence[dict[str, Any]], templates: Sequence[str], decoding: Decoding,
                   batch_size: int = 8, seed: int = 0) -> Iterator[tuple[int, str, int, str]]:
    """Yield (index, reply, new tokens, stop reason) for each task's ``instruction`` and ``input`` as its reply
    completes: the prompt in its template, new tokens bounded by the input's length, the loop guard on
    the input, each reply cut at its closing fence. The one path from an edit request to a reply: stage 05
    scores through it and ``instructcoder edit`` (``edit.py``) edits a file through it, so what a reader
    tries is what was measured."""
    prompts = [gen.prompt(t, tpl) for t, tpl in zip(tasks, templates, strict=True)]
    limits = [decoding.bound(gen.input_tokens(t)) for t in tasks]
    sources = [t["input"] for t in tasks]
    yield from gen.stream(prompts, limits, decoding, batch_size, seed, sources, list(templates))


def generate_hf(gen: HFGenerator, plan: Sequence[tuple[ModelSpec, str, Sequence[dict[str, Any]]]],
                decoding: Decoding, stores: dict[str, SampleStore], batch_size: int = 8,
                progress: bool = True) -> dict[tuple[str, str], dict[str, Any]]:
    """Generate what the stores lack for every (spec, set name, tasks) of ``plan`` in one continuous
    batch, longest prompts first, appending each reply to its spec's store as soon as it is done.

    One stream instead of one per set or prompt keeps the batch full: a CPU decodes 64 rows at about
    1.3x the tokens/s of 32, and a set's last few rows no longer run alone. The specs may differ in
    template only (``gen`` holds one set of weights). Returns timing and token counts per (label, set);
    a set's seconds are the wall time between each of its replies and the reply finished before it."""
    for spec, _, _ in plan:
        if (spec.base_model, spec.adapter) != (gen.spec.base_model, gen.spec.adapter):
            raise ValueError(f"{spec.label}: generate_hf runs one model at a time; {gen.spec.label} is loaded")
    rows = [(spec, name, t, s, key) for spec, name, tasks in plan
            for t, s, key in _todo(tasks, spec, decoding, gen.dtype, stores[spec.label])]
    stats = {(spec.label, name): {"generated": 0, "cached": len(tasks) * decoding.n, "seconds": 0.0,
                                  "new_tokens": 0, "dtype": gen.dtype} for spec, name, tasks in plan}
    labels = sorted({f"{spec.label}/{name}" for spec, name, *_ in rows})
    bar = progress_bar(total=len(rows), desc=", ".join(labels) or "generate", unit="reply", disable=not progress)
    seed = int(_sha(*labels)[:8], 16) if not decoding.greedy else 0
    last = time.perf_counter()
    replies = generate_edits(gen, [t for _, _, t, _, _ in rows], [spec.template for spec, *_ in rows], decoding,
                             batch_size, seed)
    for i, reply, n, why in replies:
        spec, name, t, s, key = rows[i]
        now = time.perf_counter()
        stores[spec.label].add([{"key": key, "set": name, "task_id": t["task_id"], "sample": s, "model": spec.label,
                                 "template": spec.template, "reply": reply, "new_tokens": n, "stop": why,
                                 "seconds": round(now - last, 3)}])
        st = stats[(spec.label, name)]
        st["generated"] += 1
        st["cached"] -= 1
        st["seconds"] += now - last
        st["new_tokens"] += n
        last = now
        bar.update(1)
    bar.close()
    for st in stats.values():
        st["seconds"] = round(st["seconds"], 2)
        st["tokens_per_s"] = round(st["new_tokens"] / st["seconds"], 1) if st["seconds"] and st["new_tokens"] else None
    return stats


# --------------------------------------------------------------------------- API generation
def generate_api(spec: ModelSpec, cfg: Profile, set_name: str, tasks: Sequence[dict[str, Any]],
                 decoding: Decoding, store: SampleStore, cache_path: Path) -> dict[str, Any]:
    """The same prompts through any OpenAI-compatible endpoint (``llm`` section, model ``spec.base_model``)."""
    from .llm import ChatRequest, LLMClient

    t = get_template(spec.template)
    todo = _todo(tasks, spec, decoding, "api", store)
    t0 = time.perf_counter()
    reqs, meta = [], {}
    for task, s, key in todo:
        user = t.user.format(instruction=task["instruction"].strip(), input=task["input"].rstrip("\n"))
        msgs = ([{"role": "system", "content": t.system}] if t.system else []) + [{"role": "user", "content": user}]
        bound = decoding.bound(max(1, len(task["input"]) // 4))
        reqs.append(ChatRequest(key, msgs, f"eval-{spec.template}-{spec.identity()['template_hash']}",
                                temperature=decoding.temperature, max_tokens=bound, sample=s))
        meta[key] = (task, s)
    client = LLMClient(cfg.llm.model_copy(update={"model": spec.base_model}), cache_path=cache_path)
    try:
        results = client.run(reqs, desc=f"{spec.label}/{set_name}")
    finally:
        client.close()
    rows = []
    for r in results:
        task, s = meta[r.id]
        rows.append({"key": r.id, "set": set_name, "task_id": task["task_id"], "sample": s, "model": spec.label,
                     "template": spec.template, "reply": cut_reply(t, r.text or "") if r.ok else "",
                     "new_tokens": r.completion_tokens, "stop": r.finish_reason or ("error" if not r.ok else None),
                     "error": r.error, "seconds": None})
    store.add([row for row in rows if row["error"] is None])
    return {"generated": len(rows), "cached": len(tasks) * decoding.n - len(rows),
            "seconds": round(time.perf_counter() - t0, 2), "errors": sum(r["error"] is not None for r in rows)}


# --------------------------------------------------------------------------- scoring
def normalize_code(code: str) -> str:
    """Code compared modulo formatting: the AST when it parses, else stripped non-blank lines."""
    try:
        return ast.dump(ast.parse(code))
    except (SyntaxError, ValueError):
        return "\n".join(line.rstrip() for line in code.strip().splitlines() if line.strip())


def ratio_bin(r: float) -> str:
    for lo, hi in zip(EDIT_RATIO_BINS, EDIT_RATIO_BINS[1:], strict=False):
        if lo <= r < hi:
            return f"{lo:.1f}-{min(hi, 1.0):.1f}"
    return f"{EDIT_RATIO_BINS[-2]:.1f}-1.0"


class ExecCache:
    """Execution verdicts keyed by (code, test, context, timeout): identical candidates (the unchanged
    input, say) from several models run once. Harness errors are never cached."""

    def __init__(self, path: Path) -> None:
        self.store = SampleStore(path)

    @staticmethod
    def key(task: dict[str, Any], code: str, timeout: float) -> str:
        from .sandbox import runs_needed

        runs = runs_needed(task)  # in the key only where > 1: other tasks' verdicts stay valid
        return _sha(code, task.get("test"), task.get("context") or "", timeout, *([runs] if runs > 1 else []))

    def run(self, tasks: Sequence[dict[str, Any]], samples: Sequence[dict[str, Any]], timeout: float,
            workers: int, progress: bool = True) -> list[dict[str, Any]]:
        from .sandbox import evaluate_samples

        by_id = {t["task_id"]: t for t in tasks}
        keys = [self.key(by_id[s["task_id"]], s["output"], timeout) for s in samples]
        todo_idx = [i for i, k in enumerate(keys) if k not in self.store]
        todo_keys: dict[str, int] = {}
        for i in todo_idx:
            todo_keys.setdefault(keys[i], i)
        fresh = {}
        if todo_keys:
            first = list(todo_keys.values())
            res = evaluate_samples([by_id[t] for t in {samples[i]["task_id"] for i in first}],
                                   [{"task_id": samples[i]["task_id"], "output": samples[i]["output"]} for i in first],
                                   timeout=timeout, workers=workers, progress=progress)
            for i, r in zip(first, res, strict=True):
                row = {"key": keys[i], "passed": r["passed"], "status": r["status"], "detail": (r.get("detail") or "")[-400:]}
                fresh[keys[i]] = row
            self.store.add([r for r in fresh.values() if r["status"] != "error"])
        out = []
        for s, k in zip(samples, keys, strict=True):
            v = fresh.get(k) or self.store.get(k)
            out.append({**s, "passed": bool(v["passed"]), "status": v["status"], "detail": v["detail"]})
        return out


def score_set(tasks: Sequence[dict[str, Any]], samples: Sequence[dict[str, Any]], exec_cache: ExecCache,
              timeout: float, workers: int, progress: bool = True) -> list[dict[str, Any]]:
    """One result row per sample: executed against the test when the task has one, else exact match."""
    by_id = {t["task_id"]: t for t in tasks}
    rows = []
    for s in samples:
        t = by_id[s["task_id"]]
        code = edited_program(s.get("template") or "chat_v1", s["reply"], t["input"])
        rows.append({"task_id": s["task_id"], "sample": s["sample"], "output": code,
                     "unchanged": normalize_code(code) == normalize_code(t["input"]), "empty": not code.strip(),
                     "edit_ratio": round(edit_ratio(t["input"], t["output"]), 4)})
    with_test = [r for r in rows if by_id[r["task_id"]].get("test")]
    executed = exec_cache.run(tasks, with_test, timeout, workers, progress) if with_test else []
    by_pos = {id(r): e for r, e in zip(with_test, executed, strict=True)}
    out = []
    for r in rows:
        if id(r) in by_pos:
            e = by_pos[id(r)]
            out.append({**r, "scoring": "execution", "passed": e["passed"], "status": e["status"], "detail": e["detail"]})
        else:
            ok = normalize_code(r["output"]) == normalize_code(by_id[r["task_id"]]["output"])
            out.append({**r, "scoring": "exact_match", "passed": ok, "status": "passed" if ok else "failed",
                        "detail": "exact match of normalized code with the reference"})
    return out


def set_metrics(results: Sequence[dict[str, Any]], gen_stats: dict[str, Any] | None = None) -> dict[str, Any]:
    """pass@k, status counts, unchanged/empty replies and pass rate by reference edit-ratio bin."""
    from .sandbox import score_results

    m = score_results(results)
    m["scoring"] = dict(Counter(r["scoring"] for r in results))
    m["unchanged"] = sum(r["unchanged"] for r in results)
    m["empty"] = sum(r["empty"] for r in results)
    bins: dict[str, dict[str, int]] = {}
    for r in results:
        b = bins.setdefault(ratio_bin(r["edit_ratio"]), {"samples": 0, "passed": 0})
        b["samples"] += 1
        b["passed"] += int(r["passed"])
    m["by_edit_ratio"] = {k: {**v, "pass_rate": round(100 * v["passed"] / v["samples"], 2)}
                          for k, v in sorted(bins.items())}
    if gen_stats:
        m["generation"] = gen_stats
    return m


# --------------------------------------------------------------------------- one model, all its sets
def evaluate_model(cfg: Profile, stage_out: Path, spec: ModelSpec, sets: dict[str, list[dict[str, Any]]],
                   gen: HFGenerator | None = None, progress: bool = True,
                   generated: dict[tuple[str, str], dict[str, Any]] | None = None) -> dict[str, Any]:
    """Generate (what is not cached; all sets in one stream), score and write ``<label>/samples.jsonl``,
    ``results.jsonl`` and ``metrics.json`` (one entry per set). ``generated`` is what an earlier
    ``generate_hf`` call over these sets returned, when the replies were written together with other
    prompts'. Returns the metrics."""
    ev = cfg.evaluation
    mdir = Path(stage_out) / spec.label
    store = store_for(stage_out, spec)
    decoding = decoding_from(cfg)
    exec_cache = ExecCache(Path(stage_out) / "exec_cache.jsonl")
    metrics_path = mdir / "metrics.json"
    old = read_json(metrics_path) if metrics_path.is_file() else {}
    metrics: dict[str, Any] = dict(old.get("sets", {}))
    results_all: list[dict[str, Any]] = []
    identity = spec.identity()
    if spec.kind != "api" and generated is None:
        if gen is None:
            gen = HFGenerator(spec, ev.dtype, ev.threads)
        generated = generate_hf(gen, [(spec, name, tasks) for name, tasks in sets.items()], decoding,
                                {spec.label: store}, ev.batch_size, progress)
    for set_name, tasks in sets.items():
        if spec.kind == "api":
            stats = generate_api(spec, cfg, set_name, tasks, decoding, store, Path(stage_out) / "llm_cache.sqlite")
            dtype = "api"
        else:
            stats = dict(generated[(spec.label, set_name)])
            dtype = stats["dtype"]
        samples = []
        for t in tasks:
            for s in range(decoding.n):
                key = sample_key(identity, decoding, dtype, t, s)
                if key in store:
                    samples.append(store.get(key))
        stats["seconds_when_generated"] = round(sum(s.get("seconds") or 0 for s in samples), 2)
        stats["stops"] = stop_counts(samples)
        results = score_set(tasks, samples, exec_cache, ev.timeout_s, ev.workers, progress)
        metrics[set_name] = set_metrics(results, stats)
        results_all += [{"set": set_name, **r} for r in results]
    prev = [r for r in (iter_jsonl(mdir / "results.jsonl") if (mdir / "results.jsonl").is_file() else [])
            if r.get("set") not in sets]
    write_jsonl(mdir / "results.jsonl", prev + results_all)
    write_json(metrics_path, {"model": spec.label, "role": spec.role, "identity": identity, "run": spec.run,
                              "decoding": asdict(decoding), "sets": metrics})
    return metrics


# --------------------------------------------------------------------------- the study
def count_tokens(tok, text: str) -> int:
    """Tokens of ``text`` alone (no BOS): what the token bound of a reply is computed from."""
    return len(tok(text, add_special_tokens=False).input_ids)


def over_bound(tasks: Sequence[dict[str, Any]], decoding: Decoding, template: str,
               count: Callable[[str], int]) -> list[str]:
    """The tasks whose reference edit, written as ``template``'s reply, has more tokens than the bound
    ``decoding`` gives a reply to its input (``Decoding.bound``).

    The bound stops rambling replies early, but a task that adds much code to a short input (EditEval/37:
    31 input tokens, a bound of 110, 191 in its reference reply) may need more: a reply as long as its
    reference is cut there, so only a shorter correct edit can pass. Counting them says what the bound
    costs before any model runs."""
    return [t["task_id"] for t in tasks
            if count(render_response(template, t["output"], t["input"])) > decoding.bound(count(t["input"]))]


def check_references(cfg: Profile, stage_out: Path, sets: dict[str, list[dict[str, Any]]],
                     progress: bool = True) -> dict[str, Any]:
    """Execute every reference edit (a correct harness passes nearly all of them) and count the references
    longer than their token bound (``over_bound``, in the base model's tokens and the tuned model's reply
    format)."""
    from .models import load_tokenizer

    ev = cfg.evaluation
    exec_cache = ExecCache(Path(stage_out) / "exec_cache.jsonl")
    tok = load_tokenizer(cfg.training.base_model)
    count = functools.partial(count_tokens, tok)
    decoding, report = decoding_from(cfg), {}
    for name, tasks in sets.items():
        entry = report[name] = {"tasks": len(tasks), "with_tests": 0,
                                "over_bound": over_bound(tasks, decoding, cfg.training.prompt_template, count)}
        with_test = [t for t in tasks if t.get("test")]
        if not with_test:
            continue
        samples = [{"task_id": t["task_id"], "output": t["output"]} for t in with_test]
        t0 = time.perf_counter()
        res = exec_cache.run(with_test, samples, ev.timeout_s, ev.workers, progress)
        entry.update({"with_tests": len(res), "passed": sum(r["passed"] for r in res),
                      "failed": [r["task_id"] for r in res if not r["passed"]],
                      "seconds": round(time.perf_counter() - t0, 2)})
    write_json(Path(stage_out) / "references.json", report)
    return report


def base_spec(cfg: Profile, template: str) -> ModelSpec:
    """The base model with one prompt template (an unknown name fails here, naming the templates that exist)."""
    get_template(template)
    return ModelSpec(f"base-{template}", cfg.training.base_model, template, role="base")


def base_specs(cfg: Profile) -> list[ModelSpec]:
    return [base_spec(cfg, p) for p in cfg.evaluation.base_prompts]


def selection_set(cfg: Profile, sets: dict[str, list[dict[str, Any]]]) -> str:
    """Where the base prompt is chosen: the configured set if evaluated, else the other non-EditEval one."""
    want = cfg.evaluation.prompt_selection_set
    for name in (want, "own", "test_split"):
        if sets.get(name):
            return name
    raise ValueError("evaluation.sets: choosing the base prompt needs 'own' or 'test_split' (never EditEval, "
                     "which would tune the prompt on the benchmark)")


def evaluate_base(cfg: Profile, stage_out: Path, sets: dict[str, list[dict[str, Any]]],
                  progress: bool = True) -> dict[str, Any]:
    """Score the base model with every base prompt on the selection set (or all sets), keep the best
    prompt by pass@1 there, and score that one on every set."""
    sel = selection_set(cfg, sets)
    specs = base_specs(cfg)
    ev = cfg.evaluation
    table: dict[str, dict[str, Any]] = {}
    chosen = sets if ev.all_prompts_on_all_sets else {sel: sets[sel]}
    gen = HFGenerator(specs[0], ev.dtype, ev.threads)  # same weights for every prompt: loaded once
    generated = generate_hf(gen, [(spec, name, tasks) for spec in specs for name, tasks in chosen.items()],
                            decoding_from(cfg), {spec.label: store_for(stage_out, spec) for spec in specs},
                            ev.batch_size, progress)  # every prompt's replies in one stream
    for spec in specs:  # their replies are written: score them
        table[spec.template] = evaluate_model(cfg, stage_out, spec, chosen, progress=progress, generated=generated)
    best = max(specs, key=lambda s: (table[s.template][sel].get("pass@1", 0.0), -specs.index(s)))
    rest = {name: tasks for name, tasks in sets.items() if name not in chosen}
    if rest:  # the sets it has no replies on yet; its metrics.json keeps the ones scored above
        gen.spec = best
        table[best.template] = evaluate_model(cfg, stage_out, best, rest, gen, progress)
    summary = {"selection_set": sel, "best": best.template, "label": best.label,
               "pass@1": {p: {s: m.get("pass@1") for s, m in sets_m.items()} for p, sets_m in table.items()}}
    write_json(Path(stage_out) / "base_prompts.json", summary)
    return summary


def load_runs(out: Path) -> dict[str, Any]:
    path = Path(out) / "04_training" / "runs.json"
    runs = read_json(path)
    if not isinstance(runs, dict) or "runs" not in runs or "main" not in runs:
        raise ValueError(f"{path}: expected {{'main': <run name>, 'runs': [...]}}")
    names = [r.get("name") for r in runs["runs"]]
    if runs["main"] not in names:
        raise ValueError(f"{path}: main run {runs['main']!r} is not among the runs ({', '.join(map(str, names))})")
    return runs


def run_spec(cfg: Profile, out: Path, run: dict[str, Any], role: str) -> ModelSpec:
    adapter = Path(run["adapter"])
    if not adapter.is_absolute():
        adapter = Path(out) / "04_training" / adapter
        if not adapter.exists():
            adapter = Path(out) / run["adapter"]
    if not is_trained_dir(adapter):
        raise FileNotFoundError(f"{adapter}: no trained weights (adapter_config.json or {TRAINED_WEIGHTS}; run "
                                f"{run['name']!r} in 04_training/runs.json)")
    label = f"tuned-{run['name']}" if role == "tuned" else f"run-{run['name']}"
    return ModelSpec(label, run.get("base_model") or cfg.training.base_model,
                     run.get("prompt_template") or cfg.training.prompt_template, str(adapter), role=role,
                     run=run["name"], info={k: run.get(k) for k in ("data_fraction", "lora_r", "mix", "train_seed")})


def main_spec(cfg: Profile, out: Path) -> ModelSpec:
    """The tuned model: stage 04's main run, with the template it was trained on."""
    runs = load_runs(out)
    return run_spec(cfg, out, next(r for r in runs["runs"] if r["name"] == runs["main"]), "tuned")


def evaluate_runs(cfg: Profile, out: Path, stage_out: Path, sets: dict[str, list[dict[str, Any]]],
                  progress: bool = True) -> dict[str, Any]:
    """The main run on every set, with its training template; the sweep runs on ``sweep_sets`` if asked."""
    runs = load_runs(out)
    spec = main_spec(cfg, out)
    report = {"main": spec.label, "template": spec.template, "sets": evaluate_model(cfg, stage_out, spec, sets,
                                                                                    progress=progress)}
    sweeps = {}
    if cfg.evaluation.eval_sweep_runs:
        sub = {k: v for k, v in sets.items() if k in cfg.evaluation.sweep_sets}
        for run in runs["runs"]:
            if run["name"] == runs["main"] or not sub:
                continue
            s = run_spec(cfg, out, run, "sweep")
            sweeps[s.label] = {**s.info, "run": s.run, "sets": evaluate_model(cfg, stage_out, s, sub, progress=progress)}
    report["sweeps"] = sweeps
    report["interpolations"] = evaluate_interpolations(cfg, stage_out, spec, sets, progress)
    return report


def evaluate_interpolations(cfg: Profile, stage_out: Path, main: ModelSpec, sets: dict[str, list[dict[str, Any]]],
                            progress: bool = True) -> dict[str, Any]:
    """The main run's weights moved only part of the way from the base model (WiSE-FT, Wortsman et al. 2022),
    each on ``sweep_sets``. Does tuning lose something the base model could do on the transfer sets? If so,
    a model between the two keeps more of it; if not, the transfer sets stay where the base model is."""
    sub = {k: v for k, v in sets.items() if k in cfg.evaluation.sweep_sets}
    report = {}
    for alpha in dict.fromkeys(cfg.evaluation.interpolations) if sub else []:  # each value once
        s = replace(main, label=f"interp-{alpha:g}", role="interpolation", scale=alpha, info={"alpha": alpha})
        report[s.label] = {"alpha": alpha, "run": main.run, "sets": evaluate_model(cfg, stage_out, s, sub,
                                                                                   progress=progress)}
    return report


def evaluate_api_models(cfg: Profile, stage_out: Path, sets: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    out = {}
    for name in cfg.evaluation.api_models:
        spec = ModelSpec(f"api-{name.replace('/', '_')}", name, cfg.evaluation.api_prompt, kind="api", role="api")
        out[spec.label] = evaluate_model(cfg, stage_out, spec, sets)
    return out


# --------------------------------------------------------------------------- base vs tuned
def _per_task(stage_out: Path, label: str, set_name: str) -> dict[str, float]:
    """Per-task share of a model's samples that pass on a set (0 or 1 when decoding is greedy)."""
    counts: dict[str, list[int]] = {}
    for r in iter_jsonl(Path(stage_out) / label / "results.jsonl"):
        if r["set"] == set_name:
            c = counts.setdefault(r["task_id"], [0, 0])
            c[0] += bool(r["passed"])
            c[1] += 1
    return {t: passed / n for t, (passed, n) in counts.items()}


def compare(base: dict[str, float], tuned: dict[str, float]) -> dict[str, Any]:
    """Paired comparison on the same tasks: a task is gained when the tuned model passes a larger share of
    its samples than the base model, lost when a smaller one. The exact sign test on the gained and lost
    tasks is McNemar's exact test when each model has one (greedy) sample per task; with several samples
    it uses every sample, not only the first, so a lucky draw flips no task."""
    from scipy.stats import binomtest

    ids = sorted(set(base) & set(tuned))
    gained = [t for t in ids if tuned[t] > base[t]]
    lost = [t for t in ids if base[t] > tuned[t]]
    both = sum(base[t] == tuned[t] > 0 for t in ids)
    d = len(gained) + len(lost)
    p = binomtest(len(gained), d, 0.5).pvalue if d else 1.0
    return {"n": len(ids), "both": both, "neither": len(ids) - both - d, "gained": gained, "lost": lost,
            "mcnemar_exact_p": round(float(p), 6)}


def _pass1_by_set(metrics: dict[str, dict[str, Any]]) -> dict[str, float]:
    """pass@1 in % per set, rounded as scores.json reports every model's."""
    return {s: round(m.get("pass@1", 0.0), 2) for s, m in metrics.items()}


def write_scores(stage_out: Path, sets: dict[str, list[dict[str, Any]]], base: dict[str, Any],
                 tuned: dict[str, Any], api: dict[str, Any] | None = None) -> dict[str, Any]:
    """``scores.json`` (pass@1 % per set, base vs tuned) and ``comparison.json`` (paired, per task)."""
    stage_out = Path(stage_out)
    base_m = read_json(stage_out / base["label"] / "metrics.json")["sets"]
    scores: dict[str, Any] = {"sets": {}, "base_prompts": base["pass@1"], "base_prompt": base["best"],
                              "selection_set": base["selection_set"], "base_label": base["label"],
                              "tuned_label": tuned["main"], "tuned_model": tuned["main"],
                              "tuned_template": tuned["template"]}
    comparison = {}
    for name, tasks in sets.items():
        bm, tm = base_m[name], tuned["sets"][name]
        scores["sets"][name] = {
            "base": round(bm.get("pass@1", 0.0), 2), "tuned": round(tm.get("pass@1", 0.0), 2), "n": len(tasks),
            "base_prompt": base["best"], "scoring": "execution" if "execution" in tm["scoring"] else "exact_match",
            "base_unchanged": bm["unchanged"], "tuned_unchanged": tm["unchanged"],
        }
        comparison[name] = compare(_per_task(stage_out, base["label"], name), _per_task(stage_out, tuned["main"], name))
    if tuned.get("sweeps"):
        scores["sweeps"] = {k: {"data_fraction": v.get("data_fraction"), "lora_r": v.get("lora_r"),
                                "mix": v.get("mix") or "all", "train_seed": v.get("train_seed"),
                                **_pass1_by_set(v["sets"])}
                            for k, v in tuned["sweeps"].items()}
    if tuned.get("interpolations"):
        scores["interpolations"] = {k: {"alpha": v["alpha"], **_pass1_by_set(v["sets"]),
                                        "unchanged": {s: m.get("unchanged") for s, m in v["sets"].items()}}
                                    for k, v in tuned["interpolations"].items()}
    if api:
        scores["api"] = {k: _pass1_by_set(v) for k, v in api.items()}
    write_json(stage_out / "scores.json", scores)
    write_json(stage_out / "comparison.json", comparison)
    return {"scores": scores, "comparison": comparison}


def scores_table(scores: dict[str, Any]):
    import pandas as pd

    return pd.DataFrame([{"set": k, **v} for k, v in scores["sets"].items()])


def generation_table(stage_out: Path):
    """Generation time and tokens per model and set, from the metrics files."""
    import pandas as pd

    rows = []
    for mfile in sorted(Path(stage_out).glob("*/metrics.json")):
        m = read_json(mfile)
        for s, v in m["sets"].items():
            g = v.get("generation", {})
            rows.append({"model": m["model"], "set": s, "pass@1": round(v.get("pass@1", 0.0), 2),
                         "unchanged": v["unchanged"], "generated now": g.get("generated"),
                         "seconds now": g.get("seconds"), "seconds when generated": g.get("seconds_when_generated"),
                         "new tokens": g.get("new_tokens"), "tok/s": g.get("tokens_per_s"),
                         "ended by": ", ".join(f"{k} {n}" for k, n in sorted((g.get("stops") or {}).items()))})
    return pd.DataFrame(rows)


def flipped_examples(stage_out: Path, sets: dict[str, list[dict[str, Any]]], base_label: str, tuned_label: str,
                     set_name: str, k: int = 2) -> list[dict[str, Any]]:
    """A few tasks the tuned model gained or lost, with both replies, for reading. With several samples per
    task, the model that passed more of them shows a passing one and the other its first failing one."""
    comp = read_json(Path(stage_out) / "comparison.json")[set_name]
    by_id = {t["task_id"]: t for t in sets[set_name]}
    results = {label: sorted((r for r in iter_jsonl(Path(stage_out) / label / "results.jsonl") if r["set"] == set_name),
                             key=lambda r: r["sample"]) for label in (base_label, tuned_label)}

    def code(label: str, tid: str, passing: bool) -> str:
        rows = [r for r in results[label] if r["task_id"] == tid]
        return next((r["output"] for r in rows if bool(r["passed"]) == passing), rows[0]["output"] if rows else "")

    out = []
    for kind in ("gained", "lost"):
        for tid in comp[kind][:k]:
            out.append({"kind": kind, "task_id": tid, "instruction": by_id[tid]["instruction"],
                        "input": by_id[tid]["input"], "base": code(base_label, tid, passing=kind == "lost"),
                        "tuned": code(tuned_label, tid, passing=kind == "gained")})
    return out
