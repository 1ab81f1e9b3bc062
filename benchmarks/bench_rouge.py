"""ROUGE-L novelty filter: ours vs looping ``rouge-score`` (what self-instruct does), same decisions.

10,000 instruction-like texts from templates and a random vocabulary, about a third of them
near-duplicates of an earlier one (a few words swapped, added or dropped), so the filter has real
work to do. The naive loop scores every new text against the whole kept pool with
``RougeScorer.score`` (stopping at the first hit, a fair baseline). If running it fully would take
longer than ``--baseline-budget`` seconds, it is run on the longest prefix that fits and its time is
extrapolated from the number of pairs the full loop would score (known exactly from the decisions),
and the line says ``baseline=extrapolated``.

    .venv/bin/python benchmarks/bench_rouge.py [--n 10000] [--baseline-budget 180]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from instructcoder_utils.rouge import RougeFilter  # noqa: E402

VERBS = ["Add", "Refactor", "Modify", "Implement", "Replace", "Fix", "Remove", "Update", "Optimize", "Rename",
         "Convert", "Handle", "Use", "Change", "Create", "Extract", "Introduce", "Validate", "Sort", "Cache"]
OBJECTS = ["function", "method", "class", "loop", "dictionary", "list comprehension", "error handling",
           "logging", "docstring", "type hints", "unit test", "parameter", "return value", "exception",
           "decorator", "generator", "context manager", "regular expression", "query", "config file"]
PURPOSES = ["improve readability", "make it faster", "handle empty input", "support unicode",
            "avoid a race condition", "reduce memory usage", "make it thread-safe", "log failures",
            "validate the arguments", "return a sorted result", "be case-insensitive", "retry on timeout"]
NAMES = ["parse_data", "load_config", "process_items", "compute_total", "fetch_user", "save_report",
         "merge_lists", "read_csv", "send_email", "normalize_text", "get_price", "update_cache"]
TEMPLATES = [
    "{v} the {o} in {n} to {p}.",
    "{v} a {o} to the {n} function so that it can {p}.",
    "In {n}, {v} the {o} in order to {p}.",
    "{v} {o} for {n}; the goal is to {p} and {p2}.",
    "Please {v} the existing {o} of `{n}` to {p}.",
    "{v} the code to use a {o} instead of a {o2} in {n}.",
]
FILLER = ["also", "carefully", "then", "properly", "first", "new", "current", "main", "helper", "all"]


def make_texts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    out: list[str] = []
    for _ in range(n):
        if out and rng.random() < 0.35:
            words = rng.choice(out).split()
            for _ in range(rng.randint(1, 3)):
                op = rng.random()
                i = rng.randrange(len(words))
                if op < 0.4:
                    words[i] = rng.choice(FILLER + NAMES)
                elif op < 0.7:
                    words.insert(i, rng.choice(FILLER))
                elif len(words) > 3:
                    del words[i]
            out.append(" ".join(words))
        else:
            t = rng.choice(TEMPLATES)
            out.append(t.format(v=rng.choice(VERBS), o=rng.choice(OBJECTS), o2=rng.choice(OBJECTS),
                                n=rng.choice(NAMES), p=rng.choice(PURPOSES), p2=rng.choice(PURPOSES)))
    return out


def naive(texts: list[str], threshold: float, budget_s: float) -> tuple[list[bool], int, float]:
    """Loop rouge-score until done or out of budget; returns (decisions so far, pairs scored, seconds)."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    pool: list[str] = []
    keep: list[bool] = []
    pairs = 0
    t0 = time.perf_counter()
    for t in texts:
        novel = True
        for p in pool:
            pairs += 1
            if scorer.score(p, t)["rougeL"].fmeasure > threshold:
                novel = False
                break
        keep.append(novel)
        if novel:
            pool.append(t)
        if time.perf_counter() - t0 > budget_s:
            break
    return keep, pairs, time.perf_counter() - t0


def pairs_full(texts: list[str], keep: list[bool], threshold: float) -> int:
    """Pairs the naive loop scores over all texts: the whole pool for a kept text, up to the first
    kept text above the threshold for a dropped one (found with the exact pairwise score)."""
    from instructcoder_utils.rouge import lcs_length, make_tokenizer, rouge_fmeasure

    tok = make_tokenizer()
    pool: list[list[str]] = []
    total = 0
    for t, k in zip(texts, keep, strict=True):
        toks = tok.tokenize(t)
        if k:
            total += len(pool)
            pool.append(toks)
        else:
            first = next(i for i, p in enumerate(pool)
                         if rouge_fmeasure(lcs_length(p, toks), len(p), len(toks)) > threshold)
            total += first + 1
    return total


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--threshold", type=float, default=0.7)
    ap.add_argument("--baseline-budget", type=float, default=180.0)
    args = ap.parse_args()
    texts = make_texts(args.n)

    t0 = time.perf_counter()
    filt = RougeFilter(args.threshold)
    ours = [filt.add_if_novel(t) for t in texts]
    ours_s = time.perf_counter() - t0
    print(f"ours: {ours_s:.2f}s, kept {sum(ours)}/{len(texts)}, LCS computed for {filt.pairs_scored} pairs")

    ref, pairs, base_s = naive(texts, args.threshold, args.baseline_budget)
    done = len(ref)
    identical = ref == ours[:done]
    if done == len(texts):
        mode, base_full = "full", base_s
    else:
        total = pairs_full(texts, ours, args.threshold)
        base_full = base_s * total / max(pairs, 1)
        mode = f"extrapolated prefix={done} pairs={pairs} of {total}"
    print(f"rouge-score loop: {base_s:.1f}s over {done} texts ({pairs} pairs); full run ~{base_full:.0f}s ({mode})")
    print(
        f"RESULT rouge_filter ratio={base_full / ours_s:.1f} seconds={ours_s:.2f} instances={len(texts)} "
        f"kept={sum(ours)} identical={'true' if identical else 'false'} checked={done} "
        f"baseline={mode.split()[0]} baseline_seconds={base_full:.1f}"
    )


if __name__ == "__main__":
    main()
