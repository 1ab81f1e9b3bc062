"""The released InstructCoder data as a source: the loader (the hub id up to the network call, a local
folder and a file), the seeded limit, bad files, the authors' seeds, and stage 03's decontamination report
on a row copied from EditEval. Every fixture is written here, in the release's exact layout."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from released_fixture import EDITEVAL_TASK, HAND_ROWS, SEED_ROWS, write_fixture, write_release

from instructcoder_utils import filtering, generate, released, seeds, stats
from instructcoder_utils.config import ProfileError, load_profile
from instructcoder_utils.files import read_json, read_jsonl


@pytest.fixture(autouse=True)
def datasets_cache(tmp_path, monkeypatch):
    """``datasets`` keeps an Arrow copy of every file it reads; here it goes to the test's own folder."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-datasets"))


def published_profile(path=None, **published_keys):
    return load_profile("smoke", {"generation": {"method": "published",
                                                 "published": {"path": str(path) if path else None,
                                                               **published_keys}}})


def pinned() -> str:
    return load_profile("paper_published").generation.published.revision


def test_hub_id_needs_a_pinned_commit():
    with pytest.raises(ProfileError, match=r"needs revision.*generation\.published\.path"):
        load_profile("smoke", {"generation": {"method": "published"}})
    with pytest.raises(ProfileError, match=r"needs revision"):
        load_profile("smoke", {"seeds": {"source": "published"}})
    with pytest.raises(ProfileError, match=r"generation\.published\.revision: .*'main' is not a commit hash"):
        published_profile(revision="main")
    cfg = published_profile(revision=pinned())
    assert released.locate(cfg) == released.Location("likaixin/InstructCoder", pinned())
    assert released.locate(cfg).label("train.json") == f"likaixin/InstructCoder@{pinned()[:12]}/train.json"


def test_hub_id_offline_says_how_to_provide_a_local_copy(tmp_path, repo_root):
    """The real ``datasets.load_dataset`` call on the hub id, offline and with an empty cache: one message
    that says how to bring a local copy, and stage 02 leaves nothing behind."""
    (tmp_path / "run" / "01_seeds").mkdir(parents=True)
    (tmp_path / "run" / "01_seeds" / "seeds.jsonl").write_text("")
    code = ("import sys\nfrom pathlib import Path\n"
            "from instructcoder_utils import generate, released\n"
            "from instructcoder_utils.config import load_profile\n"
            "out = Path(sys.argv[1])\n"
            "try:\n"
            "    generate.run_generation(load_profile('paper_published'), out, out / '02_generation', progress=False)\n"
            "except released.PublishedDataError as exc:\n"
            "    print(exc)\n"
            "    sys.exit(3)\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "run")], capture_output=True, text=True,
                          env=env, cwd=repo_root, timeout=300)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    msg = proc.stdout
    for part in ("train.json", "likaixin/InstructCoder", pinned(), "hf download", "--local-dir",
                 "generation.published.path"):
        assert part in msg, f"{part!r} not in: {msg}"
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "run" / "02_generation" / "instances.jsonl").exists()


def test_local_folder_and_file(tmp_path):
    folder = write_fixture(tmp_path / "release")
    train, valid = (json.loads((folder / f).read_text()) for f in ("train.json", "valid.json"))
    records, counts = released.instance_records(published_profile(folder))
    assert counts["files"] == {"train.json": len(train), "valid.json": len(valid)} and counts["kept"] == len(records)
    assert [(r["instruction"], r["input"], r["output"]) for r in records] == [
        (r["instruction"], r["input"], r["output"]) for r in train + valid]
    first, last = records[0], records[-1]
    assert first["source"] == "published" and first["id"] == "published-train-0"
    assert (first["meta"]["file"], first["meta"]["row"]) == ("train.json", 0)
    assert (last["meta"]["file"], last["meta"]["row"]) == ("valid.json", len(valid) - 1)
    assert all(isinstance(r["meta"]["behaviour_change"], bool) for r in records)
    # a file instead of the folder: its rows only, and the seeds need the folder
    one, _ = released.instance_records(published_profile(folder / "valid.json"))
    assert [r["instruction"] for r in one] == [r["instruction"] for r in valid]
    with pytest.raises(released.PublishedDataError, match="is one file; point it at the folder"):
        released.seed_records(published_profile(folder / "valid.json"))


