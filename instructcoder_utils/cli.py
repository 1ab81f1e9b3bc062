"""The ``instructcoder`` command: ``run`` (the whole study or some stages) and ``exec-eval``."""

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
    except ProfileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 2


if __name__ == "__main__":
    sys.exit(main())
