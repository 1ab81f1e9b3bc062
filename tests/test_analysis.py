"""Stage 06 ablation figures: each is drawn from the sweep table when its sweep ran, and skipped
(None) when it did not, so a profile without sweeps still renders its report."""

from __future__ import annotations

import pandas as pd
from PIL import Image

from instructcoder_utils import analysis as A


def _sweeps() -> pd.DataFrame:
    rows = [
        ("main", 1.0, 16, "all", 12.5, 5.6, 320),
        ("frac0.125", 0.125, 16, "all", 2.5, 1.9, 40),
        ("frac0.5", 0.5, 16, "all", 7.5, 3.7, 160),
        ("r4", 1.0, 4, "all", 10.0, 3.7, 320),
        ("mix-refactor", 1.0, 16, "refactor", 5.0, 1.9, 90),
        ("mix-one_phrasing", 1.0, 16, "one_phrasing", 7.5, 1.9, 318),
    ]
    return pd.DataFrame(rows, columns=["run", "data_fraction", "lora_r", "mix", "test_split", "own", "train_examples"])


def test_ablation_figures_use_only_their_own_runs(tmp_path):
    df = _sweeps()
    for png in (A.data_scaling_figure(df, 16, ["test_split", "own"], tmp_path / "scaling.png"),
                A.rank_figure(df, ["test_split", "own"], tmp_path / "rank.png"),
                A.mix_figure(df, ["test_split", "own"], tmp_path / "mix.png")):
        assert png is not None and Image.open(png).size[0] > 300
    # without example counts the x axis falls back to the fraction of the data (and no mix points)
    assert A.data_scaling_figure(df.drop(columns="train_examples"), 16, ["own"], tmp_path / "pct.png") is not None
    only_main = df[df["run"] == "main"]
    assert A.data_scaling_figure(only_main, 16, ["own"], tmp_path / "a.png") is None
    assert A.rank_figure(only_main, ["own"], tmp_path / "b.png") is None
    assert A.mix_figure(only_main, ["own"], tmp_path / "c.png") is None
    # the mix run is not a point of the rank or scaling figures (it has rank 16 and fraction 1.0 too)
    assert A.mix_figure(df[df["mix"] == "all"], ["own"], tmp_path / "d.png") is None


def test_mix_figure_draws_the_phrasing_run_but_scaling_only_the_parts(tmp_path, monkeypatch):
    """The one-phrasing run is a bar of the mix figure; on the scaling figure only the runs on a part of
    the data are points (at their size), as the rephrased run has main's examples."""
    drawn = []
    monkeypatch.setattr(A, "_line_figure", lambda df, x, sets, *a, points=None, **k: drawn.append(points))
    A.data_scaling_figure(_sweeps(), 16, ["own"], tmp_path / "s.png")
    assert list(drawn[0]["run"]) == ["mix-refactor"]
    monkeypatch.undo()
    import matplotlib.pyplot as plt

    ticks = []
    monkeypatch.setattr(A, "_save", lambda fig, path, dpi: ticks.extend(
        t.get_text() for t in fig.axes[0].get_xticklabels()) or plt.close(fig))
    A.mix_figure(_sweeps(), ["test_split", "own"], tmp_path / "m.png")
    assert ticks == ["all\n(320 ex.)", "refactorings\nonly\n(90 ex.)", "one phrasing per\nedit\n(318 ex.)"]


def test_pass1_label_says_whether_the_run_sampled(tmp_path):
    """A run with `evaluation.temperature` > 0 reports the mean over its samples, never "greedy"."""
    from instructcoder_utils.files import write_json

    stage = tmp_path / "05_evaluation"
    write_json(stage / "scores.json", {"tuned_label": "tuned-main"})
    write_json(stage / "tuned-main" / "metrics.json", {"decoding": {"temperature": 0.0, "n": 1, "top_p": 0.95}})
    assert A.pass1_label(tmp_path) == "greedy pass@1"
    write_json(stage / "tuned-main" / "metrics.json", {"decoding": {"temperature": 0.8, "n": 5, "top_p": 0.95}})
    assert A.pass1_label(tmp_path) == "pass@1, mean of 5 samples per task at T=0.8"


