"""Continuous batching for a local causal LM: many replies, one batch that never waits for its slowest row.

``model.generate`` runs a batch until its longest reply ends, so one rambling reply (a small base model
often writes to its token bound) holds the whole batch: on a CPU most steps then compute rows that are
already done. Here a finished row leaves the batch at once and a waiting prompt takes its place: the
new prompts are prefilled together and their key/value cache is joined to the running one (left-padded
to the same length and masked), so every step decodes a full batch of live rows. Greedy replies are the
ones ``generate`` writes for the same prompts (up to float rounding across batch shapes).

The key/value cache keeps spare columns (``_RoomyLayer``): transformers' ``DynamicLayer`` appends a
decoding step's one new column with ``torch.cat``, which copies the whole cache every step. On a 2-core
CPU a step at batch 32 over a 300-token cache took ~10 % less without that copy; on stage 05's real
prompts, where rows also leave and join (one copy each), the gain is smaller
(``benchmarks/bench_eval_generation.py``, figure ``kv_cache``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
from transformers.cache_utils import DynamicLayer


@dataclass
class Reply:
    index: int  # position of the prompt in the caller's list
    ids: list[int] = field(default_factory=list)
    reason: str = "length"  # "eos", "length", or the caller's stop rule: "stop" or the reason it gave


PAD_WASTE = 0.15  # a prefill chunk's left-padding may add at most 15 % to its real prompt tokens
ROOM = 64  # spare cache columns: a reply's next 64 tokens are written in place before the cache is regrown


class _RoomyLayer(DynamicLayer):
    """One layer's keys and values as views ``[:, :, start:end]`` of buffers with spare columns after
    ``end``: a step writes its new column in place, and only a full buffer is copied (into one with
    ``ROOM`` spare columns again). Selecting rows and joining batches copy once, straight into a new buffer.
    ``keys``/``values`` are always the live views, so ``DynamicLayer``'s length and mask sizes hold as they are."""

    def __init__(self) -> None:
        super().__init__()
        self.kbuf = self.vbuf = None
        self.start = self.end = 0

    def _set(self, kbuf: torch.Tensor, vbuf: torch.Tensor, start: int, end: int) -> None:
        self.kbuf, self.vbuf, self.start, self.end = kbuf, vbuf, start, end
        self.keys, self.values = kbuf[:, :, start:end], vbuf[:, :, start:end]

    def _regrow(self, extra: int) -> None:
        b, h, n, d = self.keys.shape
        kbuf, vbuf = self.keys.new_empty(b, h, n + ROOM + extra, d), self.values.new_empty(b, h, n + ROOM + extra, d)
        kbuf[:, :, :n], vbuf[:, :, :n] = self.keys, self.values
        self._set(kbuf, vbuf, 0, n)

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        new = key_states.shape[-2]
        if self.kbuf is None:
            self.device, self.is_initialized = key_states.device, True
            self._set(key_states, value_states, 0, new)
            self._regrow(0)
            return self.keys, self.values
        if self.end + new > self.kbuf.shape[-2]:
            self._regrow(new)
        self.kbuf[:, :, self.end:self.end + new] = key_states
        self.vbuf[:, :, self.end:self.end + new] = value_states
        self._set(self.kbuf, self.vbuf, self.start, self.end + new)
        return self.keys, self.values

    def select(self, holes: list[int], movers: list[int], rows: int, drop: int = 0) -> None:
        """Keep the first ``rows`` rows, after copying rows ``movers`` into the freed rows ``holes``, and their
        live columns from the ``drop``-th on. Only the moved rows are copied; the rest are views."""
        a = self.start + drop
        if holes:
            self.kbuf[holes, :, a:self.end] = self.kbuf[movers, :, a:self.end]
            self.vbuf[holes, :, a:self.end] = self.vbuf[movers, :, a:self.end]
        self._set(self.kbuf[:rows], self.vbuf[:rows], a, self.end)

    def join(self, other: _RoomyLayer) -> None:
        """Append ``other``'s rows; the shorter cache is left-padded with zeros (its mask hides them)."""
        a, b = self.end - self.start, other.end - other.start
        n = max(a, b)
        rows, (_, h, _, d) = len(self.keys) + len(other.keys), self.keys.shape
        kbuf, vbuf = self.keys.new_zeros(rows, h, n + ROOM, d), self.values.new_zeros(rows, h, n + ROOM, d)
        kbuf[:len(self.keys), :, n - a:n], vbuf[:len(self.keys), :, n - a:n] = self.keys, self.values
        kbuf[len(self.keys):, :, n - b:n], vbuf[len(self.keys):, :, n - b:n] = other.keys, other.values
        self._set(kbuf, vbuf, 0, n)


