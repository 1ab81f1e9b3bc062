"""Benchmark: stage 05's generation of edits with the built-in model on EditEval.

Ours: continuous batching (``decoding.py``): a reply leaves the batch at its closing fence or its
bound (``min(max_new_tokens, 1.5 * input_tokens + 64)``) and the next prompt takes its slot. Baseline
in the same run: the peer way with ``model.generate`` - length-sorted static batches, each row stopped
at its fence or bound by a StoppingCriteria, the batch running until its last row is done. Both greedy,
same model, same prompt (chat_v1), same tasks, same batch size.

    .venv/bin/python benchmarks/bench_eval_generation.py [--tasks 64] [--max-new-tokens 384] [--batch 16]

Prints ``RESULT eval_generation ratio=<baseline seconds / ours> seconds=<ours> instances=N`` and, for the
whole benchmark (``--tasks 194``), the projected full-set time.

A second figure, ``eval_stream``: stage 05 writes the replies of every base prompt (and of every set
of one model) in one continuous batch (``evaluate.generate_hf`` with a plan). Baseline: one stream per
prompt, as stage 05 did before. Three prompts on the first ``--stream-tasks`` tasks; ``identical``
says whether both wrote the same replies.

A third figure, ``kv_cache``: the key/value cache keeps ``decoding.ROOM`` spare columns, so a decoding
step writes its new column in place. Baseline: ``ROOM = 0``, which copies the whole cache every step,
as transformers' ``DynamicLayer`` does with ``torch.cat``. ``--cache-tasks`` tasks at ``--cache-batch``,
each side timed twice, alternating, best of two.

A fourth figure, ``prefill``: prompts admitted to the batch together are prefilled in runs of similar
length (``decoding.length_chunks``: left-padding adds at most ``PAD_WASTE`` to a run's tokens). Baseline:
every admitted prompt padded to the longest (``PAD_WASTE = inf``), as before. Same tasks and batch as
``kv_cache``; ``padded`` is prefilled positions per real prompt token.

A fifth figure, ``packed_head``: on a CPU in fp32 the vocabulary projection runs as oneDNN's linear with
pre-packed weights (``models.pack_head``). Baseline: the model's own ``nn.Linear``. Same tasks and batch
as ``kv_cache``.

A sixth figure, ``row_moves``: when replies finish, the last running rows move into their slots, so only
the moved rows' key/value cache is copied (``decoding._Batch.keep``). Baseline: every remaining row
gathered into a new cache (``copy_all_keep``), as before. Same tasks and batch as ``kv_cache``.

A seventh figure, ``batch_size``: the same tasks decoded at ``--batch-sizes`` A B (ours: A, default 64,
`tiny`'s; baseline: B, default 32), alternating, best of two.

An eighth figure, ``dtype``: on a CPU that computes bf16 natively (AVX-512 BF16 or AMX), stage 05's
``dtype: auto`` generates in bf16. Baseline: the same model in fp32. The same tasks at the first of
``--batch-sizes``, alternating, best of two; replies differ (bf16 rounds differently), so ``identical``
is expected false and ``same_replies`` counts the equal ones. Where auto means fp32 there is nothing to
compare and the figure says so (as ``packed_head`` does where the head is not packed).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from instructcoder_utils import evaluate as E  # noqa: E402
from instructcoder_utils.prompts import extract_code, reply_end  # noqa: E402
from instructcoder_utils.tasks import editeval_file, load_editeval  # noqa: E402


def ours(gen: E.HFGenerator, tasks: list[dict], dec: E.Decoding, batch: int) -> tuple[float, int, list[str]]:
    t0 = time.perf_counter()
    replies, counts, _ = gen.generate([gen.prompt(t) for t in tasks], [dec.bound(gen.input_tokens(t)) for t in tasks],
                                      dec, batch_size=batch)
    return time.perf_counter() - t0, sum(counts), replies


def fence_stop(gen: E.HFGenerator, prompt_len: int, limits: list[int]):
    """Per-row stop at the closing fence or the row's bound (the static-batch peer's StoppingCriteria)."""
    import torch
    from transformers import StoppingCriteria

    class FenceStop(StoppingCriteria):
        def __init__(self) -> None:
            self.done = torch.zeros(len(limits), dtype=torch.bool)

        def __call__(self, input_ids, scores, **kwargs):
            for i in range(input_ids.shape[0]):
                text = gen.tok.decode(input_ids[i, prompt_len:], skip_special_tokens=False)
                if reply_end(gen.spec.template, text) is not None or input_ids.shape[1] - prompt_len >= limits[i]:
                    self.done[i] = True
            return self.done.clone()

    return FenceStop()


def baseline(gen: E.HFGenerator, tasks: list[dict], dec: E.Decoding, batch: int) -> tuple[float, int]:
    import torch

    items = sorted(tasks, key=lambda t: -len(gen.tok(gen.prompt(t)).input_ids))
    t0, toks = time.perf_counter(), 0
    for i in range(0, len(items), batch):
        b = items[i: i + batch]
        limits = [dec.bound(gen.input_tokens(t)) for t in b]
        enc = gen.tok([gen.prompt(t) for t in b], return_tensors="pt", padding=True, add_special_tokens=False)
        plen = enc.input_ids.shape[1]
        with torch.inference_mode():
            out = gen.model.generate(**enc, max_new_tokens=max(limits), do_sample=False,
                                     stopping_criteria=[fence_stop(gen, plen, limits)],
                                     pad_token_id=gen.tok.pad_token_id)
        toks += int((out[:, plen:] != gen.tok.pad_token_id).sum())
    return time.perf_counter() - t0, toks


def streams(gen: E.HFGenerator, tasks: list[dict], dec: E.Decoding, batch: int) -> None:
    """One stream for three prompts' replies against one stream per prompt (fresh stores each)."""
    import tempfile

    specs = [E.ModelSpec(f"bench-{t}", gen.spec.base_model, t) for t in ("chat_v1", "chat_system_v1", "alpaca_v1")]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        E.generate_hf(gen, [(s, "bench", tasks) for s in specs], dec,
                      {s.label: E.store_for(root / "one", s) for s in specs}, batch, False)
        one = time.perf_counter() - t0
        t0 = time.perf_counter()
        for s in specs:
            E.generate_hf(gen, [(s, "bench", tasks)], dec, {s.label: E.store_for(root / "apart", s)}, batch, False)
        apart = time.perf_counter() - t0

        def replies(kind: str) -> dict:
            return {r["key"]: r["reply"] for s in specs for r in E.store_for(root / kind, s).rows.values()}

        same = replies("one") == replies("apart")
    print(f"RESULT eval_stream ratio={apart / one:.2f} seconds={one:.2f} baseline_seconds={apart:.2f} "
          f"instances={3 * len(tasks)} identical={str(same).lower()}")


