"""Seed mining speed: the streaming miner (one ``git log --raw`` + one ``git cat-file --batch``) against a
naive miner that runs ``git show`` per commit (metadata + file list, then each blob).

A synthetic repository of N commits is built with ``git fast-import`` (seconds). The miner runs on the
whole history, DuckDB mirror included; the baseline is timed on a subset and its rate extrapolated to
the whole history (stated in the printed line). Both must agree on the candidates of the subset.

    .venv/bin/python benchmarks/bench_seeds.py [--commits 3000] [--baseline-commits 300]
"""

from __future__ import annotations

import argparse
import importlib
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from instructcoder_utils.seeds import mine_repos  # noqa: E402


def _data(text: str) -> bytes:
    raw = text.encode()
    return b"data %d\n" % len(raw) + raw + b"\n"


def build_repo(path: Path, n_commits: int, n_files: int = 40, seed: int = 0) -> None:
    """N commits: ~85 % one-line edits of one Python file, the rest multi-file or non-Python edits."""
    rng = random.Random(seed)
    files = {f"pkg/mod{i}.py": [f"def f{j}(x):\n    return x + {j}\n" for j in range(60)] for i in range(n_files)}
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
    out = bytearray()
    for k in range(n_commits):
        t = 1_700_000_000 + 60 * k
        roll = rng.random()
        names = rng.sample(sorted(files), 2) if roll < 0.1 else [rng.choice(sorted(files))]
        changed: dict[str, str] = {}
        if k == 0:
            changed = {name: "".join(body) for name, body in files.items()}
        elif roll < 0.15 and roll >= 0.1:
            changed = {"NOTES.md": f"note {k}\n"}
        else:
            for name in names:
                j = rng.randrange(60)
                files[name][j] = f"def f{j}(x):\n    return x * {k} + {j}\n"
                changed[name] = "".join(files[name])
        out += b"commit refs/heads/main\n"
        out += b"author Dev <dev@example.com> %d +0000\ncommitter Dev <dev@example.com> %d +0000\n" % (t, t)
        out += _data(f"Update the formula in {names[0]} step {k}\n")
        for name, text in changed.items():
            out += f"M 100644 inline {name}\n".encode() + _data(text)
        out += b"\n"
    subprocess.run(["git", "-C", str(path), "fast-import", "--quiet"], input=bytes(out), check=True)
    subprocess.run(["git", "-C", str(path), "checkout", "-q", "-f", "main"], check=True)


def naive_candidates(path: Path, shas: list[str]) -> set[str]:
    """The baseline: ``git show`` per commit for its parents and files, then one per blob."""
    found = set()
    for sha in shas:
        out = subprocess.run(["git", "-C", str(path), "show", "-M", "--name-status", "--format=%P%x00%an%x00%B%x00",
                              sha], capture_output=True, check=True).stdout.decode(errors="replace")
        head, _, files = out.rpartition("\0")
        parents = head.split("\0", 1)[0].split()
        entries = [ln.split("\t") for ln in files.strip().splitlines() if ln.strip()]
        if len(parents) != 1 or len(entries) != 1 or entries[0][0] != "M" or not entries[0][1].endswith(".py"):
            continue
        p = entries[0][1]
        before = subprocess.run(["git", "-C", str(path), "show", f"{parents[0]}:{p}"], capture_output=True).stdout
        after = subprocess.run(["git", "-C", str(path), "show", f"{sha}:{p}"], capture_output=True).stdout
        try:
            before.decode("utf-8"), after.decode("utf-8")
        except UnicodeDecodeError:
            continue
        if b"\0" not in before and b"\0" not in after:
            found.add(sha)
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--commits", type=int, default=3000)
    ap.add_argument("--baseline-commits", type=int, default=300)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "synthetic"
        t0 = time.perf_counter()
        build_repo(repo, args.commits)
        print(f"built {args.commits} commits with git fast-import in {time.perf_counter() - t0:.1f}s", flush=True)

        for mod in ("duckdb", "pandas", "pyarrow"):  # import cost is not mining throughput
            importlib.import_module(mod)

        t0 = time.perf_counter()
        res = mine_repos([repo], Path(tmp) / "commits.duckdb", max_commits=args.commits, progress=False)
        ours = time.perf_counter() - t0
        shas = subprocess.run(["git", "-C", str(repo), "rev-list", "HEAD"], capture_output=True, check=True,
                              text=True).stdout.split()
        subset = shas[: args.baseline_commits]
        t0 = time.perf_counter()
        naive = naive_candidates(repo, subset)
        base = time.perf_counter() - t0
        ours_cand = {r["commit"] for r in res.expected_rows}
        assert naive == ours_cand & set(subset), "miner and baseline disagree on the candidates"
        ours_rate, base_rate = res.commits_seen / ours, len(subset) / base
        print(f"miner: {res.commits_seen} commits in {ours:.2f}s ({ours_rate:.0f} commits/s, "
              f"{len(res.expected_rows)} candidates, DuckDB mirror included)")
        print(f"naive git show per commit: {len(subset)} commits in {base:.2f}s ({base_rate:.0f} commits/s); "
              f"extrapolated to {len(shas)} commits: {len(shas) / base_rate:.1f}s")
        print(f"RESULT seeds_mining ratio={ours_rate / base_rate:.1f} seconds={ours:.2f} "
              f"instances={res.commits_seen} commits_per_s={ours_rate:.0f} baseline_commits_per_s={base_rate:.0f} "
              f"baseline_measured_on={len(subset)} baseline_extrapolated_seconds={len(shas) / base_rate:.1f}")


if __name__ == "__main__":
    main()
