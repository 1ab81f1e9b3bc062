"""The self-instruct novelty rule, fast: drop a text whose ROUGE-L F against any kept text exceeds
a threshold, with exactly the decisions of looping the ``rouge-score`` package.

Why not just loop ``rouge-score``: it re-tokenizes both texts and fills a pure-Python O(m*n) table
for every pair, and the pool grows with every kept text, so 10,000 instructions mean tens of
millions of tables. Here each text is tokenized once (with ``rouge-score``'s own tokenizer, so the
tokens are identical), tokens become integer ids, and for each new text:

1. an inverted index (token id -> kept texts holding it, with counts) gives, for every kept text at
   once, the multiset overlap of tokens, an upper bound on the LCS length; with the lengths this
   bounds F = 2*LCS/(m+n) from above, and every kept text whose bound cannot exceed the threshold
   is skipped without computing anything (texts sharing no token are never even touched);
2. the LCS with the survivors is computed bit-parallel (Allison-Dix / Hyyro), vectorized with numpy
   over all survivors at once: the survivor is the 64-bit word and the new text's tokens are the
   steps, with the per-token position masks stored in the index (longer survivors fall back to
   Python big integers, same algorithm);
3. F is computed with ``rouge-score``'s own float formula, so ties at the threshold go the same way.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

from .progress import bar as progress_bar

_WORD = 64
_VECTOR_MIN = 24  # fewer candidates than this: plain bit-parallel loop, no masks to gather
_MARGIN = 1e-9  # pruning only skips pairs whose F is below threshold by more than float noise


def make_tokenizer(use_stemmer: bool = False):
    """``rouge-score``'s DefaultTokenizer (lowercase, non-alphanumerics to spaces, optional Porter)."""
    from rouge_score import tokenizers

    return tokenizers.DefaultTokenizer(use_stemmer=use_stemmer)


def rouge_fmeasure(lcs: int, n_target: int, n_prediction: int) -> float:
    """F exactly as ``rouge_score.rouge_scorer._score_lcs`` + ``scoring.fmeasure`` compute it."""
    if not n_target or not n_prediction:
        return 0.0
    precision = lcs / n_prediction
    recall = lcs / n_target
    if precision + recall > 0:
        return 2 * precision * recall / (precision + recall)
    return 0.0


def lcs_length(a: Sequence, b: Sequence) -> int:
    """LCS length, bit-parallel over ``a`` with Python integers (any lengths, any hashable tokens)."""
    if not a or not b:
        return 0
    masks: dict = {}
    for i, tok in enumerate(a):
        masks[tok] = masks.get(tok, 0) | (1 << i)
    full = (1 << len(a)) - 1
    v = full
    for tok in b:
        u = v & masks.get(tok, 0)
        v = ((v + u) | (v - u)) & full
    return len(a) - v.bit_count()


def rouge_l(target: str, prediction: str, use_stemmer: bool = False) -> float:
    """ROUGE-L F of two texts (same value as ``RougeScorer(['rougeL']).score(target, prediction)``)."""
    tok = make_tokenizer(use_stemmer)
    t, p = tok.tokenize(target), tok.tokenize(prediction)
    return rouge_fmeasure(lcs_length(t, p), len(t), len(p))


class _Posting:
    """Growable arrays for one token id: kept-text index, count in it, bit mask of its positions."""

    __slots__ = ("idx", "cnt", "mask", "n")

    def __init__(self) -> None:
        self.idx = np.empty(8, dtype=np.int64)
        self.cnt = np.empty(8, dtype=np.int64)
        self.mask = np.empty(8, dtype=np.uint64)
        self.n = 0

    def append(self, i: int, c: int, m: int) -> None:
        if self.n == len(self.idx):
            size = 2 * len(self.idx)
            self.idx = np.resize(self.idx, size)
            self.cnt = np.resize(self.cnt, size)
            self.mask = np.resize(self.mask, size)
        self.idx[self.n] = i
        self.cnt[self.n] = c
        self.mask[self.n] = m
        self.n += 1


