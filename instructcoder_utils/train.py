"""Stage 04: instruction tuning (SFT) of the base model on the filtered edit dataset: a LoRA adapter (the
paper, ``method: lora``) or every weight of the top layers (``method: full``).

A plain training loop (nanoGPT-style) rather than ``transformers.Trainer``, so every step is visible:

1. each example is rendered with the edit prompt template, tokenized once (cached under the stage dir),
   and given labels built *explicitly*: -100 on the prompt, the response tokens, then EOS. The tokenizer's
   pad id equals its EOS id (``<|im_end|>``), so labels are never derived by masking pad ids (that would
   also mask the EOS the model must learn to emit). Over-long examples are counted and dropped, never cut.
2. batches group examples of similar length (dynamic padding, no packing across examples);
3. the loss of an optimizer step is the sum of response-token losses over the whole effective batch
   (all micro-batches, all processes) divided by its number of response tokens - not a mean of means;
4. logits are computed only at positions that predict a response token (the vocabulary projection is
   a fifth of SmolLM2's compute);
5. checkpoints (adapter or trained weights, optimizer, scheduler, RNG, data position) every
   ``save_every_steps``; a re-run resumes from the last one and ends with the same weights as an
   uninterrupted run.

``accelerate.Accelerator`` places the model and data and synchronizes gradients, so the same code runs
on one CPU, one GPU or several GPUs::

    python -m instructcoder_utils.train --profile tiny
    accelerate launch --config_file params/accelerate/multi_gpu.yaml -m instructcoder_utils.train --profile paper

Under several processes each takes every n-th batch and the effective batch is
``batch_size x gradient_accumulation_steps x processes``. Tested here: one process on CPU. The DDP config
(``multi_gpu.yaml``) uses the same code path; the DeepSpeed/FSDP configs are shipped as alignment-handbook
has them and are untested on this project.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import hashlib
import inspect
import json
import math
import os
import random
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from .config import Profile, TrainingConfig, default_out_dir, load_profile, parse_set, stage_dir
from .files import read_json, record_meta, write_json
from .models import cpu_has_bf16, is_trained_dir, load_model, load_tokenizer, load_trained, save_trained
from .progress import bar as progress_bar
from .prompts import get_template, render_prompt, render_response

IGNORE = -100
TOKENIZE_VERSION = "sft-v3"  # bump when encode_example changes: invalidates the token cache
STAGE = "04_training"


class TrainingError(ValueError):
    """A training set-up that cannot work; the message is meant for the user as it is."""


# --------------------------------------------------------------------------- runs
@dataclass(frozen=True)
class RunSpec:
    """One training run: the main run or a sweep point (data fraction, LoRA rank, data mix, training seed)."""

    name: str
    data_fraction: float
    lora_r: int
    mix: str = "all"  # "behaviour" / "refactor": only that part of the training split; or REWRITTEN_MIXES
    train_seed: int | None = None  # batch order and initialization; None: the profile's seed (the data never change)


REWRITTEN_MIXES = ("one_phrasing", "one_scenario")  # main's examples as an ablation rewrites them (synth.REWRITES)


def plan_runs(tc: TrainingConfig) -> list[RunSpec]:
    """``main`` plus one run per sweep value; a sweep point equal to ``main`` is not trained twice."""
    runs = [RunSpec("main", 1.0, tc.lora_r)]
    for f in tc.sweeps.data_fractions:
        if f != 1.0:
            runs.append(RunSpec(f"frac{f:g}", float(f), tc.lora_r))
    for r in tc.sweeps.lora_ranks:
        if r != tc.lora_r:
            runs.append(RunSpec(f"r{r}", 1.0, int(r)))
    for m in tc.sweeps.data_mixes:
        runs.append(RunSpec(f"mix-{m}", 1.0, tc.lora_r, m))
    for sd in tc.sweeps.seeds:
        runs.append(RunSpec(f"seed{sd}", 1.0, tc.lora_r, train_seed=int(sd)))
    seen: set[str] = set()
    return [r for r in runs if not (r.name in seen or seen.add(r.name))]


def run_training_config(tc: TrainingConfig, spec: RunSpec) -> dict[str, Any]:
    """The resolved knobs of one run (what its config hash covers)."""
    d = tc.model_dump(mode="json")
    d.pop("sweeps")
    d.update(lora_r=spec.lora_r, data_fraction=spec.data_fraction, run=spec.name)
    if spec.mix != "all":  # only where set, so the hashes of earlier runs still hold
        d["mix"] = spec.mix
    if spec.train_seed is not None:
        d["train_seed"] = spec.train_seed
    return d


# --------------------------------------------------------------------------- precision and threads
def pick_device(want: str) -> str:
    if want != "auto":
        if want == "cuda" and not torch.cuda.is_available():
            raise TrainingError("training.device: 'cuda' requested but no CUDA device is visible; use auto or cpu")
        return want
    return "cuda" if torch.cuda.is_available() else "cpu"


def pick_precision(want: str, device: str) -> tuple[torch.dtype | None, str]:
    """(autocast dtype or None for fp32, a note for the log). Weights stay fp32 on CPU."""
    if want == "fp32":
        return None, "fp32 (profile)"
    if device == "cpu":
        if want == "fp16":
            raise TrainingError("training.dtype: fp16 is not supported on CPU; use auto, bf16 or fp32")
        if want == "bf16":
            return torch.bfloat16, "bf16 autocast (profile)" + ("" if cpu_has_bf16() else "; this CPU emulates bf16")
        if cpu_has_bf16():
            return torch.bfloat16, "bf16 autocast (CPU has avx512_bf16/amx)"
        return None, "fp32: this CPU has no native bf16 (no avx512_bf16/amx flag), so bf16 would be slower"
    if want == "fp16":
        return torch.float16, "fp16 autocast with loss scaling"
    if device == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16, "fp16 autocast (GPU lacks bf16)"
    return torch.bfloat16, "bf16 autocast"


def set_threads(threads: int | None, processes: int = 1) -> int:
    """Use every core this process may run on (shared between local processes)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    n = threads or max(1, cores // max(1, processes))
    torch.set_num_threads(n)
    return n


# --------------------------------------------------------------------------- data
def encode_example(
    tokenizer, template: str, instruction: str, input_code: str, output_code: str, max_length: int
) -> dict[str, Any]:
    """Token ids and labels of one example: prompt masked, response + EOS learned.

    Labels are built from the two token lists, never by masking pad ids (pad == EOS here). An example
    longer than ``max_length`` is flagged ``overlong`` (the caller drops it), never truncated.
    ``edit_mask`` marks the response tokens that differ from the input (see ``changed_chars``), so
    training can weigh the edit above the copied lines (``training.edit_token_weight``).
    """
    prompt = render_prompt(template, instruction, input_code, tokenizer)
    response = render_response(template, output_code, input_code)
    p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    enc = tokenizer(response, add_special_tokens=False, return_offsets_mapping=True)
    r_ids = enc["input_ids"] + [tokenizer.eos_token_id]
    changed = None
    body = output_code.rstrip("\n")
    if get_template(template).edit_format == "whole" and body and body in response:
        at = response.index(body)  # the program inside the template's fence
        changed = [False] * at + changed_chars(input_code, body) + [False] * (len(response) - at - len(body))
    edit = [int(changed is not None and any(changed[a:b])) for a, b in enc["offset_mapping"]] + [0]
    ids = p_ids + r_ids
    return {
        "input_ids": ids,
        "labels": [IGNORE] * len(p_ids) + r_ids,
        "edit_mask": [0] * len(p_ids) + edit,
        "length": len(ids),
        "n_labels": len(r_ids),
        "overlong": len(ids) > max_length,
    }


def changed_chars(input_code: str, response: str) -> list[bool]:
    """Per character of ``response`` (the edited program): is it part of the edit? Lines are aligned with the input first
    (inserted lines are all edit; replaced lines are refined character by character); where input lines
    were deleted, the first character after them is marked, since that is where the model must skip."""
    import difflib

    out = [False] * (len(response) + 1)
    a = input_code.rstrip("\n").split("\n")
    b = response.split("\n")
    starts, pos = [], 0
    for line in b:
        starts.append(pos)
        pos += len(line) + 1
    starts.append(len(response))
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag == "equal":
            continue
        if tag == "delete":
            out[min(starts[j1], len(response))] = True
            continue
        if tag == "insert":
            for k in range(starts[j1], starts[j2]):
                out[k] = True
            continue
        old, new = "\n".join(a[i1:i2]), "\n".join(b[j1:j2])
        for t2, _, _, k1, k2 in difflib.SequenceMatcher(None, old, new, autojunk=False).get_opcodes():
            if t2 == "equal":
                continue
            for k in range(k1, k2 if t2 != "delete" else k1 + 1):  # a deletion marks the char after it
                out[min(starts[j1] + k, len(response))] = True
    return out[:len(response)]


def data_hash(split) -> str:
    """Content hash of a split's records (so a re-written but identical dataset is not retrained)."""
    h = hashlib.sha256()
    for col in ("id", "instruction", "input", "output"):
        for v in split[col]:
            h.update(str(v).encode())
            h.update(b"\x1e")
    return h.hexdigest()[:16]


def tokenize_splits(dataset, tokenizer, template: str, max_length: int, cache_root: Path) -> tuple[dict, dict]:
    """Tokenize train/validation once (cached with ``datasets.save_to_disk``); drop and count over-long.

    Returns ({split: tokenized Dataset}, {split: {"examples", "kept", "dropped_overlong"}}).
    """
    import datasets

    get_template(template)  # clear error for an unknown template before any work
    out, counts = {}, {}
    for split in ("train", "validation"):
        if split not in dataset:
            raise TrainingError(f"03_filtering/dataset: split {split!r} missing; found {', '.join(dataset)}")
        ds = dataset[split]
        missing = {"id", "instruction", "input", "output"} - set(ds.column_names)
        if missing:
            raise TrainingError(f"03_filtering/dataset[{split}]: missing columns {sorted(missing)}")
        key = hashlib.sha256(
            json.dumps([TOKENIZE_VERSION, data_hash(ds), tokenizer.name_or_path, len(tokenizer), template,
                        max_length]).encode()
        ).hexdigest()[:16]
        cache = cache_root / f"{split}-{key}"
        if (cache / "state.json").is_file():
            tok = datasets.load_from_disk(str(cache))
        else:
            tok = ds.map(
                lambda r: {**encode_example(tokenizer, template, r["instruction"], r["input"], r["output"],
                                            max_length), "behaviour": is_behaviour_edit(r)},
                remove_columns=[c for c in ds.column_names if c != "id"],
                desc=f"tokenize {split}",
                keep_in_memory=True,  # never write cache files into the input stage's folder
                new_fingerprint=key,
            )
            tmp = cache.with_name(cache.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            tok.save_to_disk(str(tmp))
            shutil.rmtree(cache, ignore_errors=True)
            os.replace(tmp, cache)
            tok = datasets.load_from_disk(str(cache))
        overlong = np.asarray(tok["overlong"], dtype=bool)
        kept = tok.select(np.flatnonzero(~overlong))
        counts[split] = {"examples": len(tok), "kept": len(kept), "dropped_overlong": int(overlong.sum())}
        out[split] = kept
    return out, counts


def rewritten_split(dataset, mix: str, tokenizer, template: str, max_length: int, cache_root: Path):
    """The training split as an ablation rewrites it (``synth.REWRITES``: one phrasing per edit, one
    scenario per program family), tokenized and cached like the others; the same ids and edits."""
    from .synth import REWRITES, REWRITTEN

    def rewrite(r: dict) -> dict:
        new = REWRITES[mix](r)
        return {**(new or {k: r[k] for k in REWRITTEN}), "rewritten": new is not None}

    train = dataset["train"].map(rewrite, desc=f"rewrite: {mix}", keep_in_memory=True,
                                 new_fingerprint=f"{mix}-{data_hash(dataset['train'])}")
    kept = train.filter(lambda ok: ok, input_columns="rewritten", keep_in_memory=True)
    before = zip(dataset["train"]["instruction"], dataset["train"]["input"], strict=True)
    changed = sum(new != old for new, old in zip(zip(train["instruction"], train["input"], strict=True), before,
                                                 strict=True))
    print(f"rewrite {mix}: {changed} of {len(train)} training examples changed; {len(train) - len(kept)} failed "
          "the rewrite's checks and are left out")
    tok, _ = tokenize_splits({"train": kept.remove_columns("rewritten"), "validation": dataset["validation"]},
                             tokenizer, template, max_length, cache_root)
    return tok["train"]


def same_examples(rows, ids: list[str], name: str):
    """The rows of ``rows`` with these ids, in this order: a rewritten run trains on the main run's
    examples. One that the rewrite dropped, or that no longer fits ``max_length``, is left out, and said so."""
    where = {i: k for k, i in enumerate(rows["id"])}
    picked = [where[i] for i in ids if i in where]
    if len(picked) < len(ids):
        print(f"[{name}] {len(ids) - len(picked)} of {len(ids)} examples failed the rewrite or no longer fit "
              "max_length: left out")
    return rows.select(picked)


def is_behaviour_edit(record: dict[str, Any]) -> bool:
    """Whether an instance changes what the program does (the synthesizer's execution-verified kinds);
    refactorings and records without that mark count as behaviour-preserving."""
    try:
        meta = record_meta(record)
    except ValueError:
        meta = {}
    return bool(isinstance(meta, dict) and meta.get("behaviour_change"))


def subset_indices(n: int, seed: int, max_examples: int | None, fraction: float) -> list[int]:
    """Nested subsets: one seeded permutation; a smaller fraction takes a prefix of a larger one."""
    perm = np.random.default_rng(seed).permutation(n)
    if max_examples is not None:
        perm = perm[:max_examples]
    k = max(1, math.ceil(fraction * len(perm))) if len(perm) else 0
    return sorted(int(i) for i in perm[:k])


def epoch_batches(lengths: list[int], batch_size: int, seed: int, epoch: int, group: bool) -> list[list[int]]:
    """The batches of one epoch, a pure function of (seed, epoch) so a resumed run sees the same order.

    Length grouping: shuffle, cut into mega-batches of 64 batches, sort each by length, split into
    batches, shuffle the batches. Neighbours in a batch have similar lengths, so little padding.
    """
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths)).tolist()
    if group:
        mega = batch_size * 64
        order = [i for s in range(0, len(order), mega)
                 for i in sorted(order[s:s + mega], key=lambda j: -lengths[j])]
    batches = [order[s:s + batch_size] for s in range(0, len(order), batch_size)]
    if group:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def collate(rows: list[dict], pad_id: int, edit_weight: float = 1.0) -> dict[str, torch.Tensor]:
    """Right-pad to the longest row: ids with pad, labels with -100 (never derived from pad ids).
    With ``edit_weight`` != 1, a ``weights`` tensor gives each edited response token that weight."""
    width = max(len(r["input_ids"]) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    weights = torch.ones((len(rows), width))
    for i, r in enumerate(rows):
        n = len(r["input_ids"])
        ids[i, :n] = torch.tensor(r["input_ids"])
        labels[i, :n] = torch.tensor(r["labels"])
        mask[i, :n] = 1
        if edit_weight != 1.0 and "edit_mask" in r:
            weights[i, :n] += (edit_weight - 1.0) * torch.tensor(r["edit_mask"], dtype=torch.float)
    batch = {"input_ids": ids, "attention_mask": mask, "labels": labels}
    if edit_weight != 1.0:
        batch["weights"] = weights
    return batch


# --------------------------------------------------------------------------- loss
def _accepts_logits_to_keep(model) -> bool:
    base = model
    for attr in ("module", "base_model", "model"):  # DDP / peft wrappers
        while hasattr(base, attr) and not hasattr(base, "lm_head"):
            base = getattr(base, attr)
    return "logits_to_keep" in inspect.signature(base.forward).parameters


def token_loss_sum(model, batch: dict[str, torch.Tensor], sparse_logits: bool = True) -> tuple[torch.Tensor, float]:
    """Sum of cross-entropy over response tokens, and their count (both weighted where the batch has
    ``weights``: an edited token then counts as ``edit_token_weight`` tokens).

    The vocabulary projection runs only where the next token is a label (``logits_to_keep`` as a
    boolean mask), which saves the prompt's share of the biggest matmul.
    """
    labels = batch["labels"]
    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = labels[:, 1:] != IGNORE
    targets = labels[:, 1:][keep[:, :-1]]
    if sparse_logits:
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       logits_to_keep=keep, use_cache=False).logits
        logits = logits.reshape(-1, logits.shape[-1])
    else:
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits
        logits = logits[keep]
    if "weights" in batch:
        w = batch["weights"][:, 1:][keep[:, :-1]]
        loss = (torch.nn.functional.cross_entropy(logits.float(), targets, reduction="none") * w).sum()
        return loss, float(w.sum())
    loss = torch.nn.functional.cross_entropy(logits.float(), targets, reduction="sum")
    return loss, int(targets.numel())


