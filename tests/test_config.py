"""Profiles: the shipped ones validate, and bad input gives one clear message naming file and key."""

from __future__ import annotations

import subprocess
import sys

import pytest

from instructcoder_utils.config import ProfileError, available_profiles, load_profile, parse_set


@pytest.mark.parametrize("name", ["smoke", "tiny", "small", "gpu", "gpu_large", "cpu_large", "paper", "paper_published",
                                  "cpu_published"])
def test_shipped_profiles_validate(name):
    cfg = load_profile(name)
    assert cfg.name == name
    assert len(cfg.hash()) == 16


def test_paper_profile_carries_the_papers_settings():
    cfg = load_profile("paper")
    t = cfg.training
    assert (t.lora_r, t.learning_rate, t.epochs, t.max_length) == (16, 3e-4, 3, 1024)
    assert t.batch_size * t.gradient_accumulation_steps == 128
    assert set(t.target_modules) == {"q_proj", "k_proj", "v_proj", "o_proj"}
    assert cfg.seeds.source == "bigquery" and cfg.llm.provider == "openai"
    assert cfg.generation.self_instruct.rouge_threshold == 0.7
    assert cfg.filtering.minhash.threshold == 0.75


def test_unknown_key_suggests_close_match():
    with pytest.raises(ProfileError) as e:
        load_profile("smoke", {"training": {"lora_rr": 4}})
    msg = str(e.value)
    assert "smoke.yaml" in msg and "training.lora_rr" in msg and "did you mean 'lora_r'" in msg


def test_wrong_type_and_range():
    with pytest.raises(ProfileError, match=r"training\.lora_r.*integer"):
        load_profile("smoke", {"training": {"lora_r": "many"}})
    with pytest.raises(ProfileError, match=r"training\.lora_dropout"):
        load_profile("smoke", {"training": {"lora_dropout": 1.5}})
    with pytest.raises(ProfileError, match=r"llm\.provider"):
        load_profile("smoke", {"llm": {"provider": "magic"}})


def test_missing_profile_lists_available(tmp_path):
    with pytest.raises(ProfileError, match="file not found") as e:
        load_profile("nonexistent")
    assert "smoke" in str(e.value)
    bad = tmp_path / "bad.yaml"
    bad.write_text("training: [1, 2\n")
    with pytest.raises(ProfileError, match="not valid YAML"):
        load_profile(str(bad))


def test_profile_from_path_and_overrides(tmp_path):
    p = tmp_path / "mine.yaml"
    p.write_text("seed: 7\ntraining: {lora_r: 4}\n")
    cfg = load_profile(str(p), parse_set(["training.lora_alpha=8", "evaluation.sets=[own]"]))
    assert (cfg.name, cfg.seed, cfg.training.lora_r, cfg.training.lora_alpha) == ("mine", 7, 4, 8)
    assert cfg.evaluation.sets == ["own"]
    assert set(available_profiles()) >= {"smoke", "tiny", "paper"}


def test_parse_set_rejects_malformed():
    with pytest.raises(ProfileError, match="key.path=value"):
        parse_set(["training.lora_r"])


def test_cli_bad_profile_exits_2_without_traceback(repo_root):
    r = subprocess.run(
        [sys.executable, "-m", "instructcoder_utils.cli", "run", "--profile", "smoke", "--set", "training.lora_rr=4"],
        capture_output=True, text=True, cwd=repo_root, timeout=120,
    )
    assert r.returncode == 2
    assert "did you mean 'lora_r'" in r.stderr
    assert "Traceback" not in r.stderr


def test_interpolations_lie_strictly_between_base_and_tuned():
    """0 would be the base model and 1 the main run, both scored already: only values between are taken."""
    assert load_profile("smoke", {"evaluation": {"interpolations": [0.25, 0.75]}}).evaluation.interpolations == [0.25, 0.75]
    for bad in (0, 1, 1.5):
        with pytest.raises(ProfileError, match="interpolations"):
            load_profile("smoke", {"evaluation": {"interpolations": [bad]}})


def test_published_profiles_pin_the_release_and_keep_their_models_settings():
    """paper_published trains as paper does, on the release; cpu_published samples it and scores as cpu_large."""
    paper, pub, cpu, large = (load_profile(n) for n in ("paper", "paper_published", "cpu_published", "cpu_large"))
    assert pub.training == paper.training
    assert pub.generation.method == cpu.generation.method == "published"
    assert pub.generation.published.revision == cpu.generation.published.revision is not None
    assert pub.generation.published.limit is None and cpu.generation.published.limit == 2000
    assert cpu.training.base_model == large.training.base_model
    assert (cpu.evaluation.sets, cpu.evaluation.set_limits, cpu.evaluation.base_prompts) == (
        large.evaluation.sets, large.evaluation.set_limits, large.evaluation.base_prompts)
