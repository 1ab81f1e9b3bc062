"""Stage 06 figures and tables about training and evaluation, read from stages 04-05's files.

Dataset figures (verbs, scenarios, lengths, edit ratio) come from ``stats.py`` over the stage-03
dataset; this module draws what the paper reports about models: base vs tuned accuracy, data
scaling, LoRA rank, accuracy by edit ratio, loss curves and hyper-parameters.
"""

from __future__ import annotations

from pathlib import Path
from textwrap import fill
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from . import stats  # noqa: E402
from .files import read_json, read_optional_json  # noqa: E402

SET_NAMES = {"editeval": "EditEval (execution)", "own": "own benchmark (execution)",
             "test_split": "in-distribution test split"}


def _save(fig, path: Path, dpi: int) -> Path:
    """Figures are written the way stage 03's are (one helper: stats._save)."""
    return stats._save(fig, path.parent, path.stem, dpi)


def accuracy_table(out: Path) -> pd.DataFrame:
    """Base vs tuned pass@1 per evaluation set, with the paired test from comparison.json."""
    scores = read_json(out / "05_evaluation" / "scores.json")
    comp = read_optional_json(out / "05_evaluation" / "comparison.json") or {}
    rows = []
    for name, s in scores["sets"].items():
        c = comp.get(name, {})
        base, tuned = s["base"], s["tuned"]
        rows.append({
            "set": SET_NAMES.get(name, name), "tasks": s["n"], "scoring": s.get("scoring", ""),
            "base prompt": s.get("base_prompt", ""), "base pass@1 %": base, "tuned pass@1 %": tuned,
            "tuned / base": round(tuned / base, 2) if base else None,
            "gained": len(c.get("gained", [])), "lost": len(c.get("lost", [])),
            "McNemar p": c.get("mcnemar_exact_p"),
            "unchanged replies (base / tuned)": f"{s.get('base_unchanged', '-')} / {s.get('tuned_unchanged', '-')}",
        })
    return pd.DataFrame(rows)


ANSWER_COLUMNS = ["set", "tasks", "base pass@1 %", "tuned pass@1 %", "gained", "lost", "McNemar p"]
METHOD_WORDS = {"synth": "synthesized", "llm": "LLM-written", "both": "synthesized and LLM-written",
                "published": "of the authors' released"}


def _tasks(n: int) -> str:
    return f"{n} task" if n == 1 else f"{n} tasks"


def _pval(p: float | None) -> str:
    return "-" if p is None or p != p else ("< 0.001" if p < 0.001 else f"{p:.3g}")


def _p(p: float | None) -> str:
    v = _pval(p)
    return f"p {v}" if v.startswith("<") else f"p = {v}"


def answer_table(acc: pd.DataFrame) -> pd.DataFrame:
    """The accuracy table cut to what the answer needs, p-values to three significant digits."""
    table = acc[ANSWER_COLUMNS].copy()
    table["McNemar p"] = [_pval(p) for p in table["McNemar p"]]
    return table


