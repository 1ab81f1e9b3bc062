"""Profiles: every knob of the study, grouped by stage, validated by typed models.

A profile is a YAML file under ``params/`` (``smoke``, ``tiny``, ``paper``) or any path. Overrides
(``--set training.lora_r=8`` on the command line, ``overrides`` in a notebook) are merged on top
before validation, so a typo in either is caught the same way: one message that names the file, the
key path and what is allowed.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

REPO_ROOT = Path(__file__).resolve().parent.parent
PARAMS_DIR = REPO_ROOT / "params"
STAGES = ("01_seeds", "02_generation", "03_filtering", "04_training", "05_evaluation", "06_analysis")


class ProfileError(ValueError):
    """A profile that cannot be used; the message is meant for the user as it is."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# --------------------------------------------------------------------------- LLM client
class Prices(Section):
    prompt_per_1k: float = Field(0.0, ge=0, description="USD per 1,000 prompt tokens")
    completion_per_1k: float = Field(0.0, ge=0, description="USD per 1,000 completion tokens")


class LLMConfig(Section):
    """Any OpenAI-compatible endpoint. ``provider: none`` means the offline defaults are used."""

    provider: Literal["none", "openai"] = "none"
    base_url: str | None = Field(None, description="null = the OpenAI API; loopback servers need no key")
    model: str = "gpt-3.5-turbo"
    api_key_env: str = Field("OPENAI_API_KEY", description="NAME of the environment variable with the key")
    concurrency: int = Field(16, ge=1, le=1024, description="requests in flight at once")
    requests_per_minute: float | None = Field(None, gt=0)
    tokens_per_minute: float | None = Field(None, gt=0, description="counts prompt + max_tokens per request")
    max_retries: int = Field(6, ge=0, le=50, description="on 429/408/409/5xx, timeouts, dropped connections")
    backoff_base_s: float = Field(1.0, gt=0)
    backoff_max_s: float = Field(60.0, gt=0, description="also caps how long a Retry-After is honoured")
    timeout_s: float = Field(120.0, gt=0)
    temperature: float = Field(0.7, ge=0, le=2)
    max_tokens: int = Field(1024, ge=1)
    budget_usd: float | None = Field(None, ge=0, description="stop before this; earlier runs of the cache count")
    budget_tokens: int | None = Field(None, ge=0, description="stop before this; earlier runs of the cache count")
    prices: Prices = Prices()


# --------------------------------------------------------------------------- 01 seeds
class SeedFilters(Section):
    """CommitPackFT-style rules; message rules look at the subject line, the first that fails is counted."""

    min_message_chars: int = Field(10, ge=0, description="shortest subject line kept (characters)")
    max_message_chars: int = Field(300, ge=1, description="longest subject line kept (characters)")
    min_words: int = Field(2, ge=1, description="fewest words in the subject line")
    max_words: int = Field(40, ge=1, description="most words in the subject line")
    require_imperative: bool = Field(True, description="first word must be a known verb (base form)")
    reject_issue_refs: bool = Field(True, description="drop messages with #123, GH-1, ABC-12, 'fixes 12'")
    reject_urls: bool = Field(True, description="drop messages with http(s):// or www.")
    reject_merge_revert: bool = Field(True, description="drop 'Merge ...', 'Revert ...' messages")
    reject_bots: bool = Field(True, description="drop commits by bot authors (dependabot, [bot], ...)")
    min_code_tokens: int = Field(5, ge=0, description="fewest tokens in code before and after")
    max_code_tokens: int = Field(2048, ge=1, description="most tokens in code before and after")
    max_diff_ratio: float = Field(0.5, gt=0, le=1, description="changed lines / lines of before+after")


