"""Training throughput: our loop vs a plain fp32 ``transformers.Trainer`` on the same data and model.

Ours: length-grouped batches with dynamic padding, logits only at response positions, bf16 autocast
where the CPU has native bf16 (else fp32), threads = cores. Baseline: what a naive set-up does -
Trainer, every example padded to max_length, random batches, fp32, full logits. Both train the same
model the profile trains (its LoRA adapter, or with ``method: full`` every weight of its top layers) for a few
steps; the first step of each is a warm-up and not timed. Tokens are real (non-pad) tokens, counted the same
way for both.

    .venv/bin/python benchmarks/bench_train.py [--profile tiny] [--steps 4] [--batch 4]

Data: ``outputs/<profile>/03_filtering/dataset`` when stage 03 has run, else standard-library edits.
Prints ``RESULT train_tokens_per_s ratio=<ours/baseline> value=<ours tok/s> unit=tok/s seconds=...``, then
``RESULT train_lora_dropout``: our loop with LoRA on the profile's layers, at the profile's LoRA dropout
against the paper's 0.05 (on a CPU every adapted layer draws a Bernoulli mask per step, which is slow), and
``RESULT train_full_vs_lora``: every weight of the profile's trained layers against LoRA on the same layers
(each pair alternates over two rounds, so a drift in the machine's speed hits both sides alike).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from instructcoder_utils import train as T  # noqa: E402
from instructcoder_utils.config import default_out_dir, load_profile  # noqa: E402
from instructcoder_utils.models import load_tokenizer  # noqa: E402


def load_rows(cfg, tok, n: int) -> tuple[list[dict], str]:
    """Tokenized training rows (prompt masked, EOS learned) that fit max_length."""
    path = default_out_dir(cfg) / "03_filtering" / "dataset"
    if path.is_dir():
        import datasets

        ds, where = datasets.load_from_disk(str(path))["train"], f"{cfg.name} stage-03 dataset"
    else:
        ds, where = T.toy_edit_dataset(n_train=4 * n, n_val=1, seed=0)["train"], "standard-library edits"
    tc = cfg.training
    rows = []
    for r in ds:
        ex = T.encode_example(tok, tc.prompt_template, r["instruction"], r["input"], r["output"], tc.max_length)
        if not ex["overlong"]:
            rows.append(ex)
        if len(rows) == n:
            break
    return rows, where


def bench_ours(cfg, rows, tok, steps: int, batch: int) -> tuple[float, int]:
    """(timed seconds, timed tokens) of our loop for ``steps`` optimizer steps after one warm-up step."""
    from accelerate import Accelerator

    tc = cfg.training
    device = "cpu"
    T.set_threads(tc.threads)
    amp, note = T.pick_precision(tc.dtype, device)
    print(f"ours: precision {note}, threads {torch.get_num_threads()}", flush=True)
    model = T.build_model(tc, tc.lora_r, device, amp)
    acc = Accelerator(cpu=True)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=tc.learning_rate)
    model, opt = acc.prepare(model, opt)
    model.train()

    def autocast():
        return torch.autocast("cpu", dtype=amp) if amp is not None else contextlib.nullcontext()

    order = T.epoch_batches([r["length"] for r in rows], batch, seed=0, epoch=0, group=True)
    seconds, tokens = 0.0, 0
    for i, b in enumerate(order[: steps + 1]):
        t0 = time.perf_counter()
        _, _, n_tok = T.accumulate_gradients(model, [T.collate([rows[j] for j in b], tok.pad_token_id)], acc,
                                             autocast, True)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i > 0:
            seconds += time.perf_counter() - t0
            tokens += n_tok
    return seconds, tokens


PAPER_DROPOUT = 0.05  # the paper's LoRA dropout (params/paper.yaml)


def with_training(cfg, **changes):
    """The profile with some training knobs changed."""
    return cfg.model_copy(update={"training": cfg.training.model_copy(update=changes)})


def bench_pair(a, b, rows, tok, steps: int, batch: int) -> tuple[float, float]:
    """(tok/s of profile ``a``, of ``b``), in the order a, b, b, a so that drift hits both alike."""
    got = {"a": [0.0, 0], "b": [0.0, 0]}
    for name in ("a", "b", "b", "a"):
        s, n = bench_ours(a if name == "a" else b, rows, tok, steps, batch)
        got[name][0] += s
        got[name][1] += n
    return got["a"][1] / got["a"][0], got["b"][1] / got["b"][0]


def bench_trainer(cfg, rows, tok, steps: int, batch: int) -> tuple[float, int]:
    """The naive baseline: HF Trainer, padding to max_length, random batches, fp32."""
    import datasets
    from transformers import Trainer, TrainerCallback, TrainingArguments

    tc = cfg.training
    T.set_threads(tc.threads)
    L = tc.max_length
    pad = tok.pad_token_id
    padded = [{"input_ids": r["input_ids"] + [pad] * (L - r["length"]),
               "attention_mask": [1] * r["length"] + [0] * (L - r["length"]),
               "labels": r["labels"] + [T.IGNORE] * (L - r["length"])} for r in rows]
    ds = datasets.Dataset.from_list(padded)
    seen: list[int] = []

    def collator(feats):
        out = {k: torch.tensor([f[k] for f in feats]) for k in ("input_ids", "attention_mask", "labels")}
        seen.append(int(out["attention_mask"].sum()))
        return out

    times: list[float] = []

    class Clock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            self.t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            times.append(time.perf_counter() - self.t0)

    model = T.build_model(tc, tc.lora_r, "cpu", None)
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp, per_device_train_batch_size=batch, max_steps=steps + 1, learning_rate=tc.learning_rate,
            logging_steps=10**6, save_strategy="no", report_to=[], use_cpu=True,
            dataloader_num_workers=0, remove_unused_columns=False, disable_tqdm=True, seed=0,
        )
        Trainer(model=model, args=args, train_dataset=ds, data_collator=collator, callbacks=[Clock()]).train()
    return sum(times[1:]), sum(seen[1: steps + 1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--profile", default="tiny")
    ap.add_argument("--steps", type=int, default=4, help="timed steps for each loop (plus one warm-up)")
    ap.add_argument("--batch", type=int, default=4)
    args = ap.parse_args()
    t_all = time.perf_counter()
    cfg = load_profile(args.profile)
    tok = load_tokenizer(cfg.training.base_model)
    rows, where = load_rows(cfg, tok, (args.steps + 1) * args.batch)
    mean_len = sum(r["length"] for r in rows) / len(rows)
    print(f"data: {len(rows)} examples from {where}, mean {mean_len:.0f} tokens, max_length "
          f"{cfg.training.max_length}", flush=True)
    s_ours, n_ours = bench_ours(cfg, rows, tok, args.steps, args.batch)
    ours = n_ours / s_ours
    print(f"ours:    {n_ours} tokens in {s_ours:.1f}s = {ours:.1f} tok/s", flush=True)
    s_base, n_base = bench_trainer(cfg, rows, tok, args.steps, args.batch)
    base = n_base / s_base
    print(f"Trainer: {n_base} tokens in {s_base:.1f}s = {base:.1f} tok/s (fp32, padded to max_length)", flush=True)
    print(f"RESULT train_tokens_per_s ratio={ours / base:.2f} value={ours:.1f} unit=tok/s "
          f"baseline={base:.1f} instances={len(rows)} steps={args.steps} batch={args.batch} "
          f"seconds={time.perf_counter() - t_all:.1f}")
    t_drop = time.perf_counter()
    lora = with_training(cfg, method="lora")
    with_ours, with_paper = bench_pair(lora, with_training(lora, lora_dropout=PAPER_DROPOUT), rows, tok,
                                       args.steps, args.batch)
    print(f"RESULT train_lora_dropout ratio={with_ours / with_paper:.2f} value={with_ours:.1f} unit=tok/s "
          f"baseline={with_paper:.1f} dropout={cfg.training.lora_dropout} baseline_dropout={PAPER_DROPOUT} "
          f"instances={len(rows)} steps={args.steps} batch={args.batch} seconds={time.perf_counter() - t_drop:.1f}")
    t_full = time.perf_counter()
    full, lora_tps = bench_pair(with_training(cfg, method="full"), lora, rows, tok, args.steps, args.batch)
    print(f"RESULT train_full_vs_lora ratio={full / lora_tps:.2f} value={full:.1f} unit=tok/s "
          f"baseline={lora_tps:.1f} train_layers={cfg.training.train_layers or 'all'} instances={len(rows)} "
          f"steps={args.steps} batch={args.batch} seconds={time.perf_counter() - t_full:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