Run = Callable[[], tuple[float, int, list[str]]]  # ``ours`` bound to its side: (seconds, new tokens, replies)


def best_of_two(runs: dict[str, Run]) -> tuple[dict[str, float], dict[str, list[str]]]:
    """Each side's run twice, alternating the sides (the machine drifts): the best seconds of each and
    its replies from the last round."""
    times, replies = {side: [] for side in runs}, {}
    for _ in range(2):
        for side, run in runs.items():
            secs, _, replies[side] = run()
            times[side].append(secs)
    return {side: min(t) for side, t in times.items()}, replies


def against(name: str, sides: dict[str, Callable[[], None]], gen: E.HFGenerator, tasks: list[dict],
            dec: E.Decoding, batch: int) -> None:
    """Time ``ours`` after ``sides["ours"]()`` and after ``sides["baseline"]()`` (each sets the decoder up
    one way), alternating, best of two; ``padded`` counts the prefilled positions per real prompt token."""
    from instructcoder_utils import decoding

    prefill = decoding._prefill
    positions: dict[str, list[int]] = {}

    def counting(side: str):
        def run(model, prompts, *args, **kwargs):
            pos = positions.setdefault(side, [0, 0])
            pos[0] += len(prompts) * max(len(p) for p in prompts)
            pos[1] += sum(len(p) for p in prompts)
            return prefill(model, prompts, *args, **kwargs)
        return run

    def run(side: str) -> Run:
        def go() -> tuple[float, int, list[str]]:
            sides[side]()
            decoding._prefill = counting(side)
            return ours(gen, tasks, dec, batch)
        return go

    try:
        times, replies = best_of_two({"ours": run("ours"), "baseline": run("baseline")})
    finally:
        sides["ours"]()
        decoding._prefill = prefill
    a, b = times["ours"], times["baseline"]
    pad = {side: pos[0] / pos[1] for side, pos in positions.items()}
    print(f"RESULT {name} ratio={b / a:.2f} seconds={a:.2f} baseline_seconds={b:.2f} instances={len(tasks)} "
          f"batch={batch} identical={str(replies['ours'] == replies['baseline']).lower()} "
          f"padded={pad['ours']:.2f} baseline_padded={pad['baseline']:.2f}")


