"""Benchmark the procedural edit synthesizer.

Prints two figures:

* ``RESULT synth``: verified instances per second for a full run (standard library + generated
  programs, every kind, ``workers`` processes), with the behaviour-changing share.
* ``RESULT synth_parse_once``: the structural half against the naive way of writing it, where every
  edit kind re-reads and re-parses every source file. Both run serially on the same files with the
  same quotas and must yield identical candidates; ``ratio`` = naive seconds / ours.

Run: ``.venv/bin/python benchmarks/bench_synth.py [--instances 6000] [--workers 2]``
"""

from __future__ import annotations

import argparse
import random
import time

from instructcoder_utils.config import SynthConfig
from instructcoder_utils.synth import (
    FILES_PER_CHUNK,
    STRUCT_BY_KIND,
    _struct_chunk,
    source_files,
    struct_quota,
    synthesize,
)


def bench_full(n: int, workers: int, seed: int) -> None:
    t0 = time.perf_counter()
    records, counts = synthesize(SynthConfig(max_instances=n, workers=workers), seed=seed)
    dt = time.perf_counter() - t0
    kinds = sum(1 for c in counts.values() if c.get("kept"))
    share = sum(r["meta"]["behaviour_change"] for r in records) / max(1, len(records))
    executed = sum(r["meta"]["verified"] == "execution" for r in records)
    print(f"RESULT synth instances={len(records)} seconds={dt:.1f} kinds={kinds} workers={workers} "
          f"behaviour_share={share:.3f} execution_verified={executed} value={len(records) / dt:.1f} unit=inst/s")


def bench_parse_once(n_files: int, seed: int) -> None:
    files = [(m, str(p)) for m, p in source_files(["stdlib"])]
    random.Random(seed).shuffle(files)
    files = files[:n_files]
    kinds = sorted(STRUCT_BY_KIND)
    quota = struct_quota(6000 * 35 // 100, len(kinds), 6000, -(-len(files) // FILES_PER_CHUNK))
    jobs = [files[i: i + FILES_PER_CHUNK] for i in range(0, len(files), FILES_PER_CHUNK)]
    timings, outputs = {}, {}
    for name, reparse in (("ours", False), ("naive", True)):
        t0 = time.perf_counter()
        cands = []
        for chunk in jobs:
            cands += _struct_chunk((chunk, kinds, 40, seed, quota, reparse))[0]
        timings[name] = time.perf_counter() - t0
        outputs[name] = sorted(c["id"] for c in cands)
    same = outputs["ours"] == outputs["naive"]
    print(f"RESULT synth_parse_once files={len(files)} candidates={len(outputs['ours'])} identical={same} "
          f"seconds={timings['ours']:.1f} baseline_seconds={timings['naive']:.1f} "
          f"ratio={timings['naive'] / timings['ours']:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--instances", type=int, default=6000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--files", type=int, default=120, help="source files for the parse-once comparison")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    bench_full(args.instances, args.workers, args.seed)
    bench_parse_once(args.files, args.seed)


if __name__ == "__main__":
    main()