@torch.no_grad()
def evaluate(model, rows, batch_size: int, device, autocast: Callable, pad_id: int, sparse: bool) -> float:
    """Mean token loss over the response tokens of ``rows`` (length-sorted batches, no dropout)."""
    if len(rows) == 0:
        return float("nan")
    was_training = model.training
    model.eval()
    order = sorted(range(len(rows)), key=lambda i: -rows[i]["length"])
    total, n = 0.0, 0
    for s in range(0, len(order), batch_size):
        batch = {k: v.to(device) for k, v in collate([rows[i] for i in order[s:s + batch_size]], pad_id).items()}
        with autocast():
            loss, k = token_loss_sum(model, batch, sparse)
        total += float(loss)
        n += k
    model.train(was_training)
    return total / max(n, 1)


def _label_weight(batch: dict[str, torch.Tensor]) -> float:
    """How many (weighted) tokens the batch's loss is a sum over."""
    learned = batch["labels"][:, 1:] != IGNORE
    if "weights" in batch:
        return float(batch["weights"][:, 1:][learned].sum())
    return int(learned.sum())


def accumulate_gradients(model, batches: list[dict], acc, autocast: Callable, sparse: bool,
                         scaler=None) -> tuple[float, int, int]:
    """Backward over the micro-batches of one optimizer step; returns (loss sum, response tokens, tokens).

    Each micro-batch's summed token loss is divided by the response-token count of the whole effective
    batch (all micro-batches, all processes), so the gradient is that of
    ``sum(token losses) / total response tokens`` - not a mean of per-batch means, which would weigh a
    token in a short batch more than one in a long batch.
    """
    world = acc.num_processes
    n_local = sum(_label_weight(b) for b in batches)
    n_global = float(n_local)
    if world > 1:
        n_global = float(acc.reduce(torch.tensor(float(n_local), device=acc.device), "sum"))
    total, n_tok = 0.0, 0
    for j, batch in enumerate(batches):
        batch = {k: v.to(acc.device) for k, v in batch.items()}
        sync = contextlib.nullcontext() if j == len(batches) - 1 else acc.no_sync(model)
        with sync:
            with autocast():
                loss_sum, _ = token_loss_sum(model, batch, sparse)
            # DDP averages gradients over processes, hence the factor world.
            scaled = loss_sum * world / max(n_global, 1.0)
            acc.backward(scaler.scale(scaled) if scaler is not None else scaled)
        total += float(loss_sum.detach())
        n_tok += int(batch["attention_mask"].sum())
    return total, n_local, n_tok