def answer_sentences(out: Path, alpha: float = 0.05) -> list[str]:
    """Three sentences a reader needs first: the in-distribution result, the transfer result, and what this
    run cannot say about the paper's. Every figure in them is read from this run's files."""
    scores = read_json(out / "05_evaluation" / "scores.json")
    comp = read_optional_json(out / "05_evaluation" / "comparison.json") or {}
    run = (read_optional_json(out / "run.json") or {}).get("profile") or {}
    runs = read_optional_json(out / "04_training" / "runs.json") or {}
    main = next((r for r in runs.get("runs", []) if r.get("name") == runs.get("main")), {})
    sets = scores["sets"]
    first = "test_split" if "test_split" in sets else next(iter(sets))

    flips = {k: (len(comp.get(k, {}).get("gained", [])), len(comp.get(k, {}).get("lost", [])),
                 comp.get(k, {}).get("mcnemar_exact_p")) for k in sets}

    def short(k: str) -> str:
        return SET_NAMES.get(k, k).split(" (")[0]

    s, (g, lo, p) = sets[first], flips[first]
    verdict = (f"a {'gain' if g > lo else 'loss'} beyond chance" if p is not None and p < alpha
               else "a difference chance alone could make")
    where = "held-out tasks of its own training data" if first == "test_split" else SET_NAMES.get(first, first)
    one = (f"On {s['n']} {where}, the tuned model passes {s['tuned']:.1f} % against the base model's "
           f"{s['base']:.1f} %: it gains {_tasks(g)} and loses {lo} ({_p(p)}), {verdict}.")
    others = [k for k in sets if k != first]
    if others:
        parts = [f"{short(k)} ({sets[k]['n']} tasks) {sets[k]['base']:.1f} → {sets[k]['tuned']:.1f} %"
                 for k in others]
        beyond = [k for k in others if (flips[k][2] or 1.0) < alpha]
        tail = ("none of these differences is beyond chance" if not beyond else "beyond chance on " + ", ".join(
            f"{short(k)} ({'gain' if flips[k][0] > flips[k][1] else 'loss'}, {_p(flips[k][2])})" for k in beyond))
        two = f"On the sets it was not trained for, base → tuned: {'; '.join(parts)}; {tail} (at {_pval(alpha)})."
    else:
        two = "No other evaluation set was scored, so this run says nothing about transfer."
    gen = run.get("generation") or {}
    model = (run.get("training") or {}).get("base_model", "?")
    n_train = main.get("train_examples")
    data = f"{n_train} {METHOD_WORDS.get(gen.get('method'), gen.get('method', ''))} examples".strip()
    three = (f"It does not test the paper's claim as made: the base model here is {model}, tuned on {data} "
             f"(the paper tuned LLaMA 7B-33B on {stats.PAPER_INSTANCES:,} ChatGPT-written ones), and edits are scored by running "
             f"tests, not judged by GPT-4.")
    return [one, two, three]


def base_prompt_table(out: Path) -> pd.DataFrame:
    """The base model under every prompt it was tried with (the best one is used: no straw man)."""
    scores = read_json(out / "05_evaluation" / "scores.json")
    rows = [{"prompt": p, **{SET_NAMES.get(k, k): v for k, v in sets.items()}}
            for p, sets in scores.get("base_prompts", {}).items()]
    df = pd.DataFrame(rows)
    if not df.empty:
        df["chosen"] = df["prompt"].eq(scores.get("base_prompt"))
    return df


def pass1_label(out: Path) -> str:
    """How this run's pass@1 was measured, read from the tuned model's metrics: "greedy pass@1", or the mean
    over the samples drawn per task, so that a sampled run is never reported as greedy."""
    scores = read_json(out / "05_evaluation" / "scores.json")
    d = read_json(out / "05_evaluation" / scores["tuned_label"] / "metrics.json").get("decoding", {})
    if not d.get("temperature"):
        return "greedy pass@1"
    return f"pass@1, mean of {d['n']} samples per task at T={d['temperature']:g}"


def base_vs_tuned_figure(acc: pd.DataFrame, path: Path, dpi: int = 120, label: str = "greedy pass@1") -> Path:
    fig, ax = plt.subplots(figsize=(7, 3.6))
    x = range(len(acc))
    w = 0.38
    ax.bar([i - w / 2 for i in x], acc["base pass@1 %"], w, label="base", color="#9e9e9e")
    ax.bar([i + w / 2 for i in x], acc["tuned pass@1 %"], w, label="tuned", color="#1f77b4")
    for i, (b, t) in enumerate(zip(acc["base pass@1 %"], acc["tuned pass@1 %"], strict=True)):
        ax.text(i - w / 2, b + 0.5, f"{b:.1f}", ha="center", fontsize=8)
        ax.text(i + w / 2, t + 0.5, f"{t:.1f}", ha="center", fontsize=8)
    ax.set_xticks(list(x), [s.split(" (")[0] for s in acc["set"]], fontsize=9)
    ax.set_ylabel("pass@1 (%)")
    ax.set_title(f"Base vs instruction-tuned model, {label}", fontsize=10)
    ax.legend()
    return _save(fig, path, dpi)


