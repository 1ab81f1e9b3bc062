"""The ``instructcoder`` command: ``run`` (the whole study or some stages), ``exec-eval`` and ``edit`` (use a
trained model on a file)."""

from __future__ import annotations

import argparse
import sys

from .config import STAGES, ProfileError, parse_set


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="instructcoder", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="execute the notebooks of a profile with papermill")
    r.add_argument("--profile", default="tiny", help="name under params/ (smoke, tiny, paper) or a YAML path")
    r.add_argument("--out", default=None, help="output folder (default: outputs/<profile>)")
    r.add_argument("--only", nargs="+", metavar="STAGE", help=f"stages to run: {', '.join(STAGES)}")
    r.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a profile value, e.g. --set training.lora_r=8 (repeatable)")
    r.add_argument("--force", action="store_true", help="re-run stages even when unchanged")

    e = sub.add_parser("exec-eval", help="execute candidate edits against task tests in the sandbox")
    e.add_argument("--tasks", required=True, help="EditEval-format JSONL")
    e.add_argument("--samples", required=True, help='JSONL rows {"task_id", "output"}')
    e.add_argument("--out", required=True, help="results JSONL")
    e.add_argument("--timeout", type=float, default=10.0, help="seconds per program (wall clock)")
    e.add_argument("--workers", type=int, default=2)

    d = sub.add_parser(
        "edit", help="edit a file with the tuned (or base) model and print the diff",
        description="Ask a model of the study to edit FILE as INSTRUCTION says and print the unified diff of FILE "
        "against its edit (or that it returned the code unchanged). The prompt, the token bound and the stop at "
        "the closing fence are stage 05's.",
        epilog="exit status: 0 the edit is valid Python (and passes --test); 1 it is not valid Python, or fails "
        "--test (nothing written); 2 bad input (nothing written).")
    d.add_argument("file", metavar="FILE", help="the Python file to edit (UTF-8 text)")
    d.add_argument("--instruction", required=True, metavar="TEXT", help='what to change, e.g. "Add type hints"')
    d.add_argument("--model", default="tuned", metavar="tuned|base|DIR",
                   help="tuned: the run's main model with its training template (default); base: the base model with "
                   "the prompt stage 05 chose for it (else the profile's first base prompt); DIR: a folder of "
                   "weights stage 04 trained (a run's adapter/)")
    d.add_argument("--run", default=None, metavar="DIR", help="a study output folder (default: outputs/<profile>)")
    d.add_argument("--profile", default=None,
                   help="name under params/ or a YAML path (default: the profile --run was made with, else tiny)")
    d.add_argument("--write", action="store_true", help="replace FILE with the edit, keeping the original as FILE.orig")
    d.add_argument("--test", default=None, metavar="TEST_FILE",
                   help="Python run after the edited code in the same sandboxed program (it uses the code's names "
                   "directly: plain asserts, or a check() function, called for you as in EditEval); prints "
                   "passed/failed, and --write then writes only an edit that passes")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "run":
            from .pipeline import StageFailed, run

            try:
                run(args.profile, out_dir=args.out, only=args.only, overrides=parse_set(args.sets), force=args.force)
            except StageFailed as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 1
            return 0
        if args.command == "exec-eval":
            from .sandbox import exec_eval_cli

            return exec_eval_cli(args.tasks, args.samples, args.out, timeout=args.timeout, workers=args.workers)
        if args.command == "edit":
            from .edit import edit_cli

            return edit_cli(args.file, args.instruction, model=args.model, run=args.run, profile=args.profile,
                            write=args.write, test=args.test)
    except ProfileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 2


if __name__ == "__main__":
    sys.exit(main())