def test_phrasing_table_splits_the_test_tasks_by_wording(tmp_path):
    """Tasks said in their edit's first phrasing (the one-phrasing run's wording) and the rest, each with
    the pass rate of base, main and the one-phrasing run; None until that run is scored on the test split."""
    import json

    from datasets import Dataset, DatasetDict

    from instructcoder_utils.files import write_json, write_jsonl
    from instructcoder_utils.synth import one_phrasing
    from instructcoder_utils.synth_programs import make_program_instance

    rows = []
    for i in range(40):
        _, inst, _ = make_program_instance(9, i)
        if inst:
            meta = {**inst, "verified": "execution", "program_seed": 9, "program_index": i}
            rows.append({"id": f"t{i}", "instruction": inst["instruction"], "input": inst["input"],
                         "output": inst["output"], "meta": json.dumps(meta)})
    first = {r["id"] for r in rows if one_phrasing(r) == r["instruction"]}
    assert 0 < len(first) < len(rows)
    DatasetDict(test=Dataset.from_list(rows)).save_to_disk(str(tmp_path / "03_filtering" / "dataset"))
    stage = tmp_path / "05_evaluation"
    write_json(stage / "scores.json", {"base_label": "base-chat_v1", "tuned_label": "tuned-main"})
    for label, passes in (("base-chat_v1", lambda t: False), ("tuned-main", lambda t: True),
                          ("run-mix-one_phrasing", lambda t: t in first)):
        write_jsonl(stage / label / "results.jsonl", [{"set": "test_split", "task_id": r["id"], "passed": passes(r["id"])}
                                                      for r in rows])
    table = A.phrasing_table(tmp_path)
    assert table["tasks"].tolist() == [len(first), len(rows) - len(first)]
    assert table["main pass@1 (%)"].tolist() == [100.0, 100.0] and table["base pass@1 (%)"].tolist() == [0.0, 0.0]
    assert table["mix-one_phrasing pass@1 (%)"].tolist() == [100.0, 0.0]
    (stage / "run-mix-one_phrasing" / "results.jsonl").unlink()
    assert A.phrasing_table(tmp_path) is None


def test_seed_run_is_a_repeat_of_main_not_an_ablation_point(tmp_path, monkeypatch):
    """A seed run has main's fraction, rank and mix: it must not become a second point at 100 % of the
    data or at main's rank, and the mix figure draws it beside `all` as main's repeat."""
    df = pd.concat([_sweeps(), pd.DataFrame([("seed7", 1.0, 16, "all", 10.0, 3.7, 320)], columns=_sweeps().columns)])
    df["train_seed"] = [None] * (len(df) - 1) + [7]
    drawn = []
    monkeypatch.setattr(A, "_line_figure", lambda d, x, sets, *a, points=None, **k: drawn.append(list(d["run"])))
    A.data_scaling_figure(df, 16, ["own"], tmp_path / "s.png")
    A.rank_figure(df, ["own"], tmp_path / "r.png")
    assert drawn == [["frac0.125", "frac0.5", "main"], ["r4", "main"]]
    monkeypatch.undo()
    import matplotlib.pyplot as plt

    ticks = []
    monkeypatch.setattr(A, "_save", lambda fig, path, dpi: ticks.extend(
        t.get_text() for t in fig.axes[0].get_xticklabels()) or plt.close(fig))
    A.mix_figure(df, ["test_split", "own"], tmp_path / "m.png")
    assert ticks == ["all\n(320 ex.)", "all, seed 7\n(320 ex.)", "refactorings\nonly\n(90 ex.)",
                     "one phrasing per\nedit\n(318 ex.)"]