class BigQueryConfig(Section):
    """``seeds.source: bigquery``: the shipped SQL on bigquery-public-data.github_repos."""

    project: str | None = Field(None, description="billing project; null = GOOGLE_CLOUD_PROJECT")
    maximum_bytes_billed: int = Field(50 * 10**9, ge=1, description="dry-run estimate above this is refused")
    limit: int = Field(1000, ge=1, description="most rows the query returns")
    licenses: list[str] = Field(
        default_factory=lambda: ["mit", "apache-2.0", "bsd-2-clause", "bsd-3-clause", "isc"],
        description="licence keys (github_repos.licenses) kept, local and BigQuery",
    )


class SeedsConfig(Section):
    source: Literal["git", "bigquery", "published"] = Field(
        "git", description="git: mine seeds.repos; bigquery: the shipped SQL on BigQuery; published: the authors' "
        "seeds (github_seed.json of the release named in generation.published) beside what seeds.repos mines"
    )
    repos: list[str] = Field(default_factory=lambda: ["."], description="git repositories to mine (repo root = '.')")
    max_commits: int = Field(5000, ge=1, description="newest commits read per repository")
    max_file_bytes: int = Field(200_000, ge=1, description="larger blobs are skipped (too_large)")
    allow_unknown_license: bool = Field(True, description="keep local repos without a recognised licence")
    clarify: Literal["auto", "llm", "rules"] = "auto"
    filters: SeedFilters = SeedFilters()
    bigquery: BigQueryConfig = BigQueryConfig()


# --------------------------------------------------------------------------- 02 generation
class SynthConfig(Section):
    """The procedural edit synthesizer (``instructcoder_utils.synth``): no LLM, every instance verified."""

    source_dirs: list[str] = Field(default_factory=lambda: ["stdlib"], description="'stdlib' or paths")
    kinds: list[str] | Literal["all"] = "all"
    max_instances: int = Field(2000, ge=1)
    max_per_kind: int | None = Field(None, ge=1)
    max_function_lines: int = Field(40, ge=3, description="longest source function/class taken, in lines")
    program_share: float = Field(
        0.7, ge=0, le=1, description="share of instances from generated programs with execution-verified behaviour edits"
    )
    max_source_files: int | None = Field(None, ge=1, description="read at most this many source files (None: all)")
    workers: int = Field(2, ge=1)


class SelfInstructConfig(Section):
    num_prompt_instructions: int = Field(8, ge=1)
    num_seed_in_prompt: int = Field(7, ge=0)
    num_new_per_request: int = Field(10, ge=1)
    requests_per_round: int = Field(8, ge=1)
    target_pool_size: int = Field(100, ge=1)
    max_rounds: int = Field(10, ge=1)
    rouge_threshold: float = Field(0.7, gt=0, le=1)
    temperature: float = Field(0.7, ge=0, le=2)
    max_tokens: int = Field(512, ge=1, description="per self-instruct reply")
    steer_intents: bool = True
    intents: list[str] = Field(default_factory=list, description="edit intents to steer; empty = built-in 26")
    min_seed_instructions: int = Field(8, ge=0, description="fewer seeds than this: add the built-in ones")


class ScenarioConfig(Section):
    scenarios_per_instruction: int = Field(10, ge=1)
    instances_per_instruction: int = Field(1, ge=1)
    temperature: float = Field(0.0, ge=0, le=2, description="for both the scenario list and the code")
    max_tokens: int = Field(1024, ge=1, description="per input/output code reply")
    scenario_max_tokens: int = Field(256, ge=1, description="per scenario-list reply")
    max_instructions: int | None = Field(None, ge=1, description="generate code for the first N new only")


PUBLISHED_DATASET = "likaixin/InstructCoder"