def sweep_table(out: Path) -> pd.DataFrame:
    """One row per evaluated training run (main + sweeps) with its data fraction, rank and scores."""
    scores = read_json(out / "05_evaluation" / "scores.json")
    runs = {r["name"]: r for r in read_json(out / "04_training" / "runs.json")["runs"]}
    main = runs.get(read_json(out / "04_training" / "runs.json")["main"], {})
    rows = [{"run": main.get("name"), "data_fraction": main.get("data_fraction", 1.0), "lora_r": main.get("lora_r"),
             "mix": main.get("mix") or "all", **{k: v["tuned"] for k, v in scores["sets"].items()}}]
    for label, s in (scores.get("sweeps") or {}).items():
        rows.append({"run": label.removeprefix("run-"), **s})
    df = pd.DataFrame(rows)
    df["mix"] = df["mix"].fillna("all") if "mix" in df else "all"
    for col in ("train_seed", "train_examples", "final_val_loss"):
        df[col] = [runs.get(r, {}).get(col) for r in df["run"]]
    return df


def paired_table(out: Path) -> pd.DataFrame | None:
    """Each other training run against main on every set both were scored on: the tasks it gained and
    lost, task by task, and the exact sign test on them (``evaluate.compare``).

    Why: two pass rates a few points apart say little on 54-194 tasks; the flips and their p-value say
    whether a sweep changed anything, and a seed run's row says how far a mere re-run moves. None when
    no other run was scored."""
    from .evaluate import _per_task, compare

    stage = Path(out) / "05_evaluation"
    scores = read_json(stage / "scores.json")
    rows = []
    for label, run in (scores.get("sweeps") or {}).items():
        for name, main in scores["sets"].items():
            if run.get(name) is None:
                continue
            c = compare(_per_task(stage, scores["tuned_label"], name), _per_task(stage, label, name))
            rows.append({"run": label.removeprefix("run-"), "set": name, "tasks": c["n"],
                         "main pass@1 (%)": main["tuned"], "run pass@1 (%)": run[name],
                         "gained": len(c["gained"]), "lost": len(c["lost"]), "p (sign test)": c["mcnemar_exact_p"]})
    return pd.DataFrame(rows) if rows else None


def interpolation_table(out: Path) -> pd.DataFrame | None:
    """The base model (a = 0), the main run moved part of the way from it (``evaluation.interpolations``)
    and the main run (a = 1) on each set the interpolations were scored on: pass@1, replies that are their
    input unchanged, and the tasks gained and lost against the base model with the sign test.

    Why: where tuning only adds, the sets it does not teach stay at the base model's level all the way; where
    it also takes away what the base model could do, a model between the two does better than either end.
    None when no interpolation was scored."""
    from .evaluate import _per_task, compare

    stage = Path(out) / "05_evaluation"
    scores = read_json(stage / "scores.json")
    interp = scores.get("interpolations") or {}
    if not interp:
        return None
    rows = []
    for name in [s for s in scores["sets"] if any(s in v for v in interp.values())]:
        s = scores["sets"][name]
        models = [(0.0, scores["base_label"], s["base"], s.get("base_unchanged")),
                  *[(v["alpha"], k, v[name], v["unchanged"].get(name)) for k, v in interp.items() if name in v],
                  (1.0, scores["tuned_label"], s["tuned"], s.get("tuned_unchanged"))]
        base = _per_task(stage, scores["base_label"], name)
        for alpha, label, pass1, unchanged in sorted(models, key=lambda m: m[0]):
            c = compare(base, _per_task(stage, label, name))
            rows.append({"set": name, "a": alpha, "model": label, "tasks": s["n"], "pass@1 (%)": pass1,
                         "unchanged replies": unchanged, "gained vs base": len(c["gained"]),
                         "lost vs base": len(c["lost"]), "p (sign test)": c["mcnemar_exact_p"]})
    return pd.DataFrame(rows)


def interpolation_figure(table: pd.DataFrame | None, path: Path, dpi: int = 120) -> Path | None:
    """pass@1 and the share of unchanged replies against a, the base model at 0 and the tuned one at 1."""
    if table is None or table["a"].nunique() < 3:
        return None
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    for name, df in table.groupby("set", sort=False):
        ax.plot(df["a"], df["pass@1 (%)"], marker="o", label=SET_NAMES.get(name, name))
        ax2.plot(df["a"], 100 * df["unchanged replies"] / df["tasks"], marker="o", label=SET_NAMES.get(name, name))
    for a, title, ylabel in ((ax, "Pass rate", "pass@1 (%)"), (ax2, "Replies that copy their input", "% of tasks")):
        a.set_xlabel("a (0: base model, 1: tuned model)")
        a.set_ylabel(ylabel)
        a.set_title(title)
        a.legend(fontsize=8)
    fig.suptitle("Between the base and the tuned model: weights = base + a x (tuned - base)", fontsize=10)
    return _save(fig, path, dpi)


