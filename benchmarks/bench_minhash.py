"""MinHash near-duplicate removal: 100,000 synthetic code snippets with planted near-duplicates.

Ours: vectorized numpy MinHash + LSH banding (datasketch's band/row choice), greedy in order.
Baseline: the usual datasketch loop - a ``MinHash()`` per item, ``update()`` per shingle, then
``MinHashLSH.query`` / ``insert`` - run on a subset and extrapolated linearly (its cost per item is
flat), unless ``--baseline-n`` covers everything. Recall: the fraction of planted near-duplicates
(exact shingle Jaccard >= threshold to their source) that are removed; precision: the fraction of
removed items whose exact Jaccard to the kept item they were matched with is >= threshold - 0.1.

    .venv/bin/python benchmarks/bench_minhash.py [--n 100000] [--baseline-n 5000]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from instructcoder_utils.dedup import code_tokens, minhash_dedup  # noqa: E402

NAMES = ["data", "items", "result", "value", "count", "total", "user", "path", "config", "cache", "row",
         "line", "text", "key", "node", "buf", "index", "size", "name", "score", "price", "record"]
FUNCS = ["load", "parse", "compute", "update", "fetch", "merge", "filter", "render", "save", "check"]
STMTS = [
    "{a} = {b} + {n}", "if {a} > {n}:\n        {b} = {a}", "for {a} in {b}:\n        {c} += {a}",
    "{a} = [{b} for {b} in {c} if {b}]", "{a}.append({b})", "return {a}", "{a} = {b}.get('{c}', {n})",
    "while {a} < {n}:\n        {a} += 1", "{a} = sorted({b}, key=len)", "print({a}, {b})",
    "try:\n        {a} = int({b})\n    except ValueError:\n        {a} = {n}", "{a} = {{'{b}': {c}}}",
]


def snippet(rng: random.Random) -> str:
    body = []
    for _ in range(rng.randint(5, 14)):
        body.append("    " + rng.choice(STMTS).format(a=rng.choice(NAMES), b=rng.choice(NAMES),
                                                     c=rng.choice(NAMES), n=rng.randint(0, 999)))
    return f"def {rng.choice(FUNCS)}_{rng.choice(NAMES)}({rng.choice(NAMES)}):\n" + "\n".join(body) + "\n"


def perturb(code: str, rng: random.Random) -> str:
    lines = code.split("\n")
    i = rng.randrange(1, max(2, len(lines) - 1))
    if rng.random() < 0.5:
        lines.insert(i, f"    # note {rng.randint(0, 99)}")  # comment: invisible after normalization
    else:
        lines[i] = lines[i].replace(str(rng.randint(0, 9)), str(rng.randint(0, 9)))
    return "\n".join(lines)


def make(n: int, dup_rate: float = 0.2, seed: int = 0) -> tuple[list[str], dict[int, int]]:
    rng = random.Random(seed)
    codes: list[str] = []
    planted: dict[int, int] = {}
    for i in range(n):
        if codes and rng.random() < dup_rate:
            src = rng.randrange(len(codes))
            codes.append(perturb(codes[src], rng))
            planted[i] = src
        else:
            codes.append(snippet(rng))
    return codes, planted


def shingles(code: str, k: int) -> set:
    t = code_tokens(code)
    return {tuple(t[i : i + k]) for i in range(max(1, len(t) - k + 1))}


def jaccard(a: str, b: str, k: int) -> float:
    x, y = shingles(a, k), shingles(b, k)
    return len(x & y) / max(1, len(x | y))


def baseline(codes: list[str], threshold: float, num_perm: int, k: int) -> float:
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    t0 = time.perf_counter()
    for i, c in enumerate(codes):
        m = MinHash(num_perm=num_perm)
        t = code_tokens(c)
        for j in range(max(1, len(t) - k + 1)):
            m.update(" ".join(t[j : j + k]).encode())
        if not lsh.query(m):
            lsh.insert(i, m)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--baseline-n", type=int, default=5_000)
    ap.add_argument("--threshold", type=float, default=0.75)
    ap.add_argument("--num-perm", type=int, default=128)
    ap.add_argument("--shingle", type=int, default=5)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    codes, planted = make(args.n)
    t0 = time.perf_counter()
    res = minhash_dedup(codes, args.threshold, args.num_perm, args.shingle, workers=args.workers)
    ours = time.perf_counter() - t0
    true_dups = [i for i, s in planted.items() if jaccard(codes[i], codes[s], args.shingle) >= args.threshold]
    recall = sum(not res.keep[i] for i in true_dups) / max(1, len(true_dups))
    removed = [i for i in range(len(codes)) if not res.keep[i]]
    sample = random.Random(1).sample(removed, min(2000, len(removed)))
    precision = sum(
        jaccard(codes[i], codes[res.cluster_of[i]], args.shingle) >= args.threshold - 0.1 for i in sample
    ) / max(1, len(sample))
    bn = min(args.baseline_n, args.n)
    base = baseline(codes[:bn], args.threshold, args.num_perm, args.shingle) * args.n / bn
    mode = "full" if bn == args.n else f"extrapolated_from={bn}"
    sizes = res.cluster_sizes()
    print(f"ours {ours:.1f}s; kept {sum(res.keep)}/{len(codes)}; bands={res.bands} rows={res.rows}; "
          f"largest clusters {sorted(sizes.items())[-3:]}; planted {len(planted)}, true near-dups {len(true_dups)}")
    print(
        f"RESULT minhash_dedup seconds={ours:.2f} instances={len(codes)} ratio={base / ours:.1f} "
        f"baseline_seconds={base:.1f} baseline={mode} recall={recall:.4f} precision={precision:.4f} "
        f"removed={len(removed)}"
    )


if __name__ == "__main__":
    main()