# --------------------------------------------------------------------------- checkpoints
def _rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(ckpt_root: Path, step: int, model, optimizer, scheduler, progress: dict, accelerator,
                    keep: int) -> Path:
    """checkpoints/step-NNNNNN/: adapter/ (peft's, or the trained weights), state.pt (optimizer, scheduler,
    progress), rng-<rank>.pt.

    Written to a temporary folder and renamed, so a crash mid-save leaves the previous checkpoint intact.
    """
    final = ckpt_root / f"step-{step:06d}"
    tmp = ckpt_root / f".step-{step:06d}.tmp"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    torch.save(_rng_state(), tmp / f"rng-{accelerator.process_index}.pt")
    if accelerator.is_main_process:
        save_trained(accelerator.unwrap_model(model), tmp / "adapter")
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "progress": progress},
                   tmp / "state.pt")
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        for old in sorted(ckpt_root.glob("step-*"))[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def last_checkpoint(ckpt_root: Path) -> Path | None:
    done = [p for p in sorted(ckpt_root.glob("step-*")) if (p / "state.pt").is_file()]
    return done[-1] if done else None


def load_checkpoint(path: Path, model, optimizer, scheduler, accelerator) -> dict:
    """Restore trained weights, optimizer, scheduler and this process's RNG; returns the progress dict."""
    try:
        load_trained(accelerator.unwrap_model(model), path / "adapter", merge=False)
    except ValueError as exc:
        raise TrainingError(f"checkpoint does not match the model: {exc}") from exc
    state = torch.load(path / "state.pt", map_location="cpu", weights_only=False)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    rng = path / f"rng-{accelerator.process_index}.pt"
    if rng.is_file():
        _set_rng_state(torch.load(rng, weights_only=False))
    return state["progress"]


# --------------------------------------------------------------------------- one run
def config_hash(run_cfg: dict, seed: int, data_key: str) -> str:
    blob = json.dumps({"training": run_cfg, "seed": seed, "data": data_key}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def build_model(tc: TrainingConfig, lora_r: int, device: str, autocast_dtype):
    """Base model + fresh LoRA adapter, or (``method: full``) the base model with the weights of its top
    ``train_layers`` layers trainable. Clear error when target modules do not exist in the model."""
    from peft import LoraConfig, get_peft_model

    # bf16 base weights on a GPU, except under FSDP: it flattens base and (fp32) LoRA weights together and
    # needs one dtype; its own mixed_precision setting (params/accelerate/fsdp.yaml) then computes in bf16.
    # Full fine-tuning keeps fp32 weights everywhere: a step moves a weight by ~lr (1e-4 of its size), less
    # than bf16's 8-bit mantissa resolves, so most updates would round away.
    fsdp = os.environ.get("ACCELERATE_USE_FSDP", "").lower() in ("1", "true")
    bf16 = device == "cuda" and autocast_dtype == torch.bfloat16 and not fsdp and tc.method == "lora"
    model = load_model(tc.base_model, dtype="bf16" if bf16 else "fp32", device="cpu")
    n_layers = model.config.num_hidden_layers
    layers = list(range(max(0, n_layers - tc.train_layers), n_layers)) if tc.train_layers else None
    if tc.method == "full":
        return _unfreeze_layers(model, layers or list(range(n_layers)))
    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    absent = [m for m in tc.target_modules if m not in names]
    if absent:
        linear = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)})
        raise TrainingError(
            f"training.target_modules: {absent} not found in {tc.base_model}; linear layers are: {', '.join(linear)}"
        )
    lcfg = LoraConfig(r=lora_r, lora_alpha=tc.lora_alpha, lora_dropout=tc.lora_dropout,
                      target_modules=list(tc.target_modules), layers_to_transform=layers,
                      task_type="CAUSAL_LM", bias="none")
    model = get_peft_model(model, lcfg)
    model.config.use_cache = False
    return model