def test_limit_takes_a_seeded_sample(tmp_path):
    rows = [{"instruction": f"Rename the variable x{i} to y{i}.", "input": f"x{i} = {i}\n", "output": f"y{i} = {i}\n"}
            for i in range(40)]
    folder = write_release(tmp_path / "release", rows[:30], rows[30:], SEED_ROWS)

    def ids(limit, seed=1234):
        cfg = published_profile(folder, limit=limit)
        cfg.seed = seed
        return [r["id"] for r in released.instance_records(cfg)[0]]

    everything = ids(None)
    picked = ids(10)
    assert len(picked) == 10 and set(picked) <= set(everything)
    assert picked == sorted(picked, key=everything.index)  # in the release's order
    assert ids(10) == picked and ids(10, seed=99) != picked
    assert ids(1000) == everything


def test_bad_files_stop_with_one_message_and_write_nothing(tmp_path):
    folder = write_fixture(tmp_path / "release")
    out = tmp_path / "run"
    (out / "01_seeds").mkdir(parents=True)
    (out / "01_seeds" / "seeds.jsonl").write_text("")
    stage = out / "02_generation"
    cfg = published_profile(folder)
    generate.run_generation(cfg, out, stage, progress=False)
    before = (stage / "instances.jsonl").read_bytes()
    assert len(read_jsonl(stage / "instances.jsonl")) == len(HAND_ROWS)

    good = (folder / "train.json").read_text()
    train = json.loads(good)
    del train[1]["output"]
    (folder / "train.json").write_text(json.dumps(train))
    with pytest.raises(released.PublishedDataError, match=r"train\.json: row 1 \(0-based\): missing output"):
        generate.run_generation(cfg, out, stage, progress=False)
    (folder / "train.json").write_text(json.dumps({"instruction": "Add x.", "input": "a = 1\n", "output": "x = 1\n"}))
    with pytest.raises(released.PublishedDataError, match=r"train\.json: not a JSON list \(it starts with '\{'\)"):
        generate.run_generation(cfg, out, stage, progress=False)
    (folder / "train.json").write_text(json.dumps([{"instruction": "Add x.", "input": 3, "output": "x = 1\n"}]))
    with pytest.raises(released.PublishedDataError, match=r"train\.json: row 0 \(0-based\): input is int"):
        generate.run_generation(cfg, out, stage, progress=False)
    (folder / "train.json").write_text(good)
    (folder / "valid.json").unlink()
    with pytest.raises(released.PublishedDataError, match=r"valid\.json: not found"):
        generate.run_generation(cfg, out, stage, progress=False)
    assert (stage / "instances.jsonl").read_bytes() == before, "a failed re-run must leave the last good output"
    with pytest.raises(released.PublishedDataError, match=r"generation\.published\.path: .* not found"):
        released.instance_records(published_profile(tmp_path / "nowhere"))


def test_published_seeds_beside_the_mined_ones(tmp_path):
    folder = write_fixture(tmp_path / "release")
    cfg = load_profile("smoke", {"seeds": {"source": "published", "repos": []},
                                 "generation": {"published": {"path": str(folder)}}})
    (tmp_path / "01_seeds").mkdir()
    st = seeds.build_seeds(cfg, tmp_path / "01_seeds", progress=False)
    recs = read_jsonl(tmp_path / "01_seeds" / "seeds.jsonl")
    assert st["published"]["rows"] == len(SEED_ROWS) == st["kept"] == len(recs)
    assert [r["instruction"] for r in recs] == [r["instruction"] for r in SEED_ROWS]
    assert {r["source"] for r in recs} == {"seed:published"}
    assert recs[0]["meta"]["file"] == "github_seed.json" and recs[0]["meta"]["lines_added"] >= 1
    table = seeds.compare_sources(recs).set_index("source")
    assert table.loc["seed:published", "seeds"] == len(SEED_ROWS)
    assert ("published", "the authors' seeds (github_seed.json)", len(SEED_ROWS)) in map(
        tuple, seeds.stats_table(st).values.tolist())
    pool = generate.load_seeds(tmp_path / "01_seeds" / "seeds.jsonl", 0)
    assert pool.instructions == [r["instruction"] for r in SEED_ROWS]  # they seed self-instruct (method llm)