def test_paired_table_counts_each_runs_flips_against_main(tmp_path):
    """Per run and set: the tasks it gained and lost against main, with the sign test; a set the run
    was not scored on has no row, and no other run means no table."""
    from instructcoder_utils.files import write_json, write_jsonl

    stage = tmp_path / "05_evaluation"
    ids = [f"t{i}" for i in range(10)]
    write_json(stage / "scores.json", {"tuned_label": "tuned-main", "sets": {"own": {"tuned": 50.0}, "test_split": {"tuned": 10.0}},
                                       "sweeps": {"run-seed7": {"own": 30.0, "test_split": None}}})
    for label, passed in (("tuned-main", ids[:5]), ("run-seed7", ids[3:6])):
        write_jsonl(stage / label / "results.jsonl", [{"set": "own", "task_id": t, "passed": t in passed} for t in ids])
    table = A.paired_table(tmp_path)
    assert table.to_dict("records") == [{"run": "seed7", "set": "own", "tasks": 10, "main pass@1 (%)": 50.0,
                                         "run pass@1 (%)": 30.0, "gained": 1, "lost": 3, "p (sign test)": 0.625}]
    write_json(stage / "scores.json", {"tuned_label": "tuned-main", "sets": {"own": {"tuned": 50.0}}, "sweeps": {}})
    assert A.paired_table(tmp_path) is None


def test_interpolation_table_runs_from_base_to_tuned_and_counts_flips_against_base(tmp_path):
    """a = 0 is the base model (its best prompt), 1 the main run, the interpolations between, each set
    they were scored on in order of a; gains and losses are against the base model. No interpolation
    scored: no table and no figure."""
    from instructcoder_utils.files import write_json, write_jsonl

    stage = tmp_path / "05_evaluation"
    ids = [f"t{i}" for i in range(10)]
    sets = {"own": {"n": 10, "base": 10.0, "tuned": 20.0, "base_unchanged": 1, "tuned_unchanged": 4},
            "editeval": {"n": 10, "base": 10.0, "tuned": 10.0, "base_unchanged": 0, "tuned_unchanged": 6}}
    write_json(stage / "scores.json", {"base_label": "base-chat_v1", "tuned_label": "tuned-main", "sets": sets,
                                       "interpolations": {"interp-0.5": {"alpha": 0.5, "own": 30.0,
                                                                         "unchanged": {"own": 2}}}})
    for label, passed in (("base-chat_v1", ids[:1]), ("interp-0.5", ids[1:4]), ("tuned-main", ids[:2])):
        write_jsonl(stage / label / "results.jsonl", [{"set": "own", "task_id": t, "passed": t in passed} for t in ids])
    table = A.interpolation_table(tmp_path)
    assert table[["set", "a", "model", "pass@1 (%)", "unchanged replies", "gained vs base", "lost vs base"]].to_dict(
        "records") == [
        {"set": "own", "a": 0.0, "model": "base-chat_v1", "pass@1 (%)": 10.0, "unchanged replies": 1,
         "gained vs base": 0, "lost vs base": 0},
        {"set": "own", "a": 0.5, "model": "interp-0.5", "pass@1 (%)": 30.0, "unchanged replies": 2,
         "gained vs base": 3, "lost vs base": 1},
        {"set": "own", "a": 1.0, "model": "tuned-main", "pass@1 (%)": 20.0, "unchanged replies": 4,
         "gained vs base": 1, "lost vs base": 0}]
    assert table["p (sign test)"].tolist() == [1.0, 0.625, 1.0]
    png = A.interpolation_figure(table, tmp_path / "i.png")
    assert png is not None and Image.open(png).size[0] > 0
    write_json(stage / "scores.json", {"base_label": "base-chat_v1", "tuned_label": "tuned-main", "sets": sets})
    assert A.interpolation_table(tmp_path) is None and A.interpolation_figure(None, tmp_path / "j.png") is None