def _line_figure(df: pd.DataFrame, x: pd.Series, sets: list[str], xlabel: str, title: str, path: Path,
                 dpi: int, log_base: float, points: pd.DataFrame | None = None) -> Path:
    """pass@1 of each set against one swept knob, log-scaled x; ``points`` (rows with ``x`` and ``label``)
    are drawn as hollow markers in their set's colour, off the line."""
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ticks = list(x)
    for s in sets:
        if s in df and df[s].notna().any():
            line = ax.plot(x, df[s], marker="o", label=SET_NAMES.get(s, s))[0]
            for _, p in (points if points is not None else pd.DataFrame()).iterrows():
                if pd.notna(p.get(s)):
                    ax.plot([p["x"]], [p[s]], marker="D", mfc="none", color=line.get_color(), ls="none",
                            label=f"{SET_NAMES.get(s, s)}: {p['label']}")
                    ticks.append(p["x"])
    ax.set_xscale("log", base=log_base)
    ticks = sorted(set(ticks))
    ax.set_xticks(ticks, [f"{v:g}" for v in ticks])  # the swept values, not powers of the base
    ax.minorticks_off()
    ax.set_xlabel(xlabel)
    ax.set_ylabel("pass@1 (%)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return _save(fig, path, dpi)


# the training mixes (train.RunSpec.mix) as the mix figure names them; PARTS train on part of the data
MIX_NAMES = {"all": "all", "behaviour": "behaviour only", "refactor": "refactorings only",
             "one_phrasing": "one phrasing per edit", "one_scenario": "one scenario per family"}
PARTS = ("behaviour", "refactor")


def _reseeded(sweeps: pd.DataFrame) -> pd.Series:
    """The seed runs (``training.sweeps.seeds``): main's data and settings from another start, so they
    are no point of an ablation's curve - they measure how far two such runs land apart."""
    if "train_seed" not in sweeps:
        return pd.Series(False, index=sweeps.index)
    return sweeps["train_seed"].notna()


def data_scaling_figure(sweeps: pd.DataFrame, base_rank: int | None, sets: list[str], path: Path,
                        dpi: int = 120) -> Path | None:
    """Pass rate vs training examples, the nested fractions of the data (the paper's data-scaling figure).
    Runs on a part of the data mix are drawn at their own example counts, so a mix ablation is read
    against mixed data of the same size."""
    df = sweeps[(sweeps["mix"] == "all") & ~_reseeded(sweeps)]
    df = df[df["lora_r"] == base_rank] if base_rank is not None else df
    df = df.dropna(subset=["data_fraction"]).sort_values("data_fraction")
    if df["data_fraction"].nunique() < 2:
        return None
    if "train_examples" in df and df["train_examples"].notna().all():
        mixes = sweeps[sweeps["mix"].isin(PARTS) & sweeps["train_examples"].notna()]
        points = mixes.assign(x=mixes["train_examples"], label=[MIX_NAMES[m] for m in mixes["mix"]])
        return _line_figure(df, df["train_examples"], sets, "training examples (nested parts of the data)",
                            "Data scaling", path, dpi, 2, points=points)
    return _line_figure(df, df["data_fraction"] * 100, sets, "training data used (%)", "Data scaling", path, dpi, 10)


def rank_figure(sweeps: pd.DataFrame, sets: list[str], path: Path, dpi: int = 120) -> Path | None:
    """Pass rate vs LoRA rank at full data (the main run and the rank sweep)."""
    df = sweeps[(sweeps["data_fraction"].fillna(1.0) == 1.0) & (sweeps["mix"] == "all") & ~_reseeded(sweeps)]
    df = df.dropna(subset=["lora_r"]).sort_values("lora_r")
    if df["lora_r"].nunique() < 2:
        return None
    return _line_figure(df, df["lora_r"], sets, "LoRA rank", "LoRA rank", path, dpi, 2)


def mix_figure(sweeps: pd.DataFrame, sets: list[str], path: Path, dpi: int = 120) -> Path | None:
    """Pass rate when training on all the data vs only its behaviour-changing edits or only its
    refactorings (the paper's data-mix ablation at our scale), and on the same edits with one phrasing
    per edit or one scenario per program family; bars are labelled with example counts. Seed runs stand
    beside ``all`` as its repeats: a mix's bar is worth reading only where it leaves their spread."""
    df = sweeps[(sweeps["data_fraction"].fillna(1.0) == 1.0)]
    seeds = df["train_seed"] if "train_seed" in df else pd.Series(None, index=df.index)
    df = df.assign(mix=[f"seed {int(v)}" if pd.notna(v) else m for m, v in zip(df["mix"], seeds, strict=True)])
    df = df[df["mix"].ne("all") | df["run"].eq("main")].drop_duplicates("mix")
    if df["mix"].nunique() < 2:
        return None
    names = {**MIX_NAMES, **{m: f"all, {m}" for m in df["mix"] if m.startswith("seed ")}}
    order = [m for m in dict.fromkeys(["all", *sorted(set(names) - set(MIX_NAMES)), *MIX_NAMES]) if m in set(df["mix"])]
    df = df.set_index("mix").reindex(order)
    shown = [s for s in sets if s in df and df[s].notna().any()]
    fig, ax = plt.subplots(figsize=(max(6.5, 1.6 * len(order)), 3.8))  # room for each group's label
    w = 0.8 / max(1, len(shown))
    for j, s in enumerate(shown):
        ax.bar([i + (j - (len(shown) - 1) / 2) * w for i in range(len(order))], df[s], w,
               label=SET_NAMES.get(s, s))
    n = df["train_examples"] if "train_examples" in df else pd.Series([None] * len(order), index=order)
    ax.set_xticks(range(len(order)), [f"{fill(names[m], 16)}\n({int(k)} ex.)" if pd.notna(k) else fill(names[m], 16)
                                      for m, k in zip(order, n, strict=True)])
    ax.set_ylabel("pass@1 (%)")
    ax.set_title("Data mix: all edits, a part of them, or the same edits less varied")
    ax.legend(fontsize=8)
    return _save(fig, path, dpi)


def phrasing_table(out: Path, run: str = "mix-one_phrasing") -> pd.DataFrame | None:
    """Test-split pass@1 of the base, main and one-phrasing models, the tasks split by whether their
    instruction is said in its edit's first phrasing - the only wording the one-phrasing run trained on.

    Why: that run lost test-split tasks to main; this says whether it lost the edits or the wordings. None
    when the run was not scored on the test split."""
    from datasets import load_from_disk

    from .evaluate import _per_task
    from .synth import one_phrasing

    stage = out / "05_evaluation"
    scores = read_json(stage / "scores.json")
    labels = {"base": scores["base_label"], "main": scores["tuned_label"], run: f"run-{run}"}
    if not (stage / labels[run] / "results.jsonl").is_file():
        return None
    passed = {name: _per_task(stage, label, "test_split") for name, label in labels.items()}
    if not passed[run]:
        return None
    first = {r["id"]: one_phrasing(r) == r["instruction"] for r in load_from_disk(str(out / "03_filtering" / "dataset"))["test"]}
    rows = []
    for is_first, words in ((True, "its edit's first phrasing (the one-phrasing run's)"), (False, "another phrasing")):
        ids = [t for t in passed[run] if first.get(t) is is_first]
        rows.append({"test tasks said in": words, "tasks": len(ids),
                     **{f"{name} pass@1 (%)": round(100 * sum(p.get(t, 0.0) for t in ids) / max(1, len(ids)), 1)
                        for name, p in passed.items()}})
    return pd.DataFrame(rows)


def edit_ratio_table(out: Path, label: str) -> pd.DataFrame:
    """Pass rate by the reference's edit-ratio bin, per set, for one evaluated model."""
    m = read_json(out / "05_evaluation" / label / "metrics.json")["sets"]
    rows = [{"set": s, "bin": b, **v} for s, sm in m.items() for b, v in sm.get("by_edit_ratio", {}).items()]
    return pd.DataFrame(rows)


def edit_ratio_figure(base: pd.DataFrame, tuned: pd.DataFrame, path: Path, dpi: int = 120) -> Path | None:
    if base.empty and tuned.empty:
        return None
    both = pd.concat([base.assign(model="base"), tuned.assign(model="tuned")])
    both = both.groupby(["model", "bin"], as_index=False)[["samples", "passed"]].sum()
    both["pass_rate"] = 100 * both["passed"] / both["samples"]
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    bins = sorted(both["bin"].unique())
    w = 0.38
    for j, model in enumerate(("base", "tuned")):
        sub = both[both["model"] == model].set_index("bin").reindex(bins)
        ax.bar([i + (j - 0.5) * w for i in range(len(bins))], sub["pass_rate"].fillna(0), w, label=model,
               color=("#9e9e9e", "#1f77b4")[j])
    ax.set_xticks(range(len(bins)), bins, fontsize=8)
    ax.set_xlabel("edit ratio of the reference edit (lines changed / lines)")
    ax.set_ylabel("pass rate (%)")
    ax.set_title("Accuracy by edit ratio (all evaluation sets)")
    ax.legend()
    return _save(fig, path, dpi)


def loss_figure(out: Path, path: Path, dpi: int = 120) -> Path | None:
    """Validation (and training) loss of every run, on one set of axes."""
    runs = read_json(out / "04_training" / "runs.json")["runs"]
    fig, ax = plt.subplots(figsize=(7, 3.8))
    drawn = 0
    for r in runs:
        csv = out / "04_training" / r["name"] / "loss.csv"
        if not csv.is_file():
            continue
        df = pd.read_csv(csv)
        val = df.dropna(subset=["val_loss"]) if "val_loss" in df else pd.DataFrame()
        if not val.empty:
            ax.plot(val["step"], val["val_loss"], marker=".", label=f"{r['name']} (validation)")
            drawn += 1
        if r["name"] == read_json(out / "04_training" / "runs.json")["main"] and "train_loss" in df:
            tr = df.dropna(subset=["train_loss"])
            ax.plot(tr["step"], tr["train_loss"], alpha=0.4, label=f"{r['name']} (train)")
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (response tokens)")
    ax.set_title("Training curves")
    ax.legend(fontsize=7, ncol=2)
    return _save(fig, path, dpi)


def hyperparameter_table(out: Path) -> pd.DataFrame:
    """Each training run's settings beside the paper's (LoRA r16, lr 3e-4, batch 128, 3 epochs); a run that
    trained every weight of its top layers (``method: full``) has no LoRA settings."""
    run_json = read_json(out / "run.json") if (out / "run.json").is_file() else {}
    t = (run_json.get("profile") or {}).get("training", {})
    rows = [{"run": "paper (LLaMA 7B-33B)", "base model": "LLaMA / BLOOM", "method": "lora", "layers": "all",
             "lora_r": 16, "lora_alpha": 16,
             "targets": "q,k,v,o", "learning_rate": "3e-4", "effective batch": 128, "epochs": 3,
             "max_length": 1024, "train examples": "108k"}]
    for r in read_json(out / "04_training" / "runs.json")["runs"]:
        m = {}
        mfile = out / "04_training" / r["name"] / "metrics.json"
        if mfile.is_file():
            m = read_json(mfile)
        method = r.get("method", "lora")  # runs.json before full fine-tuning existed: LoRA
        lora = method == "lora"
        rc = m.get("run_config", t)
        layers = rc.get("train_layers", rc.get("lora_layers"))  # runs trained before the rename
        rows.append({
            "run": r["name"], "base model": r.get("base_model") or t.get("base_model"),
            "method": method, "layers": f"top {layers}" if layers else "all",
            "lora_r": r.get("lora_r") if lora else "-",
            "lora_alpha": m.get("lora_alpha", t.get("lora_alpha")) if lora else "-",
            "targets": ",".join(x.replace("_proj", "") for x in m.get("target_modules", t.get("target_modules", [])))
            if lora else "every weight",
            "learning_rate": f"{t.get('learning_rate', 0):g}",
            "effective batch": (t.get("batch_size") or 0) * (t.get("gradient_accumulation_steps") or 1),
            "epochs": t.get("epochs"), "max_length": t.get("max_length"), "train examples": r.get("train_examples"),
            "tokens/s": m.get("tokens_per_s"), "minutes": round((r.get("seconds") or 0) / 60, 1),
        })
    return pd.DataFrame(rows)


def summary_line(out: Path) -> dict[str, Any]:
    """The few numbers a reader wants first."""
    scores = read_json(out / "05_evaluation" / "scores.json")
    return {k: f"base {v['base']:.1f}% -> tuned {v['tuned']:.1f}% (n={v['n']})" for k, v in scores["sets"].items()}
