"""Stage 02: grow the seed tasks into an instruction-tuning set.

The paper does this with an LLM in two steps. *Self-instruct bootstrapping*: each prompt shows 8
instructions sampled from the pool (7 seeds + 1 generated), names an edit intent to steer
diversity, and asks for new ones; a new instruction enters the pool only if its ROUGE-L against
every pool member is at most 0.7. *Scenario-conditional generation*: for each instruction the LLM
lists realistic application scenarios, one is picked at random, and the LLM writes an input
program for that scenario and its edited output. This module implements both over the project's
LLM client (cached, so an interrupted run resumes for free) and assembles the stage's outputs; the
offline default, the procedural synthesizer, lives in ``synth.py``; the authors' released instances
are read by ``released.py``. ``generation.method`` picks ``synth``, ``llm``, ``both`` or ``published``.

Every reply is parsed defensively: a malformed or partial reply is counted, never fatal.
"""

from __future__ import annotations

import ast
import difflib
import hashlib
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import GenerationConfig, Profile, ProfileError, ScenarioConfig, SelfInstructConfig
from .files import make_record, read_jsonl, write_json, write_jsonl
from .rouge import RougeFilter

PROMPT_DIR = Path(__file__).resolve().parent / "prompts"
SELF_INSTRUCT_PROMPT = "self_instruct_v1"
SCENARIOS_PROMPT = "scenarios_v1"
INSTANCES_PROMPT = "instances_v1"
BUILTIN_SEEDS = "seed_instructions_v1"

# Edit intents named in the self-instruct prompt to steer it (the paper lists 26-27 such types).
INTENTS: tuple[str, ...] = (
    "add a new feature or option",
    "add error handling",
    "add input validation",
    "handle an edge case (empty input, None, zero, duplicates)",
    "fix a logic bug",
    "fix an off-by-one error",
    "optimize performance",
    "reduce memory usage",
    "add caching or memoization",
    "refactor for readability",
    "extract a helper function",
    "remove duplicated code",
    "rename for clarity",
    "add type hints",
    "add or improve documentation",
    "add logging",
    "change the output format or return type",
    "change a data structure",
    "make behaviour configurable with a parameter",
    "add concurrency or parallelism",
    "improve security",
    "replace a hand-written routine with the standard library",
    "update deprecated API usage",
    "make the code more generic or reusable",
    "sort, filter or aggregate results differently",
    "internationalization and text handling (case, encoding, locale)",
)


# --------------------------------------------------------------------------- prompt templates
@dataclass(frozen=True)
class PromptTemplate:
    """A versioned chat prompt read from ``prompts/<name>.txt``.

    ``name`` (e.g. ``self_instruct_v1``) is the version that goes into every request's cache key, so
    a new wording must get a new file rather than silently reuse cached replies.
    """

    name: str
    system: str
    user: str

    def render(self, **values: Any) -> list[dict[str, str]]:
        """Chat messages with ``{{key}}`` placeholders filled in one pass (code braces stay intact)."""

        def fill(text: str) -> str:
            def sub(m: re.Match) -> str:
                if m.group(1) not in values:
                    raise KeyError(f"prompt {self.name}: no value for placeholder {{{{{m.group(1)}}}}}")
                return str(values[m.group(1)])

            return re.sub(r"\{\{(\w+)\}\}", sub, text)

        msgs = [{"role": "system", "content": fill(self.system)}] if self.system else []
        return msgs + [{"role": "user", "content": fill(self.user)}]

    def text(self) -> str:
        """The template as a reader sees it (for the notebook)."""
        return f"[system]\n{self.system}\n[user]\n{self.user}"


def load_template(name: str, prompt_dir: Path = PROMPT_DIR) -> PromptTemplate:
    """Parse ``[system]`` / ``[user]`` sections; '#' lines before the first section are notes."""
    path = prompt_dir / f"{name}.txt"
    if not path.is_file():
        raise FileNotFoundError(f"prompt template {name!r} not found ({path.name} in the prompts folder)")
    sections: dict[str, list[str]] = {}
    current: str | None = None
    for line in path.read_text(encoding="utf-8").splitlines():
        tag = line.strip().lower()
        if tag in ("[system]", "[user]"):
            current = tag[1:-1]
            sections[current] = []
        elif current is not None:
            sections[current].append(line)
        elif line.strip() and not line.startswith("#"):
            raise ValueError(f"{path.name}: text before the first [system]/[user] section: {line!r}")
    if "user" not in sections:
        raise ValueError(f"{path.name}: no [user] section")
    return PromptTemplate(
        name=name,
        system="\n".join(sections.get("system", [])).strip(),
        user="\n".join(sections["user"]).strip(),
    )


