"""Use a trained model: an instruction and a piece of code in, the model's edit out, as a diff.

Stage 05 scores the models on benchmarks; this is how a reader points them at code of their own, from the
command line (``instructcoder edit FILE --instruction TEXT``) or in notebook 05's last section. The models
are stage 05's: ``tuned`` is the main run of ``04_training/runs.json`` with the template it was trained on,
``base`` the base model with the prompt stage 05 chose for it, or any folder of weights stage 04 trained.
A reply goes through stage 05's own path (``evaluate.generate_edits``: the prompt, the token bound, the
stop at the closing fence, the loop guard; ``prompts.edited_program``: the code a reply stands for), so
what a reader sees is what was scored.

``--test FILE`` runs a test against the edit, in the sandbox like every model-written program: the test
file is Python that runs after the edited code in the same program, so it uses the code's names directly
(no import): plain ``assert`` lines, or a ``check()`` function as EditEval's tests define one (it is called
for you when the file does not call it). The edit passes when the program runs to its end.
"""

from __future__ import annotations

import ast
import difflib
import html
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml

from .config import Profile, ProfileError, default_out_dir, load_profile
from .evaluate import HFGenerator, ModelSpec, base_spec, decoding_from, generate_edits, main_spec
from .files import read_json, write_text
from .models import TRAINED_WEIGHTS, is_trained_dir
from .prompts import edited_program
from .sandbox import RunResult, Sandbox, build_program

MODELS = ("base", "tuned")
STOPS = {"stop": "ended at its closing fence", "eos": "ended with end-of-text",
         "loop": "stopped in a loop of repeated lines", "length": "cut at its token bound"}