def knob(name: str, baseline_value: float) -> dict[str, Callable[[], None]]:
    """Sides that set ``decoding.<name>`` as shipped and to ``baseline_value``."""
    from instructcoder_utils import decoding

    shipped = getattr(decoding, name)
    return {"ours": lambda: setattr(decoding, name, shipped), "baseline": lambda: setattr(decoding, name, baseline_value)}


def head(gen: E.HFGenerator) -> dict[str, Callable[[], None]] | None:
    """Sides with the packed vocabulary projection ``HFGenerator`` installed and with a plain ``nn.Linear``
    holding the same weights; None where the projection is not packed (GPU, bf16, no oneDNN)."""
    import torch

    packed = gen.model.get_output_embeddings()
    if isinstance(packed, torch.nn.Linear):
        return None
    weight = packed.weight.to_dense()
    dense = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=False)
    dense.weight = torch.nn.Parameter(weight, requires_grad=False)
    return {"ours": lambda: gen.model.set_output_embeddings(packed),
            "baseline": lambda: gen.model.set_output_embeddings(dense)}


def copy_all_keep(self, rows: list[int]) -> None:
    """The baseline ``_Batch.keep``: gather the remaining rows' whole cache into new tensors."""
    import torch

    start = self.take(rows)
    idx = torch.tensor(rows, dtype=torch.long)
    for layer in self.cache.layers:
        a = layer.start + start
        layer._set(layer.kbuf[idx, :, a:], layer.vbuf[idx, :, a:], 0, layer.end - a)


def moves() -> dict[str, Callable[[], None]]:
    """Sides with the shipped ``_Batch.keep`` (rows moved into freed slots) and with ``copy_all_keep``."""
    from instructcoder_utils import decoding

    shipped = decoding._Batch.keep
    return {"ours": lambda: setattr(decoding._Batch, "keep", shipped),
            "baseline": lambda: setattr(decoding._Batch, "keep", copy_all_keep)}


def batch_sizes(gen: E.HFGenerator, tasks: list[dict], dec: E.Decoding, mine: int, other: int) -> None:
    """Decode ``tasks`` at batch ``mine`` and at ``other``, alternating, best of two."""
    times, replies = best_of_two({"ours": lambda: ours(gen, tasks, dec, mine),
                                  "baseline": lambda: ours(gen, tasks, dec, other)})
    a, b = times["ours"], times["baseline"]
    print(f"RESULT batch_size ratio={b / a:.2f} seconds={a:.2f} baseline_seconds={b:.2f} instances={len(tasks)} "
          f"batch={mine} baseline_batch={other} identical={str(replies['ours'] == replies['baseline']).lower()}")