def builtin_seed_instructions(name: str = BUILTIN_SEEDS) -> list[str]:
    """The small list of hand-written seed instructions shipped beside the prompts."""
    lines = (PROMPT_DIR / f"{name}.txt").read_text(encoding="utf-8").splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]


# --------------------------------------------------------------------------- seeds
@dataclass
class Seeds:
    """What stage 01 left for us, plus the instruction pool self-instruct starts from."""

    records: list[dict[str, Any]]
    instructions: list[str]
    builtin_added: int = 0
    note: str = ""


def load_seeds(seeds_path: Path, min_instructions: int) -> Seeds:
    """Read ``01_seeds/seeds.jsonl``; top the instruction pool up with built-in seeds when too small.

    A missing file is an error (stage 01 has not run); an empty or small one is normal for the
    offline profiles, where the project's own history yields only a few usable commits.
    """
    records = read_jsonl(seeds_path)
    instructions = _unique(r.get("instruction", "").strip() for r in records)
    note = f"{len(instructions)} distinct seed instructions from {seeds_path.parent.name}/{seeds_path.name}"
    added = 0
    if len(instructions) < min_instructions:
        builtin = [s for s in builtin_seed_instructions() if s not in instructions]
        added = len(builtin)
        instructions += builtin
        note += (
            f"; fewer than {min_instructions}, so {added} built-in seed instructions "
            f"({BUILTIN_SEEDS}.txt) were added to the self-instruct pool"
        )
    return Seeds(records=records, instructions=instructions, builtin_added=added, note=note)


def _unique(items) -> list[str]:
    seen: dict[str, None] = {}
    for it in items:
        if it and it not in seen:
            seen[it] = None
    return list(seen)