def _unfreeze_layers(model, layers: list[int]):
    """Full fine-tuning: every weight of ``layers`` and the final norm trains; the embeddings (tied to the
    output projection, 28M of the 135M weights) and the layers below stay frozen, so backward stops there."""
    blocks = model.get_decoder().layers
    for p in model.parameters():
        p.requires_grad_(False)
    for i in layers:
        for p in blocks[i].parameters():
            p.requires_grad_(True)
    for p in model.get_decoder().norm.parameters():
        p.requires_grad_(True)
    model.config.use_cache = False
    return model


def make_scheduler(tc: TrainingConfig, optimizer, total_steps: int):
    from transformers import get_scheduler

    warmup = math.ceil(tc.warmup_ratio * total_steps)
    return get_scheduler(tc.lr_scheduler, optimizer, num_warmup_steps=warmup, num_training_steps=total_steps)


def _write_loss_csv(path: Path, rows: list[dict]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["step", "train_loss", "val_loss", "lr", "tokens"])
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)


def plot_loss(csv_path: Path, png_path: Path, title: str = "") -> Path:
    """Training loss (per step, light) and validation loss (markers) against optimizer steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    df = pd.read_csv(csv_path)
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    tr = df.dropna(subset=["train_loss"])
    if len(tr):
        ax.plot(tr["step"], tr["train_loss"], color="tab:blue", alpha=0.35, lw=1, label="train (per step)")
        win = max(1, len(tr) // 20)
        ax.plot(tr["step"], tr["train_loss"].rolling(win, min_periods=1).mean(), color="tab:blue", lw=2,
                label=f"train (mean of {win})")
    va = df.dropna(subset=["val_loss"])
    ax.plot(va["step"], va["val_loss"], "o-", color="tab:orange", lw=2, label="validation")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss per response token (nats)")
    ax.set_title(title or "LoRA fine-tuning loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(png_path, dpi=120)
    plt.close(fig)
    return png_path


def _micro_batches(lengths: list[int], tc: TrainingConfig, seed: int, rank: int, world: int):
    """Infinite stream of (epoch, index-in-epoch, batch); each process takes every world-th batch."""
    epoch = 0
    while True:
        batches = epoch_batches(lengths, tc.batch_size, seed, epoch, tc.group_by_length)
        per_proc = len(batches) // world
        if per_proc == 0:
            raise TrainingError(f"{len(lengths)} training examples are too few for {world} processes x batch "
                                f"{tc.batch_size}")
        for i in range(per_proc):
            yield epoch, i, batches[i * world + rank]
        epoch += 1


def steps_for(tc: TrainingConfig, n_examples: int, world: int) -> tuple[int, int]:
    """(optimizer steps, micro-batches per process per epoch)."""
    per_epoch = (math.ceil(n_examples / tc.batch_size)) // world
    if tc.max_steps is not None:
        return tc.max_steps, per_epoch
    return max(1, math.ceil(tc.epochs * per_epoch / tc.gradient_accumulation_steps)), per_epoch


def train_run(
    cfg: Profile,
    spec: RunSpec,
    tokenized: dict,
    counts: dict,
    run_dir: Path,
    data_key: str,
    *,
    accelerator=None,
    on_step: Callable[[int], None] | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Train one run into ``run_dir`` (resuming from its last checkpoint); returns its metrics.

    ``on_step(step)`` is called after each optimizer step and its checkpoint (tests use it to simulate a
    crash). A run whose adapter and metrics exist with the same config hash is not retrained.
    """
    from accelerate import Accelerator

    tc = cfg.training
    run_cfg = run_training_config(tc, spec)
    chash = config_hash(run_cfg, cfg.seed, data_key)
    metrics_path, adapter_dir = run_dir / "metrics.json", run_dir / "adapter"
    if not force and metrics_path.is_file() and is_trained_dir(adapter_dir):
        old = read_json(metrics_path)
        if old.get("config_hash") == chash:
            print(f"[{spec.name}] unchanged (config {chash}): not retrained")
            return {**old, "skipped": True}

    device = pick_device(tc.device)
    acc = accelerator or Accelerator(cpu=(device == "cpu"))
    world, rank = acc.num_processes, acc.process_index
    threads = set_threads(tc.threads, acc.num_processes if device == "cpu" else 1)
    amp_dtype, note = pick_precision(tc.dtype, device)
    if acc.is_main_process:
        print(f"[{spec.name}] device={acc.device} processes={world} threads={threads} precision: {note}")

    seed = cfg.seed if spec.train_seed is None else spec.train_seed  # order and init; the data use cfg.seed
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)
    train_rows = tokenized["train"]
    if spec.mix in ("behaviour", "refactor"):
        want = spec.mix == "behaviour"
        train_rows = train_rows.select([i for i, b in enumerate(train_rows["behaviour"]) if bool(b) == want])
    idx = subset_indices(len(train_rows), cfg.seed, tc.max_train_examples, spec.data_fraction)
    if not idx:
        raise TrainingError("no training examples left after dropping over-long ones; raise training.max_length")
    train_rows = train_rows.select(idx)
    if spec.mix in REWRITTEN_MIXES:
        train_rows = same_examples(tokenized[f"train_{spec.mix}"], train_rows["id"], spec.name)
    train_list = [dict(r) for r in train_rows]
    val_list = [dict(r) for r in tokenized["validation"].select(range(min(len(tokenized["validation"]),
                                                                          tc.max_eval_examples or 10**12)))]
    lengths = [r["length"] for r in train_list]
    total_steps, per_epoch = steps_for(tc, len(train_list), world)

    model = build_model(tc, spec.lora_r, device, amp_dtype)
    tokenizer_pad = load_tokenizer(tc.base_model).pad_token_id
    sparse = _accepts_logits_to_keep(model)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=tc.learning_rate, weight_decay=tc.weight_decay)
    model, optimizer = acc.prepare(model, optimizer)
    scheduler = make_scheduler(tc, optimizer, total_steps)  # stepped by hand once per optimizer step
    scaler = torch.amp.GradScaler("cuda", enabled=(amp_dtype == torch.float16))

    def autocast():
        if amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=acc.device.type, dtype=amp_dtype)

    ckpt_root = run_dir / "checkpoints"
    if acc.is_main_process:
        ckpt_root.mkdir(parents=True, exist_ok=True)
        if force:
            shutil.rmtree(ckpt_root, ignore_errors=True)
            ckpt_root.mkdir(parents=True)
    acc.wait_for_everyone()
    progress = {"step": 0, "tokens": 0, "response_tokens": 0, "train_seconds": 0.0, "rows": [],
                "config_hash": chash}
    last = last_checkpoint(ckpt_root)
    if last is not None:
        state_progress = torch.load(last / "state.pt", map_location="cpu", weights_only=False)["progress"]
        if state_progress.get("config_hash") == chash:
            progress = load_checkpoint(last, model, optimizer, scheduler, acc)
            if acc.is_main_process:
                print(f"[{spec.name}] resumed from {last.name} (step {progress['step']}/{total_steps})")
        elif acc.is_main_process:
            print(f"[{spec.name}] checkpoints are from another configuration: starting afresh")
            shutil.rmtree(ckpt_root, ignore_errors=True)
            ckpt_root.mkdir(parents=True)

    t_wall = time.time()
    eval_bs = tc.batch_size * 2

    def val_loss() -> float:
        loss = evaluate(model, val_list, eval_bs, acc.device, autocast, tokenizer_pad, sparse)
        return float(acc.reduce(torch.tensor(loss, device=acc.device), "mean")) if world > 1 else loss

    rows: list[dict] = progress["rows"]
    if progress["step"] == 0 and not rows:
        rows.append({"step": 0, "train_loss": "", "val_loss": round(val_loss(), 5), "lr": "", "tokens": 0})
        if acc.is_main_process:
            print(f"[{spec.name}] step 0: val_loss {rows[0]['val_loss']:.4f}")

    stream = _micro_batches(lengths, tc, seed, rank, world)
    for _ in range(progress["step"] * tc.gradient_accumulation_steps):  # data order position
        next(stream)
    model.train()
    bar = progress_bar(total=total_steps, initial=progress["step"], desc=f"train {spec.name}",
                       disable=not acc.is_main_process, dynamic_ncols=True)
    ga = tc.gradient_accumulation_steps
    while progress["step"] < total_steps:
        t0 = time.time()
        micro = [next(stream) for _ in range(ga)]
        batches = [collate([train_list[i] for i in b], tokenizer_pad, tc.edit_token_weight) for _, _, b in micro]
        step_loss, n_local, n_tok = accumulate_gradients(model, batches, acc, autocast, sparse, scaler)
        progress["tokens"] += n_tok
        if scaler.is_enabled():
            scaler.unscale_(optimizer)
        if tc.max_grad_norm is not None:
            acc.clip_grad_norm_(params, tc.max_grad_norm)
        lr = scheduler.get_last_lr()[0]
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        progress["step"] += 1
        progress["response_tokens"] += sum(int((b["labels"][:, 1:] != IGNORE).sum()) for b in batches)
        progress["train_seconds"] += time.time() - t0
        step = progress["step"]
        train_loss = step_loss / max(n_local, 1)
        row = {"step": step, "train_loss": round(train_loss, 5), "val_loss": "", "lr": f"{lr:.3e}",
               "tokens": progress["tokens"]}
        if step % tc.eval_every_steps == 0 or step == total_steps:
            row["val_loss"] = round(val_loss(), 5)
        rows.append(row)
        bar.set_postfix(loss=f"{train_loss:.3f}", val=row["val_loss"] or "-",
                        tok_s=f"{progress['tokens'] / max(progress['train_seconds'], 1e-9):.0f}", refresh=False)
        bar.update(1)
        if step % tc.save_every_steps == 0 or step == total_steps:
            save_checkpoint(ckpt_root, step, model, optimizer, scheduler, progress, acc, tc.keep_checkpoints)
            if acc.is_main_process:
                _write_loss_csv(run_dir / "loss.csv", rows)
        if on_step is not None:
            on_step(step)
    bar.close()
    wall = time.time() - t_wall
    return _finish_run(cfg, spec, run_cfg, chash, model, acc, rows, progress, counts, train_list, wall, note,
                       threads, run_dir)