def _roomy_cache():
    """A transformers ``DynamicCache`` whose layers are ``_RoomyLayer``s."""
    from transformers import DynamicCache

    cache = DynamicCache()
    cache.layer_class_to_replicate = _RoomyLayer
    return cache


def _pad_left(t: torch.Tensor, n: int, dim: int) -> torch.Tensor:
    if n <= 0:
        return t
    shape = list(t.shape)
    shape[dim] = n
    return torch.cat([t.new_zeros(shape), t], dim=dim)


class _Batch:
    """The running rows: their cache, attention mask, next positions and last tokens."""

    def __init__(self) -> None:
        self.cache = None
        self.mask = None  # (rows, cache length) 1 = real token
        self.pos = None  # (rows,) position of each row's next token
        self.last = None  # (rows,) the token each row feeds next
        self.replies: list[Reply] = []
        self.limits: list[int] = []

    def __len__(self) -> int:
        return len(self.replies)

    def join(self, other: _Batch) -> None:
        """Append ``other``'s rows; the shorter cache is left-padded with masked zeros."""
        if self.cache is None or not len(self):
            self.__dict__.update(other.__dict__)
            return
        a, b = self.mask.shape[1], other.mask.shape[1]
        for mine, theirs in zip(self.cache.layers, other.cache.layers, strict=True):
            mine.join(theirs)
        self.mask = torch.cat([_pad_left(self.mask, b - a, 1), _pad_left(other.mask, a - b, 1)])
        self.pos = torch.cat([self.pos, other.pos])
        self.last = torch.cat([self.last, other.last])
        self.replies += other.replies
        self.limits += other.limits

    def keep(self, rows: list[int]) -> None:
        """Keep the rows ``rows`` (ascending), then drop the cache columns no remaining row attends to.

        The last live rows move into the freed slots, so a finished reply costs a copy of the moved rows'
        cache, not of the whole cache (which every finished reply used to cost: ~7 % of stage 05's time at
        batch 32, and growing with the square of the batch)."""
        n, live = len(rows), set(rows)
        holes = [i for i in range(n) if i not in live]
        movers = [i for i in rows if i >= n]  # as many as holes
        order = list(range(n))
        for hole, mover in zip(holes, movers, strict=True):
            order[hole] = mover
        start = self.take(order)
        for layer in self.cache.layers:
            layer.select(holes, movers, n, start)

    def take(self, order: list[int]) -> int:
        """Set the rows' state (not their cache) to the rows ``order``, then drop the mask's leading columns
        that no row attends to; returns how many were dropped, for the cache to drop too."""
        idx = torch.tensor(order, dtype=torch.long)
        self.mask, self.pos, self.last = self.mask[idx], self.pos[idx], self.last[idx]
        self.replies = [self.replies[i] for i in order]
        self.limits = [self.limits[i] for i in order]
        used = self.mask.any(0).nonzero()
        start = int(used[0]) if len(used) else self.mask.shape[1]
        self.mask = self.mask[:, start:]
        return start


def _cache_kw(model) -> str:
    """The forward argument that takes the key/value cache: ``cache`` in newer transformers,
    ``past_key_values`` before (where an unknown ``cache=`` would be silently ignored)."""
    import inspect

    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _next_tokens(logits: torch.Tensor, temperature: float, top_p: float, gen: torch.Generator | None) -> torch.Tensor:
    if temperature <= 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / temperature, -1)
    sorted_p, order = probs.sort(-1, descending=True)
    cut = sorted_p.cumsum(-1) - sorted_p > top_p  # keep the smallest set whose mass reaches top_p
    sorted_p = sorted_p.masked_fill(cut, 0.0)
    pick = torch.multinomial(sorted_p, 1, generator=gen).squeeze(-1)
    return order.gather(-1, pick[:, None]).squeeze(-1)