class RougeFilter:
    """A growing pool of kept texts; ``add_if_novel`` keeps a text unless ROUGE-L F > threshold.

    Decisions equal ``max(scorer.score(kept, text)['rougeL'].fmeasure for kept in pool) > threshold``
    with ``rouge-score``'s default tokenizer (``use_stemmer`` as given). Texts with no tokens score 0
    against everything, so they are always novel (as with ``rouge-score``).
    """

    def __init__(self, threshold: float = 0.7, use_stemmer: bool = False) -> None:
        if not 0 <= threshold <= 1:
            raise ValueError(f"ROUGE-L threshold must be within [0, 1], got {threshold}")
        self.threshold = float(threshold)
        self._tokenizer = make_tokenizer(use_stemmer)
        self._vocab: dict[str, int] = {}
        self._postings: dict[int, _Posting] = {}
        self._lengths = np.empty(64, dtype=np.int64)
        self._tokens: list[tuple[int, ...]] = []  # kept texts as id tuples (for long-text fallback)
        self._exact: dict[tuple[int, ...], int] = {}
        self.texts: list[str] = []
        self.pairs_scored = 0  # LCS computations actually done (what pruning saved is the rest)

    def __len__(self) -> int:
        return len(self.texts)

    # ------------------------------------------------------------------ internals
    def _ids(self, text: str) -> tuple[int, ...]:
        vocab = self._vocab
        return tuple(vocab.setdefault(t, len(vocab)) for t in self._tokenizer.tokenize(text))

    def _max_f(self, ids: tuple[int, ...]) -> tuple[float, int]:
        """Highest F against the pool among candidates that could exceed the threshold (-1 if none)."""
        m = len(ids)
        k = len(self._tokens)
        if m == 0 or k == 0:
            return 0.0, -1
        if ids in self._exact:  # identical token sequence: F = 1
            return 1.0, self._exact[ids]
        counts = Counter(ids)
        posts = [(tid, cq, self._postings[tid]) for tid, cq in counts.items() if tid in self._postings]
        if not posts:
            return 0.0, -1
        # multiset overlap with every kept text at once: an upper bound on the LCS length
        idx = np.concatenate([p.idx[: p.n] for _, _, p in posts])
        weights = np.concatenate([np.minimum(p.cnt[: p.n], cq) for _, cq, p in posts])
        overlap = np.bincount(idx, weights=weights, minlength=k)
        bound = 2.0 * overlap / (m + self._lengths[:k])
        cand = np.flatnonzero(bound > self.threshold - _MARGIN)
        if len(cand) == 0:
            return 0.0, -1
        masks = {}
        if len(cand) > _VECTOR_MIN:  # position masks of the query's tokens in each candidate
            for tid, _, post in posts:
                pidx = post.idx[: post.n]
                at = np.minimum(np.searchsorted(pidx, cand), post.n - 1)
                masks[tid] = np.where(pidx[at] == cand, post.mask[at], np.uint64(0))
        return self._score_candidates(ids, cand, masks)

    def _score_candidates(self, ids: tuple[int, ...], cand: np.ndarray, masks: dict) -> tuple[float, int]:
        lengths = self._lengths[cand]
        short = lengths <= _WORD if masks else np.zeros(len(cand), dtype=bool)
        best, best_i = 0.0, -1
        if short.any():
            sc = cand[short]
            lcs = self._lcs_vectorized(ids, lengths[short], {t: mk[short] for t, mk in masks.items()})
            self.pairs_scored += len(sc)
            f = self._f_vector(lcs, len(ids), lengths[short])
            j = int(np.argmax(f))
            best, best_i = float(f[j]), int(sc[j])
        for i in cand[~short]:
            self.pairs_scored += 1
            f = rouge_fmeasure(lcs_length(self._tokens[i], ids), len(self._tokens[i]), len(ids))
            if f > best:
                best, best_i = f, int(i)
        return best, best_i

    @staticmethod
    def _f_vector(lcs: np.ndarray, m: int, n: np.ndarray) -> np.ndarray:
        """``rouge_fmeasure`` over arrays, same IEEE operations in the same order."""
        lcs = lcs.astype(np.float64)
        precision = lcs / m
        recall = lcs / n
        denom = precision + recall
        with np.errstate(invalid="ignore", divide="ignore"):
            f = 2 * precision * recall / denom
        return np.where(denom > 0, f, 0.0)

    @staticmethod
    def _lcs_vectorized(ids: tuple[int, ...], lengths: np.ndarray, masks: dict) -> np.ndarray:
        """Bit-parallel LCS of ``ids`` against every candidate (each <= 64 tokens, one uint64 word
        holding its positions) at once: ``masks[token]`` has the bits where each candidate has it."""
        n = lengths.astype(np.uint64)
        full = np.where(n >= 64, np.uint64(0xFFFFFFFFFFFFFFFF), (np.uint64(1) << np.minimum(n, 63)) - np.uint64(1))
        v = full.copy()
        for tid in ids:
            mk = masks.get(tid)
            if mk is None:
                continue
            u = v & mk
            v = ((v + u) | (v - u)) & full
        return lengths - np.bitwise_count(v).astype(np.int64)

    def _add(self, text: str, ids: tuple[int, ...]) -> None:
        i = len(self._tokens)
        if i == len(self._lengths):
            self._lengths = np.resize(self._lengths, 2 * i)
        self._lengths[i] = len(ids)
        self._tokens.append(ids)
        self._exact.setdefault(ids, i)
        self.texts.append(text)
        pos: dict[int, list[int]] = {}
        for p, tid in enumerate(ids):
            pos.setdefault(tid, []).append(p)
        for tid, ps in pos.items():
            mask = sum(1 << p for p in ps if p < _WORD)
            self._postings.setdefault(tid, _Posting()).append(i, len(ps), mask)

    # ------------------------------------------------------------------ API
    def max_score(self, text: str) -> float:
        """Highest ROUGE-L F of ``text`` against the pool, exact when it can exceed the threshold
        (below it, a pruned pair reports 0: only the decision is guaranteed)."""
        return self._max_f(self._ids(text))[0]

    def nearest(self, text: str) -> tuple[float, str | None]:
        """(F, kept text) of the most similar kept text among those that could exceed the threshold."""
        f, i = self._max_f(self._ids(text))
        return f, (self.texts[i] if i >= 0 else None)

    def is_novel(self, text: str) -> bool:
        return not self._max_f(self._ids(text))[0] > self.threshold

    def add(self, text: str) -> None:
        """Add to the pool unconditionally (e.g. the seed instructions)."""
        self._add(text, self._ids(text))

    def add_if_novel(self, text: str) -> bool:
        """Keep ``text`` (and return True) unless its ROUGE-L F against a kept text exceeds the threshold."""
        ids = self._ids(text)
        if self._max_f(ids)[0] > self.threshold:
            return False
        self._add(text, ids)
        return True


def filter_novel(
    texts: Iterable[str],
    threshold: float = 0.7,
    existing: Iterable[str] = (),
    use_stemmer: bool = False,
    progress: bool = False,
) -> list[bool]:
    """For each text in order: True if kept (novel against ``existing`` and every earlier kept text)."""
    filt = RougeFilter(threshold, use_stemmer=use_stemmer)
    for t in existing:
        filt.add(t)
    texts = list(texts)
    if progress:
        texts = progress_bar(texts, desc="ROUGE-L novelty", unit="text")
    return [filt.add_if_novel(t) for t in texts]


def filter_novel_naive(texts: Iterable[str], threshold: float = 0.7, existing: Iterable[str] = ()) -> list[bool]:
    """The reference: loop ``rouge-score`` over the pool (what self-instruct does). Slow; for tests."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    pool = list(existing)
    keep = []
    for t in texts:
        novel = all(scorer.score(p, t)["rougeL"].fmeasure <= threshold for p in pool)
        keep.append(novel)
        if novel:
            pool.append(t)
    return keep