def seed_instances(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Seed tasks that carry code become instances themselves (``source: seed``)."""
    out = []
    for r in records:
        if not (r.get("input") and r.get("output")) or r["input"] == r["output"]:
            continue
        meta = dict(r.get("meta") or {})
        meta.setdefault("kind", "commit")
        meta["clarified_by"] = r.get("source", "")
        if not isinstance(meta.get("behaviour_change"), bool):
            meta["behaviour_change"] = behaviour_changes(r["input"], r["output"])
        rec = make_record(r["id"], r["instruction"], r["input"], r["output"], r.get("scenario") or "", "seed")
        rec["meta"] = meta
        out.append(rec)
    return out


# --------------------------------------------------------------------------- reply parsing
_ITEM = re.compile(r"^\s*(?:[-*]\s*)?\(?(\d{1,3})\s*[.):\]]\s*(.*)$")
_PREFIX = re.compile(
    r"^(?:\*\*)?(?:new\s+)?(?:instruction|scenario|task)\s*(?:\d+)?\s*[:\-]\s*(?:\*\*)?", re.I
)


def parse_numbered_list(text: str | None) -> list[str]:
    """Items of a numbered list ("1. ...", "2) ...", "**3.** ..."), in order, cleaned.

    An indented line right below an item continues it (wrapped text); anything else that is not an
    item (a preamble such as "Sure, here are...", a closing remark) is ignored. Never raises.
    """
    items: list[str] = []
    open_item = False
    for raw in (text or "").splitlines():
        line = raw.strip().replace("**", "") if raw.strip().startswith("**") else raw
        m = _ITEM.match(line)
        if m:
            items.append(m.group(2))
            open_item = True
        elif open_item and raw[:1].isspace() and raw.strip() and not raw.strip().startswith("```"):
            items[-1] += " " + raw.strip()
        else:
            open_item = False
    return [c for c in (clean_item(i) for i in items) if c]


def clean_item(item: str) -> str:
    """Strip labels, quotes and markdown from one list item."""
    s = _PREFIX.sub("", item.strip()).strip()
    s = s.strip("*_` ").strip()
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "\"'":
        s = s[1:-1].strip()
    return re.sub(r"\s+", " ", s)


def instruction_problem(text: str) -> str | None:
    """Why a parsed line is not a usable instruction (None when it is)."""
    words = text.split()
    if len(words) < 3:
        return "too_short"
    if len(words) > 80:
        return "too_long"
    if not text[0].isalpha():
        return "not_a_sentence"
    if "```" in text:
        return "contains_code"
    return None


_BLOCK = r"```[ \t]*(?:python3?|py)?[ \t]*\n(.*?)\n?[ \t]*```"
_HEADER = r"[#*_ \t]*{name}(?:\s+code)?[ \t]*[*_]*:?[*_]*[ \t]*\n+"
_INSTANCE = re.compile(
    _HEADER.format(name="input") + r"\s*" + _BLOCK + r"\s*" + _HEADER.format(name="output") + r"\s*" + _BLOCK,
    re.I | re.S,
)


class InstanceRejected(ValueError):
    """A reply to the instance prompt that cannot become a training instance; ``reason`` is counted."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def parse_instance_reply(text: str | None) -> tuple[str, str]:
    """(input, output) from the strict two-block reply; raises InstanceRejected(reason).

    Reasons: ``format`` (no 'Input code' + 'Output code' fenced blocks), ``syntax_input`` /
    ``syntax_output`` (not valid Python), ``unchanged`` (output == input), ``empty``.
    """
    m = _INSTANCE.search(text or "")
    if not m:
        raise InstanceRejected(
            "format", "expected 'Input code:' and 'Output code:' each with a ```python block"
        )
    src, dst = m.group(1).strip("\n").rstrip(), m.group(2).strip("\n").rstrip()
    if not src.strip() or not dst.strip():
        raise InstanceRejected("empty")
    for name, code in (("syntax_input", src), ("syntax_output", dst)):
        try:
            ast.parse(code)
        except (SyntaxError, ValueError) as exc:
            raise InstanceRejected(name, str(exc)) from None
    if src.strip() == dst.strip():
        raise InstanceRejected("unchanged")
    return src + "\n", dst + "\n"


class _StripCosmetics(ast.NodeTransformer):
    """Drop docstrings and annotations: edits that touch only those do not change behaviour."""

    def _body(self, node):
        self.generic_visit(node)
        body = node.body
        if (
            body
            and isinstance(body[0], ast.Expr)
            and isinstance(getattr(body[0], "value", None), ast.Constant)
        ):
            if isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
        return node

    visit_Module = visit_ClassDef = _body

    def visit_FunctionDef(self, node):
        node.returns = None
        for a in node.args.posonlyargs + node.args.args + node.args.kwonlyargs:
            a.annotation = None
        for a in (node.args.vararg, node.args.kwarg):
            if a is not None:
                a.annotation = None
        return self._body(node)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_AnnAssign(self, node):
        if node.value is None:
            return None
        return ast.copy_location(
            ast.Assign(targets=[node.target], value=node.value, lineno=node.lineno), node
        )


def behaviour_changes(before: str, after: str) -> bool:
    """Heuristic ``meta.behaviour_change``: False when only comments, docstrings, annotations or
    formatting differ (same AST once those are stripped); True otherwise, or if either fails to parse.
    """
    try:
        a, b = (ast.dump(_StripCosmetics().visit(ast.parse(s))) for s in (before, after))
    except (SyntaxError, ValueError):
        return True
    return a != b


# --------------------------------------------------------------------------- LLM client glue
def make_client(cfg: Profile, stage_out: Path):
    """The project's cached LLM client for this stage; clear error when no endpoint is configured."""
    if cfg.llm.provider == "none":
        raise ProfileError(
            f"profile {cfg.name}: generation.method={cfg.generation.method!r} needs an LLM, but llm.provider "
            "is 'none'; allowed: set llm.provider: openai (with llm.base_url/llm.model and the key in the "
            "environment variable named by llm.api_key_env), or use generation.method: synth"
        )
    from .llm import LLMClient

    return LLMClient(cfg.llm, cache_path=stage_out / "llm_cache.sqlite")


def _request(
    id: str,
    messages: list[dict[str, str]],
    version: str,
    temperature: float,
    max_tokens: int,
    sample: int = 0,
):
    from .llm import ChatRequest

    return ChatRequest(
        id=id,
        messages=messages,
        prompt_version=version,
        temperature=temperature,
        max_tokens=max_tokens,
        sample=sample,
    )


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:48] or "unspecified"