def test_decontamination_report_on_a_row_copied_from_editeval(tmp_path, editeval_path):
    folder = write_fixture(tmp_path / "release", editeval=editeval_path)
    cfg = published_profile(folder)
    records, _ = released.instance_records(cfg)
    task = read_jsonl(editeval_path)[EDITEVAL_TASK]
    copied = records[2]  # write_fixture puts the copy third
    assert copied["instruction"] == task["instruction"]
    report = filtering.run_filtering(records, cfg, tmp_path / "03", tokenizer=None, progress=False)
    dec = report["decontamination"]
    steps = {s["step"]: s for s in report["steps"]}
    assert steps["decontamination"]["removed"] == dec["instances"] == 1
    assert dec["checked"] == steps["decontamination"]["in"]
    assert dec["rules"]["code_ngram"]["instances"] == dec["rules"]["instruction_ngram"]["instances"] == 1
    assert dec["both_rules"] == 1 and dec["by_set"]["EditEval"]["instances"] == 1 and dec["by_set"]["own"]["instances"] == 0
    pairs = read_jsonl(tmp_path / "03" / "decontamination.jsonl")
    assert {p["rule"] for p in pairs} == {"code_ngram", "instruction_ngram"}
    for p in pairs:
        assert (p["id"], p["task_id"], p["set"]) == (copied["id"], task["task_id"], "EditEval")
        assert p["instruction"] == p["task_instruction"] == task["instruction"]
        assert p["overlap"] >= p["threshold"]
    rules, listed = filtering.decontamination_tables(report, pairs)
    either = rules[(rules["set"] == "EditEval") & (rules["rule"] == "either rule")].iloc[0]
    assert either["matched"] == 1 and either["percent of checked"] == round(100 / dec["checked"], 2)
    assert len(listed) == 2 and set(listed.columns) >= {"instruction", "task_instruction", "overlap"}
    kept = [r["instruction"] for split in ("train", "validation", "test")
            for r in read_jsonl(tmp_path / "03" / "export" / f"{split}.jsonl")]
    assert task["instruction"] not in kept and len(kept) == report["output"]


def test_table1_beside_the_papers(tmp_path):
    records = [filtering.instructcoder_record(r, f"r{i}", "published", "published") for i, r in enumerate(HAND_ROWS)]
    lengths = stats.describe(records, tmp_path / "t", tmp_path / "f", dpi=40)["tables"]["lengths"]
    table = stats.paper_table1(lengths, instances=len(records), read=len(records) + 1).set_index("measure")
    assert table.loc["instances read", "this run"] == len(records) + 1
    assert table.loc["instances after filtering"].tolist() == [len(records), stats.PAPER_INSTANCES]
    means = lengths.set_index("field")["mean"]
    for field, paper in stats.PAPER_TABLE1.items():
        row = table.filter(like=f"mean {field}", axis=0).iloc[0]
        assert (row["this run"], row["paper"]) == (means[field], paper)


@pytest.mark.slow
def test_smoke_stages_01_to_03_on_the_release(tmp_path, repo_root, editeval_path, smollm_dir):
    """The notebooks of stages 01-03 with papermill on the fixture: the funnel reads exactly its rows, and
    stage 03 sets Table 1 beside the paper's and lists the EditEval copy it removed."""
    folder = write_fixture(tmp_path / "release", synth=30, editeval=editeval_path)
    rows = sum(len(json.loads((folder / f).read_text())) for f in ("train.json", "valid.json"))
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "instructcoder_utils.cli", "run", "--profile", "smoke", "--out", str(out),
         "--only", "seeds", "generation", "filtering", "--set", "generation.method=published",
         "--set", f"generation.published.path={folder}", "--set", "seeds.source=published",
         "--set", "seeds.repos=[]", "--set", "generation.include_seeds=false"],
        capture_output=True, text=True, cwd=repo_root, timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert read_json(out / "01_seeds" / "stats.json")["published"]["rows"] == len(SEED_ROWS)
    counts = read_json(out / "02_generation" / "counts.json")
    assert counts["per_source"] == {"published": rows} and counts["published"]["rows"] == rows
    report = read_json(out / "03_filtering" / "filter_report.json")
    assert report["input"] == rows and report["decontamination"]["by_set"]["EditEval"]["instances"] == 1
    tables = out / "03_filtering" / "tables"
    assert f"{stats.PAPER_INSTANCES}" in (tables / "paper_table1.csv").read_text()
    assert read_jsonl(editeval_path)[EDITEVAL_TASK]["task_id"] in (tables / "decontamination_pairs.csv").read_text()