def dtypes(gen: E.HFGenerator, tasks: list[dict], dec: E.Decoding, batch: int) -> None:
    """Decode ``tasks`` with ``gen`` (dtype auto) and with the same model in fp32, alternating, best of two."""
    if gen.dtype == "fp32":
        print("dtype: auto is fp32 on this machine (no native bf16); nothing to compare")
        return
    fp32 = E.HFGenerator(gen.spec, "fp32")
    times, replies = best_of_two({"ours": lambda: ours(gen, tasks, dec, batch),
                                  "baseline": lambda: ours(fp32, tasks, dec, batch)})
    a, b = times["ours"], times["baseline"]
    same = sum(x == y for x, y in zip(replies["ours"], replies["baseline"], strict=True))
    print(f"RESULT dtype ratio={b / a:.2f} seconds={a:.2f} baseline_seconds={b:.2f} instances={len(tasks)} "
          f"batch={batch} dtype={gen.dtype} baseline_dtype=fp32 identical={str(same == len(tasks)).lower()} "
          f"same_replies={same}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--editeval", default=None,
                    help="a copy of edit_eval.jsonl (default: the cache, ../shared or the pinned download)")
    ap.add_argument("--tasks", type=int, default=64)
    ap.add_argument("--max-new-tokens", type=int, default=384)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--stream-tasks", type=int, default=32, help="tasks per prompt in the eval_stream figure (0: skip)")
    ap.add_argument("--cache-tasks", type=int, default=64, help="tasks in the kv_cache, prefill, packed_head, row_moves and batch_size figures (0: skip)")
    ap.add_argument("--cache-batch", type=int, default=32, help="batch size of the kv_cache, prefill, packed_head and row_moves figures (stage 05's)")
    ap.add_argument("--batch-sizes", type=int, nargs=2, default=[64, 32], metavar=("OURS", "BASELINE"),
                    help="the batch_size figure: tiny's batch against another (same tasks as kv_cache)")
    ap.add_argument("--only", choices=["eval_generation", "eval_stream", "kv_cache", "prefill", "packed_head", "row_moves",
                                       "batch_size", "dtype"], nargs="*",
                    help="figures to measure (default: all)")
    args = ap.parse_args()
    editeval = load_editeval(editeval_file(path=args.editeval))
    tasks = editeval[: args.tasks]
    spec = E.ModelSpec("bench", "builtin:smollm2-135m-instruct", "chat_v1")
    gen = E.HFGenerator(spec, "auto", args.threads)
    dec = E.Decoding(max_new_tokens=args.max_new_tokens)
    want = set(args.only or ["eval_generation", "eval_stream", "kv_cache", "prefill", "packed_head", "row_moves",
                             "batch_size", "dtype"])
    if "eval_generation" in want:
        secs, toks, replies = ours(gen, tasks, dec, args.batch)
        base_secs, base_toks = baseline(gen, tasks, dec, args.batch)
        empty = sum(not extract_code(r).strip() for r in replies)
        print(f"ours: {secs:.1f} s, {toks} new tokens; baseline: {base_secs:.1f} s, {base_toks} tokens incl. padding; "
              f"empty extractions (ours): {empty}; dtype={gen.dtype}")
        print(f"RESULT eval_generation ratio={base_secs / secs:.2f} seconds={secs:.2f} "
              f"baseline_seconds={base_secs:.2f} instances={len(tasks)} new_tokens={toks} "
              f"baseline_new_tokens={base_toks} projected_194_seconds={secs * 194 / len(tasks):.0f}")
    if args.stream_tasks and "eval_stream" in want:
        streams(gen, tasks[: args.stream_tasks], dec, args.batch)
    cache_tasks = editeval[: args.cache_tasks]
    if args.cache_tasks and "kv_cache" in want:
        against("kv_cache", knob("ROOM", 0), gen, cache_tasks, dec, args.cache_batch)
    if args.cache_tasks and "prefill" in want:
        against("prefill", knob("PAD_WASTE", float("inf")), gen, cache_tasks, dec, args.cache_batch)
    if args.cache_tasks and "packed_head" in want:
        sides = head(gen)
        if sides is None:
            print(f"packed_head: the projection is not packed here ({gen.dtype} on {gen.device}); nothing to compare")
        else:
            against("packed_head", sides, gen, cache_tasks, dec, args.cache_batch)
    if args.cache_tasks and "row_moves" in want:
        against("row_moves", moves(), gen, cache_tasks, dec, args.cache_batch)
    if args.cache_tasks and "batch_size" in want:
        batch_sizes(gen, cache_tasks, dec, *args.batch_sizes)
    if args.cache_tasks and "dtype" in want:
        dtypes(gen, cache_tasks, dec, args.batch_sizes[0])


if __name__ == "__main__":
    main()