# --------------------------------------------------------------------------- self-instruct
@dataclass
class SelfInstructResult:
    """New instructions (dicts: id, instruction, intent, round) and what happened on the way."""

    instructions: list[dict[str, Any]]
    counts: dict[str, Any]
    examples: list[list[dict[str, str]]] = field(default_factory=list)  # first round's prompts, for display


def _examples_block(examples: list[str]) -> str:
    return "\n".join(f"{i}. {e}" for i, e in enumerate(examples, 1))


def self_instruct(
    client,
    seed_instructions: list[str],
    cfg: SelfInstructConfig,
    seed: int,
    progress: bool = True,
) -> SelfInstructResult:
    """Bootstrap rounds until the pool (seeds + new) reaches ``target_pool_size`` or ``max_rounds``.

    Every prompt's examples and intent come from an RNG seeded by (seed, round, request), and the
    pool evolves only through the (cached) replies, so a re-run sends exactly the same requests and a
    resumed run sends only the ones that never got an answer.
    """
    tpl = load_template(SELF_INSTRUCT_PROMPT)
    intents = list(cfg.intents or INTENTS)
    n_gen_slots = max(cfg.num_prompt_instructions - cfg.num_seed_in_prompt, 0)
    rouge = RougeFilter(cfg.rouge_threshold)  # same decisions as rouge-score, fast at scale
    for s in seed_instructions:
        rouge.add(s)
    new: list[dict[str, Any]] = []
    c: Counter = Counter()
    first_prompts: list[list[dict[str, str]]] = []
    stop = "max_rounds"
    for rnd in range(cfg.max_rounds):
        if len(seed_instructions) + len(new) >= cfg.target_pool_size:
            stop = "target_pool_size"
            break
        reqs, req_intents = [], []
        for j in range(cfg.requests_per_round):
            rng = random.Random(f"{seed}:self_instruct:{rnd}:{j}")
            # ``sample`` numbers the request: keeps requests distinct even if a tiny pool repeats a prompt
            sample = rnd * cfg.requests_per_round + j
            n_gen = min(n_gen_slots, len(new))
            n_seed = min(cfg.num_prompt_instructions - n_gen, len(seed_instructions))
            examples = rng.sample(seed_instructions, n_seed) + [
                x["instruction"] for x in rng.sample(new, n_gen)
            ]
            # intents are cycled in order, so each gets an equal share of the requests
            intent = intents[sample % len(intents)] if cfg.steer_intents and intents else None
            rule = (
                f"5. Most of the new instructions should be of this kind of edit: {intent}.\n"
                if intent
                else ""
            )
            msgs = tpl.render(
                num_new=cfg.num_new_per_request, examples=_examples_block(examples), intent_rule=rule
            )
            reqs.append(_request(f"si-{rnd}-{j}", msgs, tpl.name, cfg.temperature, cfg.max_tokens, sample))
            req_intents.append(intent)
        if rnd == 0:
            first_prompts = [r.messages for r in reqs[:2]]
        results = client.run(reqs, desc=f"self-instruct round {rnd + 1}")
        c["rounds"] += 1
        before = len(new)
        for res, intent in zip(results, req_intents, strict=True):
            _absorb_reply(res, intent, rnd, cfg, seed_instructions, new, rouge, c)
        if progress:
            print(
                f"self-instruct round {rnd + 1}: +{len(new) - before} new, pool {len(seed_instructions) + len(new)}"
            )
    else:
        if len(seed_instructions) + len(new) >= cfg.target_pool_size:
            stop = "target_pool_size"
    counts = {
        "seed_instructions": len(seed_instructions),
        **dict(sorted(c.items())),
        "new_instructions": len(new),
        "pool_size": len(seed_instructions) + len(new),
        "stopped_by": stop,
    }
    return SelfInstructResult(instructions=new, counts=counts, examples=first_prompts)