def continuous_generate(
    model,
    prompts: Sequence[list[int]],
    limits: Sequence[int],
    *,
    eos_id: int,
    batch_size: int = 32,
    is_done: Callable[[int, list[int]], bool | str | None] | None = None,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int = 0,
    device: str = "cpu",
) -> Iterator[Reply]:
    """Yield one ``Reply`` per prompt (token ids), in the order they finish.

    ``limits[i]`` bounds the new tokens of prompt ``i``; ``is_done(i, ids)`` is the caller's stop rule
    (say, the closing fence of a code block), checked after every token: truthy ends the reply, and a
    string names the reason (``"stop"`` otherwise). New prompts are admitted when
    a quarter of the batch is free (or it is empty), longest first, so prefill work is batched too (in
    runs of similar length: ``length_chunks``).
    """
    waiting = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    cache_kw = _cache_kw(model)  # once, not per step
    gen = torch.Generator().manual_seed(seed) if temperature > 0 else None

    def pick(logits: torch.Tensor) -> torch.Tensor:
        return _next_tokens(logits, temperature, top_p, gen)

    run = _Batch()
    refill = max(1, batch_size // 4)
    with torch.inference_mode():
        while waiting or len(run):
            free = batch_size - len(run)
            if waiting and (free >= refill or not len(run)):
                take, waiting = waiting[:free], waiting[free:]
                first = len(run)
                for part in length_chunks([len(prompts[i]) for i in take]):
                    sub = [take[j] for j in part]
                    run.join(_prefill(model, [prompts[i] for i in sub], sub, [limits[i] for i in sub], device, pick,
                                      cache_kw))
                fresh = range(first, len(run))  # only the new rows got a token this round
            else:
                step_mask = torch.cat([run.mask, run.mask.new_ones(len(run), 1)], 1)
                out = model(input_ids=run.last[:, None], attention_mask=step_mask, position_ids=run.pos[:, None],
                            **{cache_kw: run.cache}, use_cache=True)
                run.mask, run.pos = step_mask, run.pos + 1
                run.last = pick(out.logits[:, -1])
                fresh = range(len(run))
            tokens = run.last.tolist()
            done = [row for row in fresh if _settle(run.replies[row], tokens[row], run.limits[row], eos_id, is_done)]
            for row in done:
                yield run.replies[row]
            if done:
                finished = set(done)
                live = [row for row in range(len(run)) if row not in finished]
                if live:
                    run.keep(live)
                else:
                    run = _Batch()


def length_chunks(lengths: Sequence[int], waste: float | None = None) -> list[range]:
    """Split prompts sorted longest first into consecutive runs, each prefilled as one left-padded batch,
    such that a run's padding adds at most ``waste`` (default ``PAD_WASTE``) to its real tokens.

    Padding every admitted prompt to the longest one is costly: 32 EditEval prompts taken longest first
    still span 2-3x in length, and prefilling them together computed ~1.8 positions per real token."""
    waste = PAD_WASTE if waste is None else waste
    runs, start, real = [], 0, 0
    for i, n in enumerate(lengths):
        if i > start and lengths[start] * (i + 1 - start) > (1 + waste) * (real + n):
            runs.append(range(start, i))
            start, real = i, 0
        real += n
    if lengths:
        runs.append(range(start, len(lengths)))
    return runs


def _settle(reply: Reply, token: int, limit: int, eos_id: int,
            is_done: Callable[[int, list[int]], bool | str | None] | None) -> bool:
    """Record a row's new token; True when its reply is complete (and why, in ``reply.reason``)."""
    if token == eos_id:
        reply.reason = "eos"
        return True
    reply.ids.append(token)
    why = is_done(reply.index, reply.ids) if is_done is not None else None
    if why:
        reply.reason = why if isinstance(why, str) else "stop"
        return True
    if len(reply.ids) >= limit:
        reply.reason = "length"
        return True
    return False


def _prefill(model, prompts: list[list[int]], indices: list[int], limits: list[int], device: str,
             pick: Callable[[torch.Tensor], torch.Tensor], cache_kw: str) -> _Batch:
    """Run new prompts (left-padded together) through the model; their first reply token is picked."""
    width = max(len(p) for p in prompts)
    ids = torch.zeros(len(prompts), width, dtype=torch.long)
    mask = torch.zeros(len(prompts), width, dtype=torch.long)
    for r, p in enumerate(prompts):
        ids[r, width - len(p):] = torch.tensor(p)
        mask[r, width - len(p):] = 1
    ids, mask = ids.to(device), mask.to(device)
    pos = (mask.cumsum(1) - 1).clamp(min=0)
    cache = _roomy_cache()
    out = model(input_ids=ids, attention_mask=mask, position_ids=pos, **{cache_kw: cache}, use_cache=True,
                logits_to_keep=1)
    b = _Batch()
    b.cache, b.mask, b.pos = cache, mask, mask.sum(1)
    b.last = pick(out.logits[:, -1])
    b.replies = [Reply(i) for i in indices]
    b.limits = list(limits)
    return b
