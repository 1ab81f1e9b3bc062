"""GPU check of stage 04: the unchanged training loop (``train.train_all``) on CUDA, timed against the same
machine's CPU, and started through ``accelerate launch`` with the project's configs.

What it shows: ``pick_device("auto")`` picks cuda, ``pick_precision("auto", "cuda")`` picks bf16, the
LoRA loop trains (validation loss goes down) and checkpoints/saves on a GPU, and how many tokens/s that
is against the CPU of the same machine. The model is SmolLM2-135M's shape (config and tokenizer read
from a folder, default ``.gpucheck/smollm2-135m-shape``: config.json + tokenizer files, no weights)
with random weights, built where it runs (the GPU machine cannot download anything). Data: the
standard-library rename edits of ``train.toy_edit_dataset``.

    python3 benchmarks/gpu_train_check.py --steps 60 --batch 16 --cpu-steps 3 --launchers multi_gpu,fsdp \\
        --launch-steps 10 --timeout 120 --log-dir "$OUT"

On the lent GPU machine, which lacks ``datasets``, ``pydantic`` and their needs, the command starts by installing
the wheels carried in ``.whl/`` (datasets, pydantic, pydantic-core (cp312), annotated-types, typing-inspection,
dill, multiprocess, typing-extensions, all at the venv's versions) with ``pip install --no-index --no-deps
--target /tmp/site .whl/*.whl`` and ``PYTHONPATH=/tmp/site``; ``.whl`` and ``.gpucheck`` are git-excluded and
travel with ``carry``. Other probes: ``--model DIR --batch 128 --steps 20 --cpu-steps 0`` (batch scaling),
``--steps 0 --cpu-steps 0 --launchers fsdp --dtype fp32`` (FSDP needs fp32 base weights: with bf16 weights and
peft's fp32 adapters it fails to flatten mixed dtypes). CPU-only smoke:
``--layers 2 --steps 2 --batch 2 --n-train 8 --n-val 2 --n-eval 2 --cpu-steps 1 --max-lines 8``.
Each run is its own process (accelerate keeps one state per process). Prints one ``RUN <json>`` line per
run and ``RESULT gpu_train ratio=<gpu tok/s / cpu tok/s> value=<gpu tok/s> unit=tok/s``; writes
``results.json`` under ``--log-dir``. Internal modes: ``--make-model DIR`` and ``--train OUT``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
SHAPE = REPO / ".gpucheck" / "smollm2-135m-shape"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json",
                   "generation_config.json")


def make_model(shape: Path, target: Path, layers: int | None, seed: int = 0) -> None:
    """A randomly initialised causal LM with ``shape``'s config (optionally fewer layers) + its tokenizer."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(shape)
    if layers:
        config.num_hidden_layers = layers
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    target.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(target, safe_serialization=True)
    for name in TOKENIZER_FILES:
        if (shape / name).is_file():
            shutil.copy(shape / name, target / name)
    n = sum(p.numel() for p in model.parameters())
    print(f"model: {config.model_type}, {config.num_hidden_layers} layers, {n / 1e6:.1f}M parameters, random "
          f"weights -> {target}", flush=True)