def _absorb_reply(res, intent, rnd, cfg, seeds, new, rouge, c: Counter) -> None:
    """Parse one reply and add its novel instructions to the pool, counting every outcome."""
    c["requests"] += 1
    c["cached"] += int(bool(getattr(res, "cached", False)))
    if not res.ok:
        c["failed_requests"] += 1
        return
    c["truncated_replies"] += int(getattr(res, "finish_reason", None) == "length")
    items = parse_numbered_list(res.text)
    if not items:
        c["malformed_replies"] += 1
        return
    if len(items) < cfg.num_new_per_request:
        c["partial_replies"] += 1
    c["parsed_instructions"] += len(items)
    for text in items[: cfg.num_new_per_request]:
        if len(seeds) + len(new) >= cfg.target_pool_size:
            c["over_target"] += 1
            continue
        problem = instruction_problem(text)
        if problem:
            c[f"rejected_{problem}"] += 1
        elif not rouge.add_if_novel(text):
            c["rejected_too_similar"] += 1
        else:
            new.append({"id": f"si{len(new):05d}", "instruction": text, "intent": intent, "round": rnd})
    c["extra_items_ignored"] += max(len(items) - cfg.num_new_per_request, 0)


# --------------------------------------------------------------------------- scenario-conditional
@dataclass
class ScenarioResult:
    records: list[dict[str, Any]]
    counts: dict[str, Any]
    rejected: list[dict[str, Any]] = field(default_factory=list)  # (id, reason, reply head) for the notebook


def scenario_instances(
    client,
    instructions: list[dict[str, Any]],
    cfg: ScenarioConfig,
    seed: int,
    progress: bool = True,
) -> ScenarioResult:
    """For each instruction: list scenarios, pick some at random (seeded), generate input/output code.

    Rejected replies (bad format, code that does not parse, output == input) are counted by reason.
    """
    sc_tpl, in_tpl = load_template(SCENARIOS_PROMPT), load_template(INSTANCES_PROMPT)
    todo = instructions[: cfg.max_instructions] if cfg.max_instructions else instructions
    c: Counter = Counter()
    sc_reqs = [
        _request(
            f"sc-{x['id']}",
            sc_tpl.render(instruction=x["instruction"], num_scenarios=cfg.scenarios_per_instruction),
            sc_tpl.name,
            cfg.temperature,
            cfg.scenario_max_tokens,
        )
        for x in todo
    ]
    sc_results = client.run(sc_reqs, desc="scenarios") if sc_reqs else []
    jobs: list[tuple[dict[str, Any], str]] = []
    for x, res in zip(todo, sc_results, strict=True):
        c["scenario_requests"] += 1
        if not res.ok:
            c["scenario_failed_requests"] += 1
            continue
        scenarios = _unique(s for s in parse_numbered_list(res.text) if len(s.split()) <= 20)
        if not scenarios:
            c["scenario_malformed_replies"] += 1
            continue
        if len(scenarios) < cfg.scenarios_per_instruction:
            c["scenario_partial_replies"] += 1
        rng = random.Random(f"{seed}:scenario:{x['instruction']}")
        for sc in rng.sample(scenarios, min(cfg.instances_per_instruction, len(scenarios))):
            jobs.append((x, sc))
    in_reqs = [
        _request(
            f"in-{x['id']}-{k}",
            in_tpl.render(scenario=sc, instruction=x["instruction"]),
            in_tpl.name,
            cfg.temperature,
            cfg.max_tokens,
        )
        for k, (x, sc) in enumerate(jobs)
    ]
    in_results = client.run(in_reqs, desc="instances") if in_reqs else []
    records, rejected = [], []
    for (x, sc), req, res in zip(jobs, in_reqs, in_results, strict=True):
        c["instance_requests"] += 1
        if not res.ok:
            c["instance_failed_requests"] += 1
            continue
        try:
            src, dst = parse_instance_reply(res.text)
        except InstanceRejected as exc:
            c[f"rejected_{exc.reason}"] += 1
            rejected.append({"id": req.id, "reason": exc.reason, "reply": (res.text or "")[:200]})
            continue
        intent = x.get("intent")
        records.append(
            make_record(
                f"self_instruct-{x['id']}-{_short_hash(sc)}",
                x["instruction"],
                src,
                dst,
                sc,
                "self_instruct",
                kind=_slug(intent) if intent else "unspecified",
                behaviour_change=behaviour_changes(src, dst),
                intent=intent,
                round=x.get("round"),
                prompts=[SELF_INSTRUCT_PROMPT, SCENARIOS_PROMPT, INSTANCES_PROMPT],
            )
        )
    c["instances"] = len(records)
    return ScenarioResult(records=records, counts=dict(sorted(c.items())), rejected=rejected)


