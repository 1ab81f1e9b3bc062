"""Near-duplicate removal (MinHash LSH over input code) and decontamination against evaluation sets.

MinHash: each input is normalized (comments dropped, lowercased, split into identifier / number /
symbol tokens), cut into shingles of ``shingle_size`` consecutive tokens, and summarized by
``num_perm`` minimum hash values. Two sets agree on a given minimum with probability equal to their
Jaccard similarity, so the fraction of equal values estimates it. Hashing is vectorized with numpy
over all shingles of a chunk of documents (multiply-shift universal hashing, one random odd
multiplier per permutation) instead of a Python call per shingle and per document; the LSH banding
uses the (bands, rows) that ``datasketch.MinHashLSH`` chooses for the threshold (its optimal
parameters minimize the false positive + false negative mass), and each candidate is then verified
by its estimated Jaccard. Documents are visited in order and the first of each cluster is kept.

Decontamination: the fraction of an instance's code n-grams (normalized tokens) that occur in one
evaluation task's input or output, and the same for instruction word n-grams; an instance at or
above the threshold is removed and listed with the task it matched.
"""

from __future__ import annotations

import hashlib
import io
import re
import tokenize
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .progress import bar as progress_bar

_CODE_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\d+(?:\.\d+)?|==|!=|<=|>=|->|\*\*|//|[^\sA-Za-z0-9_]")
_COMMENT = re.compile(r"#[^\n]*")
_WORD = re.compile(r"[a-z0-9]+")
_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


# --------------------------------------------------------------------------- normalization
def strip_comments(code: str) -> str:
    """Drop Python comments (with the tokenizer when the code tokenizes, else a line regex)."""
    try:
        toks = [t for t in tokenize.generate_tokens(io.StringIO(code).readline) if t.type != tokenize.COMMENT]
        return tokenize.untokenize(toks)
    except (tokenize.TokenError, IndentationError, SyntaxError, ValueError):
        return _COMMENT.sub("", code)


def code_tokens(code: str, drop_comments: bool = False) -> list[str]:
    """Normalized code tokens: lowercased identifiers, numbers and symbols; whitespace ignored."""
    if drop_comments:
        code = strip_comments(code)
    else:
        code = _COMMENT.sub("", code)
    return _CODE_TOKEN.findall(code.lower())


def word_tokens(text: str) -> list[str]:
    return _WORD.findall(text.lower())