# --------------------------------------------------------------------------- inputs
def read_text(path: str | Path) -> str:
    """A UTF-8 text file's content, or one clear error: a missing file, a folder, bytes that are not text."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such file")
    if not p.is_file():
        raise ValueError(f"{p}: not a file")
    data = p.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{p}: not UTF-8 text (byte {data[exc.start]:#04x} at offset {exc.start})") from None
    if "\x00" in text:
        raise ValueError(f"{p}: not text (it holds NUL bytes)")
    return text


def check_instruction(instruction: str) -> str:
    """The instruction without surrounding blanks; an empty one is refused (the model would guess)."""
    text = (instruction or "").strip()
    if not text:
        raise ValueError('the instruction is empty: say what to change, e.g. --instruction "Add type hints"')
    return text


def study(run: str | Path | None, profile: str | None) -> tuple[Profile, Path]:
    """The profile and output folder of a study run. Without ``run``: ``outputs/<profile>`` (profile
    default ``tiny``, as ``instructcoder run``). With ``run`` and no ``profile``: the profile that run was
    made with (its ``run.json``), so its base model and decoding are the ones it was scored with."""
    if run is None:
        cfg = load_profile(profile or "tiny")
        return cfg, default_out_dir(cfg)
    out = Path(run).expanduser().resolve()
    if not out.is_dir():
        raise FileNotFoundError(f"--run {run}: no such folder (a study output folder, e.g. outputs/tiny)")
    recorded = read_json(out / "run.json").get("profile") if (out / "run.json").is_file() else None
    if profile is not None or not recorded:
        return load_profile(profile or "tiny"), out
    try:
        return Profile.model_validate(recorded), out
    except ValueError as exc:  # pydantic's ValidationError
        first = str(exc).splitlines()[0]
        raise ProfileError(f"{out / 'run.json'}: its profile does not load ({first}); pass --profile") from None


# --------------------------------------------------------------------------- models
def tuned_spec(cfg: Profile, out: Path) -> ModelSpec:
    """The study's tuned model: stage 04's main run, with the template it was trained on."""
    if not (out / "04_training" / "runs.json").is_file():
        raise FileNotFoundError(f"{out}: no trained model (no 04_training/runs.json); train one with "
                                f"`instructcoder run --profile {cfg.name}`, or use --model base")
    spec = main_spec(cfg, out)
    spec.info["about"] = f"the tuned model (run {spec.run} of {out.name}), prompt {spec.template} (its training template)"
    return spec


def chosen_base_spec(cfg: Profile, out: Path) -> ModelSpec:
    """The base model with the prompt stage 05 chose for it (``base_prompts.json``), else the profile's
    first base prompt: the base model as the study scored it."""
    chosen = out / "05_evaluation" / "base_prompts.json"
    if chosen.is_file():
        spec = base_spec(cfg, read_json(chosen)["best"])
        why = "stage 05's choice"
    else:
        spec = base_spec(cfg, cfg.evaluation.base_prompts[0])
        why = f"the profile's first base prompt: stage 05 has not chosen one in {out.name}"
    spec.info["about"] = f"the base model {cfg.training.base_model}, prompt {spec.template} ({why})"
    return spec


def folder_spec(cfg: Profile, folder: Path) -> ModelSpec:
    """Any stage-04 trained-weights folder (a run's ``adapter/``, or the run folder holding it), with the base
    model and template recorded beside the weights (its ``profile.yaml``), else the profile's."""
    if not folder.exists():
        raise FileNotFoundError(f"--model {folder}: neither tuned, base nor an existing folder")
    weights = folder / "adapter" if not is_trained_dir(folder) and is_trained_dir(folder / "adapter") else folder
    if not is_trained_dir(weights):
        raise FileNotFoundError(f"{folder}: no trained weights (a stage-04 LoRA adapter with adapter_config.json, "
                                f"or {TRAINED_WEIGHTS})")
    recorded = yaml.safe_load((weights / "profile.yaml").read_text()) if (weights / "profile.yaml").is_file() else {}
    training = (recorded or {}).get("training") or {}
    name = weights.parent.name if weights.name == "adapter" else weights.name
    spec = ModelSpec(f"dir-{name}", training.get("base_model") or cfg.training.base_model,
                     training.get("prompt_template") or cfg.training.prompt_template, str(weights.resolve()),
                     role="tuned")
    spec.info["about"] = f"the weights in {folder} on {spec.base_model}, prompt {spec.template}"
    return spec


# --------------------------------------------------------------------------- edits
def _lines(text: str) -> list[str]:
    """Lines for a diff, the last one ended too (the edit always ends in a newline; a "no newline at end of
    file" marker would be noise here)."""
    return [line if line.endswith("\n") else line + "\n" for line in text.splitlines(keepends=True)]


@dataclass(frozen=True)
class Edit:
    """One model's edit of one piece of code: the reply as written and the program it stands for."""

    model: str  # the model's label: base-chat_v1, tuned-main, dir-<name>
    template: str
    before: str
    after: str
    reply: str
    new_tokens: int
    stop: str

    @property
    def unchanged(self) -> bool:
        return self.after.rstrip() == self.before.rstrip()

    @property
    def problem(self) -> str | None:
        """Why the edit is not valid Python, or None when it is: such an edit is never written."""
        if not self.after.strip():
            return "the reply holds no code"
        try:
            ast.parse(self.after)
        except SyntaxError as exc:
            return f"line {exc.lineno}: {exc.msg}"
        except ValueError as exc:  # a NUL byte
            return str(exc)
        return None

    def diff(self, name: str = "code") -> str:
        """The unified diff from the code to its edit, both sides named ``name`` (``patch -p0`` applies it to
        the file); "" when unchanged."""
        if self.unchanged:
            return ""
        return "".join(difflib.unified_diff(_lines(self.before), _lines(self.after), name, name))

    def summary(self) -> str:
        return f"{self.model} (prompt {self.template}): {self.new_tokens} new tokens, {STOPS.get(self.stop, self.stop)}"


class Editor:
    """The models of one study output folder, each loaded on first use and then kept: the form in notebook 05
    edits again and again, and loading is most of a short edit's time."""

    def __init__(self, cfg: Profile, out: str | Path) -> None:
        self.cfg, self.out = cfg, Path(out)
        self.decoding = replace(decoding_from(cfg), n=1)  # one reply per model, decoded as stage 05 decodes
        self._loaded: dict[tuple[str, str | None], HFGenerator] = {}

    def spec(self, model: str) -> ModelSpec:
        """``tuned``, ``base`` or a trained-weights folder, as stage 05 scored it; errors name what is missing."""
        if model == "tuned":
            return tuned_spec(self.cfg, self.out)
        if model == "base":
            return chosen_base_spec(self.cfg, self.out)
        return folder_spec(self.cfg, Path(model).expanduser())

    def edit(self, model: str, instruction: str, code: str) -> Edit:
        """``model``'s one reply to ``instruction`` on ``code``, decoded as the profile decodes (greedy by default)."""
        instruction = check_instruction(instruction)
        spec = self.spec(model)
        key = (spec.base_model, spec.adapter)
        if key not in self._loaded:
            self._loaded[key] = HFGenerator(spec, self.cfg.evaluation.dtype, self.cfg.evaluation.threads)
        task = {"instruction": instruction, "input": code}
        [(_, reply, n, why)] = generate_edits(self._loaded[key], [task], [spec.template], self.decoding, batch_size=1)
        return Edit(spec.label, spec.template, code, edited_program(spec.template, reply, code), reply, n, why)

    def compare(self, instruction: str, code: str, models: Sequence[str] = MODELS) -> SideBySide:
        """Each model's edit of the same code, for reading side by side."""
        return SideBySide([self.edit(m, instruction, code) for m in models])


@dataclass
class SideBySide:
    """Several models' edits of the same code: diffs in columns in a notebook, one after another as text."""

    edits: list[Edit] = field(default_factory=list)

    def __repr__(self) -> str:
        parts = []
        for e in self.edits:
            body = "the model returned the code unchanged\n" if e.unchanged else e.diff()
            note = f"not valid Python ({e.problem})\n" if e.problem else ""
            parts.append(f"== {e.summary()}\n{body}{note}")
        return "\n".join(parts)

    def _repr_html_(self) -> str:
        colours = {"+": "#e6ffec", "-": "#ffebe9", "@": "#ddf4ff"}
        cells = []
        for e in self.edits:
            lines = e.diff().splitlines()[2:]  # the column names the model: no ---/+++ header
            body = "".join(f'<span style="display:block;background:{colours.get(line[:1], "none")}">'
                           f"{html.escape(line) or ' '}</span>" for line in lines)
            body = body or "<i>the model returned the code unchanged</i>"
            note = f"<br><b>not valid Python</b> ({html.escape(e.problem)})" if e.problem else ""
            cells.append(f'<td style="vertical-align:top;text-align:left"><b>{html.escape(e.model)}</b>'
                         f'<pre style="white-space:pre-wrap;font-size:85%">{body}</pre>'
                         f"<small>{html.escape(e.summary())}{note}</small></td>")
        return f'<table style="width:100%;table-layout:fixed"><tr>{"".join(cells)}</tr></table>'


def form(editor: Editor, instruction: str, code: str, models: Sequence[str] = MODELS):
    """An ipywidgets form for JupyterLab: an instruction and code to edit, and a button that shows every
    model's edit side by side (``Editor.compare``) below it. Returns the form (display it, or end a cell with it)."""
    import ipywidgets as w
    from IPython.display import display

    ins = w.Textarea(value=instruction, description="Instruction", layout=w.Layout(width="100%", height="4em"))
    src = w.Textarea(value=code, description="Code", layout=w.Layout(width="100%", height="14em"))
    button = w.Button(description=f"Edit with {' and '.join(models)}", button_style="primary",
                      layout=w.Layout(width="auto"))
    shown = w.Output()

    def run(_: w.Button) -> None:
        shown.clear_output()
        with shown:
            try:
                display(editor.compare(ins.value, src.value, models))
            except (FileNotFoundError, ValueError) as exc:
                print(f"error: {exc}")

    button.on_click(run)
    return w.VBox([ins, src, button, shown])


# --------------------------------------------------------------------------- testing an edit
def _calls_check(tree: ast.Module) -> bool:
    return any(isinstance(n, ast.Expr) and isinstance(n.value, ast.Call) and isinstance(n.value.func, ast.Name)
               and n.value.func.id == "check" for n in tree.body)


def program_with_test(code: str, test: str) -> str:
    """The program ``--test`` runs: the edited code, then the test file; a test that defines ``check()`` and
    does not call it (EditEval's form) gets the call EditEval's harness adds (``sandbox.build_program``)."""
    tree = ast.parse(test)
    defines = any(isinstance(n, ast.FunctionDef) and n.name == "check" for n in tree.body)
    if defines and not _calls_check(tree):
        return build_program({"test": test, "context": ""}, code)
    return code.rstrip("\n") + "\n\n" + test


def read_test(path: str | Path) -> str:
    """A ``--test`` file: UTF-8 text that parses as Python."""
    text = read_text(path)
    try:
        ast.parse(text)
    except SyntaxError as exc:
        raise ValueError(f"{path}: the test is not valid Python (line {exc.lineno}: {exc.msg})") from None
    return text


def run_test_file(code: str, test: str, timeout: float) -> RunResult:
    """The test run against ``code`` in the sandbox (model-written code never runs outside it)."""
    return Sandbox(timeout=timeout).run(program_with_test(code, test))


# --------------------------------------------------------------------------- the command
def edit_cli(file: str, instruction: str, model: str = "tuned", run: str | None = None, profile: str | None = None,
             write: bool = False, test: str | None = None) -> int:
    """``instructcoder edit``: print the diff of FILE against the model's edit (or that it is unchanged);
    ``write`` replaces FILE, keeping ``FILE.orig``; ``test`` runs a test file against the edit in the sandbox.
    Exit 0: an edit that is valid Python (and passes its test); 1: not valid Python, or it fails its test
    (nothing written); 2: bad input, found before any model loads (nothing written)."""
    path = Path(file)
    orig = path.with_name(path.name + ".orig")
    try:
        before = read_text(path)
        instruction = check_instruction(instruction)
        test_code = read_test(test) if test else None
        if write and orig.exists():
            raise ValueError(f"{orig}: exists already (--write keeps the original there); move it away first")
        cfg, out = study(run, profile)
        editor = Editor(cfg, out)
        spec = editor.spec(model)
    except (FileNotFoundError, ValueError) as exc:  # ProfileError is a ValueError
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"editing {file} with {spec.info['about']}", file=sys.stderr, flush=True)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a command that prints a few lines: no weight-loading bar among them
    result = editor.edit(model, instruction, before)
    print(result.summary(), file=sys.stderr)
    sys.stdout.write(f"{file}: the model returned the code unchanged\n" if result.unchanged else result.diff(file))
    if result.problem:
        print(f"error: the model's edit is not valid Python ({result.problem}); {file} is left as it was",
              file=sys.stderr)
        return 1
    passed = True
    if test_code is not None:
        verdict = run_test_file(result.after, test_code, cfg.evaluation.timeout_s)
        passed = verdict.passed
        why = "" if passed else f" ({(verdict.detail.strip().splitlines() or [verdict.status])[-1]})"
        print(f"test {test}: {'passed' if passed else verdict.status}{why}")
    if write:
        if result.unchanged:
            print(f"{file}: unchanged, nothing written", file=sys.stderr)
        elif not passed:
            print(f"{file}: not written, the edit fails {test}", file=sys.stderr)
        else:
            shutil.copy2(path, orig)
            write_text(path, result.after, mode=path.stat().st_mode & 0o7777)
            print(f"{file}: written; the original is in {orig}", file=sys.stderr)
    return 0 if passed else 1