def _answer_run(tmp_path, sets: dict, comparison: dict):
    from instructcoder_utils.files import write_json

    write_json(tmp_path / "05_evaluation" / "scores.json", {"sets": sets})
    write_json(tmp_path / "05_evaluation" / "comparison.json", comparison)
    write_json(tmp_path / "run.json", {"profile": {"generation": {"method": "synth"},
                                                  "training": {"base_model": "builtin:smollm2-135m-instruct"}}})
    write_json(tmp_path / "04_training" / "runs.json", {"main": "main", "runs": [{"name": "main",
                                                                                  "train_examples": 320}]})
    return tmp_path


def test_answer_says_what_the_run_shows_and_what_it_does_not(tmp_path):
    out = _answer_run(tmp_path, {
        "editeval": {"n": 194, "base": 3.61, "tuned": 6.19},
        "test_split": {"n": 100, "base": 2.0, "tuned": 59.0},
        "own": {"n": 54, "base": 1.85, "tuned": 1.85},
    }, {
        "editeval": {"gained": ["a"] * 6, "lost": ["b"], "mcnemar_exact_p": 0.125},
        "test_split": {"gained": ["c"] * 57, "lost": [], "mcnemar_exact_p": 1.4e-17},
        "own": {"gained": ["d"], "lost": ["e"], "mcnemar_exact_p": 1.0},
    })
    one, two, three = A.answer_sentences(out)
    assert one.startswith("On 100 held-out tasks") and "59.0 %" in one and "2.0 %" in one
    assert "gains 57 tasks and loses 0 (p < 0.001), a gain beyond chance" in one
    assert "EditEval (194 tasks) 3.6 → 6.2 %" in two and "own benchmark (54 tasks) 1.9 → 1.9 %" in two
    assert "none of these differences is beyond chance" in two
    assert "smollm2-135m-instruct, tuned on 320 synthesized examples" in three
    from instructcoder_utils.files import write_json

    write_json(out / "run.json", {"profile": {"generation": {"method": "published"}, "training": {"base_model": "m"}}})
    assert "tuned on 320 of the authors' released examples" in A.answer_sentences(out)[2]


def test_answer_names_a_significant_transfer_loss_and_a_run_without_test_split(tmp_path):
    out = _answer_run(tmp_path, {"own": {"n": 54, "base": 9.0, "tuned": 12.0},
                                 "editeval": {"n": 194, "base": 10.0, "tuned": 2.0}},
                      {"own": {"gained": ["x"] * 3, "lost": [], "mcnemar_exact_p": 0.25},
                       "editeval": {"gained": [], "lost": ["y"] * 15, "mcnemar_exact_p": 6e-5}})
    one, two, _ = A.answer_sentences(out)
    assert one.startswith("On 54 own benchmark") and "a difference chance alone could make" in one
    assert "beyond chance on EditEval (loss, p < 0.001)" in two


def test_sources_figure_only_when_there_is_more_than_one_source(tmp_path):
    from instructcoder_utils import stats

    recs = [{"instruction": f"Rename x to y{i}", "input": f"x = {i}\n", "output": f"y{i} = {i}\n",
             "scenario": "s", "source": f"synth:kind{i % 3}", "meta": {"kind": f"kind{i % 3}"}} for i in range(12)]
    one = stats.describe(recs, tmp_path / "t1", tmp_path / "f1")
    assert len(one["tables"]["sources"]) == 1 and not any(p.stem == "sources" for p in one["figures"])
    recs[0]["source"] = "self_instruct"
    two = stats.describe(recs, tmp_path / "t2", tmp_path / "f2")
    assert any(p.stem == "sources" for p in two["figures"])


def test_answer_table_keeps_the_paired_test_readable():
    acc = pd.DataFrame([{c: 1 for c in A.ANSWER_COLUMNS} | {"McNemar p": 1.4e-17, "extra": 0},
                        {c: 1 for c in A.ANSWER_COLUMNS} | {"McNemar p": 0.0703125, "extra": 0}])
    t = A.answer_table(acc)
    assert list(t.columns) == A.ANSWER_COLUMNS and list(t["McNemar p"]) == ["< 0.001", "0.0703"]