def _finish_run(cfg, spec, run_cfg, chash, model, acc, rows, progress, counts, train_list, wall, note, threads,
                run_dir: Path) -> dict[str, Any]:
    """Final adapter + resolved profile, loss.csv and figure, metrics.json (written last: the done marker)."""
    acc.wait_for_everyone()
    if not acc.is_main_process:
        return {}
    adapter_dir = run_dir / "adapter"
    tmp = run_dir / ".adapter.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    unwrapped = acc.unwrap_model(model)
    save_trained(unwrapped, tmp)
    resolved = cfg.model_dump(mode="json")
    resolved["training"] = {**resolved["training"], "lora_r": spec.lora_r}
    (tmp / "profile.yaml").write_text(yaml.safe_dump({**resolved, "run": {"name": spec.name,
                                      "data_fraction": spec.data_fraction, "mix": spec.mix,
                                      "train_seed": spec.train_seed, "config_hash": chash}},
                                      sort_keys=False))
    load_tokenizer(cfg.training.base_model).save_pretrained(tmp)
    shutil.rmtree(adapter_dir, ignore_errors=True)
    os.replace(tmp, adapter_dir)
    _write_loss_csv(run_dir / "loss.csv", rows)
    what = f"LoRA r={spec.lora_r}" if cfg.training.method == "lora" else "full fine-tuning"
    plot_loss(run_dir / "loss.csv", run_dir / "loss.png", f"{spec.name}: {what}, {len(train_list)} examples")
    if cfg.training.merge_adapter:
        merged = unwrapped.merge_and_unload() if cfg.training.method == "lora" else unwrapped
        merged.save_pretrained(run_dir / "merged")
        load_tokenizer(cfg.training.base_model).save_pretrained(run_dir / "merged")
    vals = [r["val_loss"] for r in rows if r["val_loss"] != ""]
    metrics = {
        "run": spec.name, "config_hash": chash, "base_model": cfg.training.base_model,
        "prompt_template": cfg.training.prompt_template, "method": cfg.training.method, "lora_r": spec.lora_r,
        "data_fraction": spec.data_fraction, "mix": spec.mix, "train_seed": spec.train_seed, "train_examples": len(train_list),
        "train_tokens": int(sum(r["length"] for r in train_list)),
        "dropped_overlong": {k: v["dropped_overlong"] for k, v in counts.items()}, "split_counts": counts,
        "steps": progress["step"], "tokens_seen": progress["tokens"],
        "response_tokens_seen": progress["response_tokens"],
        "train_seconds": round(progress["train_seconds"], 2), "wall_seconds": round(wall, 2),
        "tokens_per_s": round(progress["tokens"] / max(progress["train_seconds"], 1e-9), 1),
        "initial_val_loss": vals[0] if vals else None, "final_val_loss": vals[-1] if vals else None,
        "final_train_loss": next((r["train_loss"] for r in reversed(rows) if r["train_loss"] != ""), None),
        "precision": note, "device": str(acc.device), "processes": acc.num_processes, "threads": threads,
        "run_config": run_cfg,
    }
    write_json(run_dir / "metrics.json", metrics)
    print(f"[{spec.name}] done: {metrics['steps']} steps, {metrics['tokens_seen']} tokens in "
          f"{metrics['train_seconds']:.0f}s ({metrics['tokens_per_s']:.0f} tok/s); val loss "
          f"{metrics['initial_val_loss']} -> {metrics['final_val_loss']}")
    return metrics