def train(args: argparse.Namespace) -> dict:
    """One ``train_all`` run (``main`` only) with a small profile; returns its metrics."""
    import torch

    from instructcoder_utils import train as T
    from instructcoder_utils.config import load_profile
    from instructcoder_utils.repro import set_seed

    training = {
        "base_model": str(args.model), "lora_r": args.lora_r, "lora_alpha": 2 * args.lora_r, "lora_dropout": 0.05,
        "batch_size": args.batch, "max_steps": args.steps, "max_length": args.max_length,
        "max_train_examples": None, "max_eval_examples": args.n_eval, "eval_every_steps": args.eval_every,
        "save_every_steps": args.steps, "learning_rate": args.lr, "warmup_ratio": 0.1, "lr_scheduler": "cosine",
        "device": args.device, "dtype": args.dtype,
        "sweeps": {"data_fractions": [], "lora_ranks": [], "data_mixes": []},
    }
    cfg = load_profile("smoke", {"training": training})
    set_seed(cfg.seed)
    data = T.toy_edit_dataset(n_train=args.n_train, n_val=args.n_val, seed=0, max_lines=args.max_lines)
    device = T.pick_device(cfg.training.device)
    _, note = T.pick_precision(cfg.training.dtype, device)
    name = torch.cuda.get_device_name(0) if device == "cuda" else "cpu"
    print(f"pick_device({cfg.training.device!r}) = {device} ({name}); pick_precision = {note}", flush=True)
    t0 = time.time()
    index = T.train_all(cfg, args.train, data, force=True, only=["main"])
    m = json.loads((Path(args.train) / "04_training" / "main" / "metrics.json").read_text()) if index["runs"] else {}
    if not m:  # a non-main process of a multi-process launch returns nothing
        return {}
    out = {k: m[k] for k in ("device", "precision", "processes", "threads", "steps", "tokens_seen",
                             "train_seconds", "wall_seconds", "tokens_per_s", "initial_val_loss", "final_val_loss",
                             "final_train_loss", "train_examples")}
    out.update(device_name=name, total_seconds=round(time.time() - t0, 1), torch=torch.__version__,
               adapter_saved=(Path(args.train) / "04_training" / "main" / "adapter" / "adapter_model.safetensors")
               .is_file())
    if device == "cuda":
        out["max_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return out


def decode(args: argparse.Namespace) -> dict:
    """Stage 05's continuous batching on the device: greedy replies vs ``model.generate`` one prompt at a
    time (they must be identical), and its tokens/s vs the same prompts through static ``generate`` batches."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from instructcoder_utils import train as T
    from instructcoder_utils.decoding import continuous_generate

    device = "cuda" if torch.cuda.is_available() and args.device != "cpu" else "cpu"
    tok = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32).to(device).eval()
    rows = T.toy_edit_dataset(n_train=args.decode, n_val=1, seed=3, max_lines=12)["train"]
    ids = [tok(r["instruction"] + "\n" + r["input"], add_special_tokens=False).input_ids for r in rows]
    limits = [8 + (7 * i) % 40 for i in range(len(ids))]
    t0 = time.time()
    got = {r.index: r.ids for r in continuous_generate(model, ids, limits, eos_id=tok.eos_token_id,
                                                       batch_size=args.batch, device=device)}
    ours = time.time() - t0
    same = 0
    for i, p in enumerate(ids[:16]):
        with torch.inference_mode():
            out = model.generate(torch.tensor([p], device=device), max_new_tokens=limits[i], do_sample=False,
                                 pad_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id)
        ref = out[0, len(p):].tolist()
        same += ref[:len(got[i])] == got[i]
    tok.padding_side = "left"
    t0 = time.time()
    for s in range(0, len(ids), args.batch):
        chunk = [tok.decode(p) for p in ids[s:s + args.batch]]
        enc = tok(chunk, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
        with torch.inference_mode():
            model.generate(**enc, max_new_tokens=max(limits[s:s + args.batch]), do_sample=False,
                           pad_token_id=tok.eos_token_id)
    static = time.time() - t0
    r = {"run": "decode", "device": device, "prompts": len(ids), "identical_of_16": same, "continuous_s": round(ours, 2),
         "static_generate_s": round(static, 2), "new_tokens": sum(len(v) for v in got.values())}
    print("RUN " + json.dumps(r), flush=True)
    print(f"RESULT gpu_decode ratio={static / ours:.2f} seconds={ours:.2f} instances={len(ids)} "
          f"identical={'true' if same == min(16, len(ids)) else 'false'} device={device}", flush=True)
    return r


def child(args: argparse.Namespace, label: str, extra: list[str], launcher: list[str] | None, work: Path,
          timeout: float) -> dict:
    """Run one training in a fresh process; returns its metrics (or the error) tagged with ``label``."""
    out = work / label
    result = out / "result.json"
    cmd = [*(launcher or [sys.executable]), str(Path(__file__).resolve()), "--train", str(out),
           "--result", str(result), "--model", str(args.model), *extra]
    print(f"\n=== {label}: {' '.join(cmd)}", flush=True)
    t0 = time.time()
    try:
        rc = subprocess.run(cmd, timeout=timeout).returncode
    except subprocess.TimeoutExpired:
        rc = "timeout"
    r = json.loads(result.read_text()) if result.is_file() else {}
    r.update(run=label, rc=rc, seconds=round(time.time() - t0, 1))
    print("RUN " + json.dumps(r), flush=True)
    return r


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", type=Path, default=SHAPE, help="folder with config.json and tokenizer files")
    ap.add_argument("--layers", type=int, default=None, help="fewer layers than the shape (CPU smoke)")
    ap.add_argument("--model", type=Path, default=None, help="an existing model folder (skips building one)")
    ap.add_argument("--steps", type=int, default=60, help="optimizer steps of the GPU run (0 = none)")
    ap.add_argument("--cpu-steps", type=int, default=4, help="steps of the CPU run (0 = none)")
    ap.add_argument("--launch-steps", type=int, default=10, help="steps of each accelerate-launch run")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lora-r", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--n-train", type=int, default=960)
    ap.add_argument("--n-val", type=int, default=64)
    ap.add_argument("--n-eval", type=int, default=64, help="validation examples scored (CPU run: a quarter)")
    ap.add_argument("--eval-every", type=int, default=20)
    ap.add_argument("--max-lines", type=int, default=30)
    ap.add_argument("--max-length", type=int, default=1024)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--launchers", default="", help="comma list of params/accelerate/<name>.yaml to launch with")
    ap.add_argument("--timeout", type=float, default=240, help="seconds per child run")
    ap.add_argument("--log-dir", type=Path, default=None)
    ap.add_argument("--decode", type=int, default=0, help="also check continuous-batching decoding on N prompts")
    ap.add_argument("--make-model", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--train", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--result", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.make_model:
        make_model(args.shape, args.make_model, args.layers)
        return 0
    if args.train:
        r = train(args)
        if r and args.result:
            args.result.write_text(json.dumps(r))
        return 0

    work = Path(tempfile.mkdtemp(prefix="gpu_train_check."))
    if args.model is None:
        args.model = work / "model"
        subprocess.run([sys.executable, str(Path(__file__).resolve()), "--make-model", str(args.model),
                        "--shape", str(args.shape), *(["--layers", str(args.layers)] if args.layers else [])],
                       check=True)
    common = ["--batch", str(args.batch), "--lora-r", str(args.lora_r), "--lr", str(args.lr),
              "--n-train", str(args.n_train), "--n-val", str(args.n_val), "--max-lines", str(args.max_lines),
              "--max-length", str(args.max_length), "--dtype", args.dtype]
    runs, gpu, cpu = [], {}, {}
    if args.steps:
        gpu = child(args, "gpu", [*common, "--device", args.device, "--steps", str(args.steps), "--n-eval",
                                  str(args.n_eval), "--eval-every", str(args.eval_every)], None, work, args.timeout)
        runs.append(gpu)
    if args.cpu_steps:
        cpu = child(args, "cpu", [*common, "--device", "cpu", "--steps", str(args.cpu_steps), "--n-eval",
                                  str(max(1, args.n_eval // 4)), "--eval-every", str(args.cpu_steps)],
                    None, work, args.timeout)
        runs.append(cpu)
    for name in filter(None, args.launchers.split(",")):
        launcher = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                    str(REPO / "params" / "accelerate" / f"{name}.yaml"), "--num_processes", "1"]
        runs.append(child(args, f"launch-{name}", [*common, "--device", args.device, "--steps",
                                                    str(args.launch_steps), "--n-eval", str(args.n_eval),
                                                    "--eval-every", str(args.launch_steps)],
                          launcher, work, args.timeout))
    if args.decode:
        runs.append(decode(args))
    if gpu.get("tokens_per_s") and cpu.get("tokens_per_s"):
        print(f"RESULT gpu_train ratio={gpu['tokens_per_s'] / cpu['tokens_per_s']:.1f} "
              f"value={gpu['tokens_per_s']:.0f} unit=tok/s device={gpu['device_name'].replace(' ', '_')} "
              f"precision={gpu['precision'].split()[0].rstrip(':')} cpu_tok_s={cpu['tokens_per_s']:.0f} "
              f"cpu_precision={cpu['precision'].split()[0].rstrip(':')}")
    if args.log_dir:
        args.log_dir.mkdir(parents=True, exist_ok=True)
        (args.log_dir / "results.json").write_text(json.dumps(runs, indent=2))
        png = work / "gpu" / "04_training" / "main" / "loss.png"
        if png.is_file():
            shutil.copy(png, args.log_dir / "gpu_loss.png")
    shutil.rmtree(work, ignore_errors=True)
    return 0 if all(r.get("rc") == 0 and r.get("steps") for r in runs if r["run"] != "decode") else 1


if __name__ == "__main__":
    sys.exit(main())
