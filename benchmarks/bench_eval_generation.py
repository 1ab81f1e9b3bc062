"""Benchmark: stage 05's generation of edits with the built-in model on EditEval.

Ours: length-sorted batches, each reply stopped at its closing fence, new tokens bounded by the
input's length (``min(max_new_tokens, 1.5 * input_tokens + 64)``). Baseline in the same run: the same
batches in file order, stopped only by EOS, up to ``max_new_tokens`` for every task (what a plain
``model.generate`` loop does). Both greedy, same model, same prompt (chat_v1), same tasks.

    .venv/bin/python benchmarks/bench_eval_generation.py [--tasks 32] [--max-new-tokens 384] [--batch 8]

Prints ``RESULT eval_generation ratio=<baseline seconds / ours> seconds=<ours> instances=N`` and, for the
whole benchmark (``--tasks 194``), the projected full-set time.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from instructcoder_utils import evaluate as E  # noqa: E402
from instructcoder_utils.prompts import extract_code  # noqa: E402
from instructcoder_utils.tasks import load_editeval  # noqa: E402


def ours(gen: E.HFGenerator, tasks: list[dict], dec: E.Decoding, batch: int) -> tuple[float, int, list[str]]:
    items = sorted(tasks, key=lambda t: -len(gen.tok(gen.prompt(t)).input_ids))
    t0, toks, replies = time.perf_counter(), 0, []
    for i in range(0, len(items), batch):
        b = items[i: i + batch]
        r, c, _ = gen.generate([gen.prompt(t) for t in b], [dec.bound(gen.input_tokens(t)) for t in b], dec)
        replies += r
        toks += sum(c)
    return time.perf_counter() - t0, toks, replies


def baseline(gen: E.HFGenerator, tasks: list[dict], max_new: int, batch: int) -> tuple[float, int]:
    import torch

    t0, toks = time.perf_counter(), 0
    for i in range(0, len(tasks), batch):
        enc = gen.tok([gen.prompt(t) for t in tasks[i: i + batch]], return_tensors="pt", padding=True,
                      add_special_tokens=False)
        with torch.inference_mode():
            out = gen.model.generate(**enc, max_new_tokens=max_new, do_sample=False,
                                     pad_token_id=gen.tok.pad_token_id)
        toks += int((out[:, enc.input_ids.shape[1]:] != gen.tok.pad_token_id).sum())
    return time.perf_counter() - t0, toks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--editeval", default=str(REPO.parent / "shared" / "data" / "editeval" / "edit_eval.jsonl"))
    ap.add_argument("--tasks", type=int, default=32)
    ap.add_argument("--max-new-tokens", type=int, default=384)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    tasks = load_editeval(args.editeval)[: args.tasks]
    spec = E.ModelSpec("bench", "builtin:smollm2-135m-instruct", "chat_v1")
    gen = E.HFGenerator(spec, "auto", args.threads)
    dec = E.Decoding(max_new_tokens=args.max_new_tokens)
    secs, toks, replies = ours(gen, tasks, dec, args.batch)
    base_secs, base_toks = baseline(gen, tasks, args.max_new_tokens, args.batch)
    empty = sum(not extract_code(r).strip() for r in replies)
    print(f"ours: {secs:.1f} s, {toks} new tokens; baseline: {base_secs:.1f} s, {base_toks} new tokens; "
          f"empty extractions (ours): {empty}; dtype={gen.dtype}")
    print(f"RESULT eval_generation ratio={base_secs / secs:.2f} seconds={secs:.2f} baseline_seconds={base_secs:.2f} "
          f"instances={len(tasks)} new_tokens={toks} baseline_new_tokens={base_toks} "
          f"projected_194_seconds={secs * 194 / len(tasks):.0f}")


if __name__ == "__main__":
    main()