# --------------------------------------------------------------------------- toy data
def toy_edit_dataset(n_train: int = 64, n_val: int = 16, seed: int = 0, max_lines: int = 30):
    """A small DatasetDict of real edits on standard-library functions (rename a function), for tests,
    the benchmark and notebook checks when stage 03 has not run. Real code, so lengths vary naturally."""
    import ast
    import textwrap

    import datasets

    rows: list[dict] = []
    import importlib

    modules = ("textwrap", "shlex", "fnmatch", "posixpath", "difflib", "calendar", "csv", "string", "heapq",
               "statistics", "random", "bisect", "glob", "shutil", "inspect", "tokenize", "ast", "pprint",
               "base64", "email.utils", "urllib.parse", "gettext", "locale", "dis", "copy", "functools",
               "collections", "typing", "os", "tarfile", "zipfile", "argparse", "logging", "json.encoder",
               "configparser", "quopri", "subprocess", "platform", "sysconfig", "pydoc", "doctest", "pdb")
    for mod_name in modules:
        try:
            src = textwrap.dedent(inspect.getsource(importlib.import_module(mod_name)))
        except (ImportError, OSError, TypeError):
            continue
        for node in ast.walk(ast.parse(src)):  # functions and methods
            if not isinstance(node, ast.FunctionDef) or node.name.startswith("_"):
                continue
            code = textwrap.dedent(" " * node.col_offset + (ast.get_source_segment(src, node) or ""))
            if not 3 <= code.count("\n") + 1 <= max_lines:
                continue
            new = f"{node.name}_v2"
            rows.append({"id": f"{mod_name}.{node.name}.{node.lineno}.rename", "instruction": f"Rename the function "
                         f"{node.name} to {new}.", "input": code, "output": code.replace(f"def {node.name}(",
                         f"def {new}(", 1), "scenario": mod_name, "source": "toy", "meta": json.dumps({})})
    rng = random.Random(seed)
    rng.shuffle(rows)
    if len(rows) < n_train + n_val:
        rows = (rows * (1 + (n_train + n_val) // max(len(rows), 1)))[: n_train + n_val]
    return datasets.DatasetDict({
        "train": datasets.Dataset.from_list(rows[:n_train]),
        "validation": datasets.Dataset.from_list(rows[n_train:n_train + n_val]),
        "test": datasets.Dataset.from_list(rows[n_train:n_train + n_val]),
    })


# --------------------------------------------------------------------------- all runs
def load_dataset_dir(out: Path):
    import datasets

    path = out / "03_filtering" / "dataset"
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: not found (run stage 03_filtering first)")
    return datasets.load_from_disk(str(path))


def train_all(cfg: Profile, out: str | Path, dataset=None, *, force: bool = False,
              only: list[str] | None = None, accelerator=None) -> dict[str, Any]:
    """Train ``main`` and every sweep run; write ``04_training/runs.json``. Returns that index."""
    out = Path(out)
    sdir = stage_dir(out, STAGE)
    tc = cfg.training
    get_template(tc.prompt_template)
    dataset = dataset if dataset is not None else load_dataset_dir(out)
    tokenizer = load_tokenizer(tc.base_model)
    tokenized, counts = tokenize_splits(dataset, tokenizer, tc.prompt_template, tc.max_length, sdir / "cache")
    for split, c in counts.items():
        if c["dropped_overlong"]:
            print(f"{split}: dropped {c['dropped_overlong']} of {c['examples']} examples longer than "
                  f"max_length={tc.max_length} tokens (never truncated)")
    data_key = data_hash(dataset["train"]) + data_hash(dataset["validation"])
    runs = [spec for spec in plan_runs(tc) if not only or spec.name in only]
    for mix in sorted({spec.mix for spec in runs} & set(REWRITTEN_MIXES)):
        tokenized[f"train_{mix}"] = rewritten_split(dataset, mix, tokenizer, tc.prompt_template, tc.max_length,
                                                    sdir / "cache")
    if accelerator is None:
        from accelerate import Accelerator

        accelerator = Accelerator(cpu=(pick_device(tc.device) == "cpu"))
    entries = []
    for spec in runs:
        m = train_run(cfg, spec, tokenized, counts, sdir / spec.name, data_key, force=force,
                      accelerator=accelerator)
        accelerator.free_memory()  # prepare() holds each run's model and optimizer: ~0.5 GiB a sweep run
        if not m:
            continue
        entries.append({
            "name": spec.name, "adapter": f"{STAGE}/{spec.name}/adapter", "data_fraction": spec.data_fraction,
            "method": tc.method, "lora_r": spec.lora_r, "mix": spec.mix, "train_seed": spec.train_seed,
            "prompt_template": tc.prompt_template, "base_model": tc.base_model,
            "train_examples": m["train_examples"], "train_tokens": m["train_tokens"],
            "seconds": m["train_seconds"], "tokens_per_s": m["tokens_per_s"],
            "initial_val_loss": m["initial_val_loss"], "final_val_loss": m["final_val_loss"],
        })
    index = {"main": "main", "runs": entries}
    if entries:
        if only and (sdir / "runs.json").is_file():  # a partial re-run keeps the other runs listed
            names = {e["name"] for e in entries}
            kept = [e for e in read_json(sdir / "runs.json").get("runs", []) if e["name"] not in names]
            index["runs"] = sorted(kept + entries, key=lambda e: e["name"] != "main")
        write_json(sdir / "runs.json", index)
    return index


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m instructcoder_utils.train", description=__doc__.split("\n")[0])
    ap.add_argument("--profile", required=True, help="params/<name>.yaml or a path")
    ap.add_argument("--out", default=None, help="output folder (default outputs/<profile>)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="e.g. training.lora_r=8")
    ap.add_argument("--run", action="append", default=None, help="train only these runs (main, frac0.1, r8...)")
    ap.add_argument("--force", action="store_true", help="retrain even if an identical run exists")
    args = ap.parse_args(argv)
    from .config import ProfileError
    from .repro import set_seed

    try:
        cfg = load_profile(args.profile, parse_set(args.set))
        set_seed(cfg.seed)
        out = Path(args.out).resolve() if args.out else default_out_dir(cfg)
        index = train_all(cfg, out, force=args.force, only=args.run)
    except (ProfileError, TrainingError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(index, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