def _short_hash(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:8]


# --------------------------------------------------------------------------- the stage
@dataclass
class GenerationResult:
    """Everything the notebook shows: the instances, counts per step, and the LLM usage if any."""

    records: list[dict[str, Any]]
    counts: dict[str, Any]
    seeds: Seeds
    self_instruct: SelfInstructResult | None = None
    scenarios: ScenarioResult | None = None
    client: Any = None


def run_generation(
    cfg: Profile, out: Path, stage_out: Path, progress: bool = True, client=None
) -> GenerationResult:
    """Run stage 02 as the profile says and write instances.jsonl, counts.json and usage.json.

    ``client`` may be passed in (tests); otherwise one is made from ``cfg.llm`` when the method
    needs it. All outputs are written atomically at the end; the LLM cache makes a re-run cheap.
    """
    gen: GenerationConfig = cfg.generation
    seeds = load_seeds(Path(out) / "01_seeds" / "seeds.jsonl", gen.self_instruct.min_seed_instructions)
    records: list[dict[str, Any]] = seed_instances(seeds.records) if gen.include_seeds else []
    counts: dict[str, Any] = {
        "method": gen.method,
        "seeds": {
            "seed_records": len(seeds.records),
            "seed_instances": len(records),
            "seed_instructions": len(seeds.instructions) - seeds.builtin_added,
            "builtin_added": seeds.builtin_added,
            "note": seeds.note,
        },
    }
    result = GenerationResult(records=records, counts=counts, seeds=seeds)
    own_client = client is None
    if gen.method in ("llm", "both"):
        client = client or make_client(cfg, stage_out)
        result.client = client
        si = self_instruct(client, seeds.instructions, gen.self_instruct, cfg.seed, progress)
        sc = scenario_instances(client, si.instructions, gen.scenarios, cfg.seed, progress)
        result.self_instruct, result.scenarios = si, sc
        counts["self_instruct"], counts["scenarios"] = si.counts, sc.counts
        records += sc.records
    if gen.method == "published":
        from .released import instance_records

        published_records, counts["published"] = instance_records(cfg)
        records += published_records
    if gen.method in ("synth", "both"):
        from .synth import synthesize

        synth_records, synth_counts = synthesize(gen.synth, seed=cfg.seed, progress=progress)
        counts["synth"] = synth_counts
        records += synth_records
    counts["per_source"] = dict(Counter(r["source"] for r in records).most_common())
    counts["per_kind"] = dict(Counter(r["meta"].get("kind", "unspecified") for r in records).most_common())
    counts["behaviour_change"] = sum(bool(r["meta"].get("behaviour_change")) for r in records)
    counts["total"] = len(records)
    write_jsonl(stage_out / "instances.jsonl", records)
    write_json(stage_out / "counts.json", counts)
    if result.client is not None:
        result.client.write_usage(stage_out / "usage.json")
        if own_client:
            result.client.close()
    else:
        write_json(
            stage_out / "usage.json", {"requests": 0, "note": f"generation.method={gen.method}: no LLM calls"}
        )
    return result


def unified_diff(record: dict[str, Any], context: int = 2) -> str:
    """The edit of one instance as a unified diff (what the notebook prints)."""

    def lines(text: str) -> list[str]:
        return [ln if ln.endswith("\n") else ln + "\n" for ln in text.splitlines(keepends=True)]

    return "".join(
        difflib.unified_diff(
            lines(record["input"]),
            lines(record["output"]),
            "input",
            "output",
            n=context,
        )
    )