class PublishedConfig(Section):
    """The authors' released InstructCoder data (``generation.method: published``, ``seeds.source: published``):
    JSON files, each a list of ``{instruction, input, output}``, read with ``datasets`` from the hub id at a
    pinned commit, or from a local copy in the same layout (``path``)."""

    dataset: str = Field(PUBLISHED_DATASET, description="hub id of the release")
    revision: str | None = Field(
        None, description="the hub commit (40 hex digits) you verified: HfApi().dataset_info(dataset).sha; a branch "
        "name such as 'main' moves and is refused; needed unless path is set"
    )
    path: str | None = Field(None, description="a local folder holding the files below, or one file of rows; "
                             "null = the hub id at revision")
    files: list[str] = Field(default_factory=lambda: ["train.json", "valid.json"], min_length=1,
                             description="the files whose rows become instances (with path a file: that file)")
    seed_file: str = Field("github_seed.json", description="the authors' seed tasks (seeds.source: published)")
    limit: int | None = Field(None, ge=1, description="a seeded sample of this many rows (profile seed); null = all")

    @field_validator("revision")
    @classmethod
    def _commit_only(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[0-9a-f]{40}", v):
            raise ValueError(f"{v!r} is not a commit hash (40 hex digits): a branch or tag name moves, so the data "
                             "would change under the same profile; pin the commit HfApi().dataset_info(dataset).sha")
        return v


def published_pin_problem(p: PublishedConfig) -> str | None:
    """Why the released data cannot be located as configured (None when it can): the hub id needs a commit."""
    if p.path is None and p.revision is None:
        return (f"generation.published: reading {p.dataset} from the hub needs revision (the commit you verified, "
                f"HfApi().dataset_info({p.dataset!r}).sha); or set generation.published.path to a local copy")
    return None


class GenerationConfig(Section):
    method: Literal["synth", "llm", "both", "published"] = Field(
        "synth", description="synth: the offline synthesizer; llm: self-instruct + scenarios through llm; both: "
        "llm and synth; published: the authors' released instances (generation.published), no generation"
    )
    include_seeds: bool = Field(True, description="seed tasks with code become instances (source: seed)")
    published: PublishedConfig = PublishedConfig()
    synth: SynthConfig = SynthConfig()
    self_instruct: SelfInstructConfig = SelfInstructConfig()
    scenarios: ScenarioConfig = ScenarioConfig()


# --------------------------------------------------------------------------- 03 filtering
class MinHashConfig(Section):
    threshold: float = Field(0.75, gt=0, le=1)
    num_perm: int = Field(128, ge=16)
    shingle_size: int = Field(5, ge=1)


class DecontamConfig(Section):
    enabled: bool = True
    ngram: int = Field(10, ge=2, description="code n-gram size (normalized tokens)")
    threshold: float = Field(0.5, gt=0, le=1, description="fraction of an instance's code n-grams in one task")
    instruction_ngram: int = Field(6, ge=2, description="instruction word n-gram size")
    instruction_threshold: float = Field(0.8, gt=0, le=1)
    own_tasks: str = Field("instructcoder_utils/data/own_tasks.jsonl", description="used when the file exists")


class FilteringConfig(Section):
    rouge_threshold: float = Field(0.7, gt=0, le=1)
    rouge_field: Literal["instruction"] = "instruction"
    min_instruction_words: int = Field(3, ge=1)
    rouge_sources: list[str] | Literal["all"] = Field(
        "all", description="sources whose instructions pass the ROUGE-L novelty rule ('synth' matches 'synth:*')"
    )
    max_output_tokens: int | None = Field(None, ge=1, description="default: training.max_length")
    refusal_patterns: list[str] = Field(
        default_factory=lambda: [r"\bsorry\b", r"\bcannot\b", r"\bcan't\b", r"please provide", r"as an ai\b"],
        description="regexes (case-insensitive) marking a refusal in the instruction or in non-code text",
    )
    check_syntax: bool = True
    minhash: MinHashConfig = MinHashConfig()
    decontamination: DecontamConfig = DecontamConfig()
    validation_fraction: float = Field(0.05, ge=0, lt=1)
    test_fraction: float = Field(0.05, ge=0, lt=1)
    max_test: int | None = Field(200, ge=1)
    workers: int = Field(2, ge=1)


# --------------------------------------------------------------------------- 04 training
class SweepConfig(Section):
    """Extra training runs beside ``main``: nested data subsets, other LoRA ranks, data mixes, other seeds."""

    data_fractions: list[Annotated[float, Field(gt=0, le=1)]] = Field(
        default_factory=list, description="nested subsets of the training split, e.g. [0.1, 0.5, 1.0]"
    )
    lora_ranks: list[Annotated[int, Field(ge=1, le=1024)]] = Field(default_factory=list)
    data_mixes: list[Literal["behaviour", "refactor", "one_phrasing", "one_scenario"]] = Field(
        default_factory=list, description="train on one part of the data only: behaviour-changing edits "
        "(verified by execution) or behaviour-preserving refactorings; or on the main run's examples "
        "rewritten: one_phrasing (each instruction in its edit's first phrasing), one_scenario (each "
        "program in its family's first domain); each a run named mix-<name>"
    )
    seeds: list[int] = Field(
        default_factory=list, description="main's examples and settings trained again with another training "
        "seed (batch order and initialization; the data stay main's): the run-to-run spread that a sweep's "
        "difference must beat; each a run named seed<N>"
    )


class TrainingConfig(Section):
    """SFT (stage 04), LoRA or full. Effective batch = batch_size x gradient_accumulation_steps x processes."""

    base_model: str = "builtin:smollm2-135m-instruct"
    prompt_template: str = "chat_v1"
    method: Literal["lora", "full"] = Field(
        "lora", description="lora: a LoRA adapter on target_modules (the paper); full: every weight of the "
        "trained layers (train_layers) is trained and saved, no adapter - a step costs about what LoRA's does "
        "on the same layers; it needs a lower learning rate (~1e-4 to 3e-4)"
    )
    lora_r: int = Field(16, ge=1, le=1024)
    lora_alpha: int = Field(32, ge=1)
    lora_dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"], min_length=1
    )
    train_layers: int | None = Field(
        None, ge=1, description="train the top N transformer layers only (their LoRA adapters, or all their "
        "weights with method full): backward stops below them, so a step costs less (null = every layer)"
    )
    edit_token_weight: float = Field(
        1.0, ge=1, description="loss weight of the response tokens that differ from the input (1 = plain SFT); "
        "a whole-program reply is mostly copied lines, and this keeps the edit from drowning in them"
    )
    learning_rate: float = Field(3e-4, gt=0, lt=1)
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "cosine"
    warmup_ratio: float = Field(0.03, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float | None = Field(1.0, gt=0, description="gradient clipping; null = off")
    batch_size: int = Field(8, ge=1, description="per-device micro batch")
    gradient_accumulation_steps: int = Field(1, ge=1)
    epochs: float = Field(1.0, gt=0)
    max_steps: int | None = Field(None, ge=1, description="optimizer steps; overrides epochs")
    max_length: int = Field(1024, ge=16, description="prompt + response + EOS; longer examples are dropped")
    max_train_examples: int | None = Field(None, ge=1)
    max_eval_examples: int | None = Field(200, ge=1, description="validation examples used for val loss")
    group_by_length: bool = True
    eval_every_steps: int = Field(50, ge=1)
    save_every_steps: int = Field(50, ge=1)
    keep_checkpoints: int = Field(2, ge=1)
    dtype: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    threads: int | None = Field(None, ge=1)
    merge_adapter: bool = False
    sweeps: SweepConfig = SweepConfig()

    @model_validator(mode="after")
    def _ranks_need_lora(self) -> TrainingConfig:
        if self.method == "full" and self.sweeps.lora_ranks:
            raise ValueError("sweeps.lora_ranks needs method lora (full fine-tuning has no rank); set it to []")
        return self


# --------------------------------------------------------------------------- 05 evaluation
class JudgeConfig(Section):
    """The paper's GPT-4 evaluation: an LLM (``llm`` endpoint, ``model`` here) grades edits with a rubric
    and compares base vs tuned pairwise, in both orders to cancel position bias."""

    enabled: bool = False
    model: str | None = Field(None, description="judge model; default: llm.model")
    sets: list[Literal["editeval", "own", "test_split"]] = Field(
        default_factory=lambda: ["test_split"], description="sets the judge grades (agreement with tests where they exist)"
    )
    pairwise: bool = True
    max_items: int | None = Field(None, ge=1, description="judge at most N tasks per set")
    max_tokens: int = Field(400, ge=16)


class EvaluationConfig(Section):
    sets: list[Literal["editeval", "own", "test_split"]] = Field(
        default_factory=lambda: ["editeval", "own", "test_split"]
    )
    editeval_path: str | None = Field(
        None, description="a copy of EditEval's edit_eval.jsonl; null: the user cache, the development copy "
        "beside the checkout, then the pinned download (tasks.EDITEVAL)"
    )
    limit: int | None = Field(None, ge=1, description="evaluate only the first N tasks of each set")
    set_limits: dict[Literal["editeval", "own", "test_split"], int] = Field(
        default_factory=dict, description="per-set cap on tasks (after limit), e.g. {test_split: 60}"
    )
    batch_size: int = Field(8, ge=1)
    max_new_tokens: int = Field(512, ge=1)
    new_tokens_factor: float = Field(1.5, gt=0, description="new tokens <= factor * input tokens + slack")
    new_tokens_slack: int = Field(64, ge=0)
    loop_repeats: int = Field(3, ge=0, description="stop a reply once a block of 1-8 lines repeats this many "
                              "times in a row (more than in its input), instead of at its token bound; 0 = never")
    n_samples: int = Field(1, ge=1, description="samples per task (pass@k); 1 with temperature 0 = greedy")
    temperature: float = Field(0.0, ge=0, le=2)
    top_p: float = Field(0.95, gt=0, le=1)
    dtype: Literal["auto", "bf16", "fp32"] = Field("auto", description="auto: bf16 where the device has it")
    threads: int | None = Field(None, ge=1)
    base_prompts: list[str] = Field(default_factory=lambda: ["chat_v1"])
    prompt_selection_set: Literal["own", "test_split"] = Field(
        "own", description="the set the base model's best prompt is chosen on (never EditEval)"
    )
    all_prompts_on_all_sets: bool = Field(False, description="score every base prompt on every set")
    eval_sweep_runs: bool = Field(False, description="also evaluate the non-main runs of runs.json")
    sweep_sets: list[Literal["editeval", "own", "test_split"]] = Field(default_factory=lambda: ["own"])
    interpolations: list[Annotated[float, Field(gt=0, lt=1)]] = Field(
        default_factory=list, description="also score the main run with its weights moved only this far from the "
        "base model's (0 < a < 1; WiSE-FT), each on sweep_sets, e.g. [0.25, 0.5, 0.75]"
    )
    check_references: bool = Field(True, description="execute the reference edits first (harness check)")
    timeout_s: float = Field(10.0, gt=0)
    workers: int = Field(2, ge=1)
    api_models: list[str] = Field(default_factory=list, description="models at the llm endpoint to score too")
    api_prompt: str = "chat_v1"
    judge: JudgeConfig = JudgeConfig()


# --------------------------------------------------------------------------- 06 analysis
class AnalysisConfig(Section):
    top_verbs: int = Field(20, ge=1)
    dpi: int = Field(120, ge=50)


class Profile(Section):
    name: str
    description: str = ""
    seed: int = 1234
    seeds: SeedsConfig = SeedsConfig()
    llm: LLMConfig = LLMConfig()
    generation: GenerationConfig = GenerationConfig()
    filtering: FilteringConfig = FilteringConfig()
    training: TrainingConfig = TrainingConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    analysis: AnalysisConfig = AnalysisConfig()

    @model_validator(mode="after")
    def _published_is_located(self) -> Profile:
        if self.generation.method == "published" or self.seeds.source == "published":
            problem = published_pin_problem(self.generation.published)
            if problem:
                raise ValueError(problem)
        return self

    @model_validator(mode="after")
    def _seed_runs_differ_from_main(self) -> Profile:
        if self.seed in self.training.sweeps.seeds:
            raise ValueError(f"training.sweeps.seeds: {self.seed} is the profile's seed, so that run would be "
                             "main again; pick another seed")
        return self

    def hash(self) -> str:
        """Stable hash of the resolved profile (what run.json records and stage skipping compares)."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def resolve_path(self, path: str | Path) -> Path:
        """Profile paths are relative to the repository root, wherever the notebook runs."""
        p = Path(path).expanduser()
        return p if p.is_absolute() else (REPO_ROOT / p).resolve()


# --------------------------------------------------------------------------- loading
def profile_path(name_or_path: str | Path) -> Path:
    """``tiny`` -> params/tiny.yaml; anything with a slash or .yaml suffix is a path."""
    s = str(name_or_path)
    if s.endswith((".yaml", ".yml")) or "/" in s or "\\" in s:
        p = Path(s).expanduser()
        return p if p.is_absolute() else (Path.cwd() / p).resolve()
    return PARAMS_DIR / f"{s}.yaml"


def available_profiles() -> list[str]:
    return sorted(p.stem for p in PARAMS_DIR.glob("*.yaml"))


def parse_set(items: list[str] | None) -> dict[str, Any]:
    """``["training.lora_r=8", "llm.model=gpt-4o"]`` -> nested dict; values parsed as YAML."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ProfileError(f"--set {item!r}: expected key.path=value")
        key, raw = item.split("=", 1)
        value = yaml.safe_load(raw) if raw != "" else ""
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ProfileError(f"--set {item!r}: {part!r} is set twice")
        node[parts[-1]] = value
    return out


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in (over or {}).items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _allowed_keys(model: type[BaseModel], loc: tuple) -> list[str]:
    """Field names of the section at ``loc`` (for 'did you mean' suggestions)."""
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        ann = getattr(field, "annotation", None) if field else None
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return []
        model = ann
    return list(model.model_fields)


def _format_errors(err: ValidationError, source: str) -> str:
    lines = []
    for e in err.errors():
        loc = tuple(e["loc"])
        path = ".".join(str(p) for p in loc) or "(top level)"
        if e["type"] == "extra_forbidden":
            allowed = _allowed_keys(Profile, loc)
            close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            lines.append(f"{source}: {path}: unknown key{hint}; allowed: {', '.join(allowed)}")
        elif e["type"] == "value_error" and isinstance(e.get("input"), dict):  # a check across keys: its
            msg = e["msg"].removeprefix("Value error, ")                       # message names them
            lines.append(f"{source}: {msg}" if not loc else f"{source}: {path}: {msg}")
        else:
            lines.append(f"{source}: {path}: {e['msg']} (got {e.get('input')!r})")
    return "\n".join(lines)


def load_profile(name_or_path: str | Path, overrides: dict[str, Any] | None = None) -> Profile:
    """Read, merge overrides, validate. Raises ProfileError with a message fit for the user."""
    path = profile_path(name_or_path)
    if not path.is_file():
        raise ProfileError(
            f"profile {str(name_or_path)!r}: file not found ({path.name}); "
            f"available profiles: {', '.join(available_profiles())}, or give a path to a YAML file"
        )
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ProfileError(f"{path.name}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ProfileError(f"{path.name}: expected a mapping of sections at the top level")
    raw.setdefault("name", path.stem)
    merged = deep_merge(raw, overrides or {})
    source = path.name + (" (with overrides)" if overrides else "")
    try:
        return Profile.model_validate(merged)
    except ValidationError as exc:
        raise ProfileError(_format_errors(exc, source)) from None


def default_out_dir(profile: Profile) -> Path:
    return REPO_ROOT / "outputs" / profile.name


def stage_dir(out_dir: str | Path, stage: str) -> Path:
    """The folder a stage writes (created); stages read only earlier stages' folders."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; stages: {', '.join(STAGES)}")
    d = Path(out_dir) / stage
    d.mkdir(parents=True, exist_ok=True)
    return d