# --------------------------------------------------------------------------- MinHash
def lsh_params(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows) as ``datasketch.MinHashLSH`` picks them for this threshold and num_perm."""
    from datasketch import MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    return lsh.b, lsh.r


class MinHasher:
    """Vectorized MinHash signatures (uint32, ``num_perm`` per document), deterministic per seed."""

    def __init__(self, num_perm: int = 128, shingle_size: int = 5, seed: int = 1) -> None:
        rng = np.random.default_rng(seed)
        self.num_perm = num_perm
        self.shingle_size = shingle_size
        self._a = rng.integers(1, 2**63, size=num_perm, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
        self._b = rng.integers(0, 2**63, size=num_perm, dtype=np.uint64)
        self._mix = rng.integers(1, 2**63, size=max(shingle_size, 1), dtype=np.uint64) * np.uint64(2) + np.uint64(1)
        self._cache: dict[str, int] = {}

    def _values(self, tokens: list[str]) -> np.ndarray:
        """A stable odd 64-bit value per token (blake2b, so every process and run agrees)."""
        cache = self._cache
        for t in tokens:
            if t not in cache:
                cache[t] = int.from_bytes(hashlib.blake2b(t.encode(), digest_size=8).digest(), "little") | 1
        return np.fromiter((cache[t] for t in tokens), dtype=np.uint64, count=len(tokens))

    def _shingles(self, vals: np.ndarray) -> np.ndarray:
        """64-bit hashes of every window of ``shingle_size`` token values (the whole doc if shorter)."""
        k = self.shingle_size
        n = len(vals)
        if n == 0:
            return np.zeros(1, dtype=np.uint64)
        if n < k:
            k = n
        out = np.zeros(n - k + 1, dtype=np.uint64)
        for j in range(k):
            out ^= vals[j : n - k + 1 + j] * self._mix[j]
        return out

    def signatures(self, docs: Sequence[list[str]], chunk: int = 512, progress: bool = False) -> np.ndarray:
        """Signature matrix [len(docs), num_perm] (uint32) from token lists."""
        sig = np.empty((len(docs), self.num_perm), dtype=np.uint32)
        starts = range(0, len(docs), chunk)
        if progress:
            starts = progress_bar(starts, desc="MinHash", unit="chunk")
        for s in starts:
            sh = [self._shingles(self._values(d)) for d in docs[s : s + chunk]]
            offsets = np.cumsum([0] + [len(x) for x in sh[:-1]])
            allsh = np.concatenate(sh)
            # multiply-shift hashing: the top 32 bits of a*x + b (mod 2^64) for each permutation;
            # the shift is monotone, so it is applied after the minimum (on the small result)
            hv = np.multiply(allsh[:, None], self._a[None, :])
            hv += self._b[None, :]
            low = np.minimum.reduceat(hv, offsets, axis=0)
            sig[s : s + len(sh)] = (low >> np.uint64(32)).astype(np.uint32)
        return sig


@dataclass
class DedupResult:
    keep: list[bool]
    cluster_of: list[int]  # index of the kept representative each document belongs to
    clusters: dict[int, list[int]] = field(default_factory=dict)  # representative -> members (incl. itself)
    bands: int = 0
    rows: int = 0

    def cluster_sizes(self) -> Counter:
        """How many clusters have each size (size 1 = no near-duplicate)."""
        return Counter(len(v) for v in self.clusters.values())


def minhash_dedup(
    codes: Sequence[str],
    threshold: float = 0.75,
    num_perm: int = 128,
    shingle_size: int = 5,
    seed: int = 1,
    workers: int = 1,
    progress: bool = False,
) -> DedupResult:
    """Keep the first document of each near-duplicate cluster (estimated Jaccard >= threshold)."""
    sig = code_signatures(codes, num_perm, shingle_size, seed, workers=workers, progress=progress)
    return dedup_signatures(sig, threshold)


def _signature_chunk(args: tuple) -> np.ndarray:
    codes, num_perm, shingle_size, seed = args
    return MinHasher(num_perm, shingle_size, seed).signatures([code_tokens(c) for c in codes], chunk=128)


def code_signatures(
    codes: Sequence[str], num_perm: int = 128, shingle_size: int = 5, seed: int = 1, workers: int = 1,
    progress: bool = False,
) -> np.ndarray:
    """Tokenize and MinHash every code string; ``workers`` > 1 splits the work over processes."""
    step = 2000
    jobs = [(list(codes[i : i + step]), num_perm, shingle_size, seed) for i in range(0, len(codes), step)]
    if not jobs:
        return np.empty((0, num_perm), dtype=np.uint32)
    bar = None
    if progress:
        bar = progress_bar(total=len(codes), desc="MinHash", unit="doc")
    out = []
    if workers > 1 and len(jobs) > 1:
        import multiprocessing as mp

        with mp.get_context("fork").Pool(workers) as pool:
            for part in pool.imap(_signature_chunk, jobs):
                out.append(part)
                if bar:
                    bar.update(len(part))
    else:
        for job in jobs:
            out.append(_signature_chunk(job))
            if bar:
                bar.update(len(job[0]))
    if bar:
        bar.close()
    return np.concatenate(out)


def dedup_signatures(sig: np.ndarray, threshold: float) -> DedupResult:
    """Greedy clustering in document order over LSH band collisions (candidates must be kept documents),
    each verified by its estimated Jaccard (the fraction of equal signature values)."""
    n, num_perm = sig.shape
    b, r = lsh_params(threshold, num_perm)
    rng = np.random.default_rng(12345)
    mult = rng.integers(1, 2**63, size=r, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    keys = np.empty((n, b), dtype=np.uint64)
    for band in range(b):
        block = sig[:, band * r : (band + 1) * r].astype(np.uint64)
        keys[:, band] = (block * mult[None, :]).sum(axis=1) ^ np.uint64(band)
    # Per band, group equal keys (vectorized). A document sharing no band key with an earlier one
    # has no candidate at all and is kept without any Python work; only the others are visited.
    groups, members = [], []
    collided = np.zeros(n, dtype=bool)
    for band in range(b):
        _, inv, counts = np.unique(keys[:, band], return_inverse=True, return_counts=True)
        multi = counts[inv] > 1
        docs = np.flatnonzero(multi)
        docs = docs[np.lexsort((docs, inv[docs]))]
        cuts = np.flatnonzero(np.diff(inv[docs])) + 1
        lists = {int(inv[g[0]]): g.tolist() for g in np.split(docs, cuts) if len(g)}
        for g in lists.values():
            collided[g[1:]] = True
        groups.append(inv)
        members.append(lists)
    keep = [True] * n
    cluster_of = list(range(n))
    for i in np.flatnonzero(collided).tolist():
        cands: set[int] = set()
        for band in range(b):
            for m in members[band].get(int(groups[band][i]), ()):
                if m >= i:
                    break
                if keep[m]:
                    cands.add(m)
        if not cands:
            continue
        cl = np.fromiter(cands, dtype=np.int64, count=len(cands))
        jac = (sig[cl] == sig[i]).mean(axis=1)
        j = int(np.argmax(jac))
        if jac[j] >= threshold:
            keep[i] = False
            cluster_of[i] = int(cl[j])
    clusters: dict[int, list[int]] = {}
    for i in range(n):
        clusters.setdefault(cluster_of[i], []).append(i)
    return DedupResult(keep, cluster_of, clusters, b, r)


# --------------------------------------------------------------------------- decontamination
def ngrams(tokens: Sequence[str], n: int) -> set[tuple[str, ...]]:
    """Set of n-grams; a sequence shorter than n (but not empty) is one gram of itself."""
    if not tokens:
        return set()
    if len(tokens) < n:
        return {tuple(tokens)}
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


class Decontaminator:
    """n-gram index of evaluation tasks; ``match`` says which task an instance overlaps most."""

    def __init__(self, code_n: int = 10, instruction_n: int = 6) -> None:
        self.code_n = code_n
        self.instruction_n = instruction_n
        self._code: dict[tuple, set[str]] = defaultdict(set)
        self._instr: dict[tuple, set[str]] = defaultdict(set)
        self.tasks = 0

    def add_task(self, task_id: str, instruction: str, code_parts: Iterable[str]) -> None:
        self.tasks += 1
        for part in code_parts:
            for g in ngrams(code_tokens(part or ""), self.code_n):
                self._code[g].add(task_id)
        for g in ngrams(word_tokens(instruction or ""), self.instruction_n):
            self._instr[g].add(task_id)

    @staticmethod
    def _best(grams: set[tuple], index: dict[tuple, set[str]]) -> tuple[float, str | None]:
        if not grams:
            return 0.0, None
        hits: Counter = Counter()
        for g in grams:
            for t in index.get(g, ()):
                hits[t] += 1
        if not hits:
            return 0.0, None
        task, c = hits.most_common(1)[0]
        return c / len(grams), task

    def match(self, instruction: str, codes: Iterable[str]) -> dict[str, Any]:
        """Overlap fractions: {'code': (fraction, task), 'instruction': (fraction, task)}."""
        best_code = (0.0, None)
        for c in codes:
            toks = code_tokens(c or "")
            if len(toks) < self.code_n:  # too short to say anything about contamination
                continue
            best_code = max(best_code, self._best(ngrams(toks, self.code_n), self._code), key=lambda x: x[0])
        words = word_tokens(instruction or "")
        instr = self._best(ngrams(words, self.instruction_n), self._instr) if len(words) >= self.instruction_n else (0.0, None)
        return {"code": best_code, "instruction": instr}


def load_eval_tasks(path, prefix: str) -> list[dict[str, Any]]:
    """EditEval-format tasks with a ``task_id`` (``<prefix>/<line>`` when the file has none)."""
    from .files import read_jsonl

    tasks = read_jsonl(path)
    for i, t in enumerate(tasks):
        t.setdefault("task_id", f"{prefix}/{i}")
        for key in ("instruction", "input"):
            if key not in t:
                raise ValueError(f"{path}: line {i + 1}: missing key {key!r} (EditEval format needs instruction, input, output, test)")
    return tasks
