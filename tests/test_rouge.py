"""The fast ROUGE-L novelty filter must make exactly the decisions of looping ``rouge-score``."""

from __future__ import annotations

import random

import pytest
from rouge_score import rouge_scorer

from instructcoder_utils.rouge import RougeFilter, filter_novel, filter_novel_naive, lcs_length, rouge_l

SCORER = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
VOCAB = ["add", "a", "the", "function", "to", "sort", "list", "return", "x", "y", "ÄBC", "it's", "!!", "é",
         "İstanbul", "foo_bar", "42", "3.14", "--", "ﬁle", "日本", "Straße", "add!", "   ", "\n", "NaN"]


def rand_text(rng: random.Random, vocab=VOCAB, max_len: int = 30) -> str:
    return " ".join(rng.choice(vocab) for _ in range(rng.randint(0, max_len)))


def ref(a: str, b: str) -> float:
    return SCORER.score(a, b)["rougeL"].fmeasure


def test_pairwise_scores_equal_rouge_score_exactly():
    rng = random.Random(1)
    edge = ["", "!!!", "...", "  \n ", "é", "a a a a", "A, a; a!", "ﬁ", "x" * 70, " ".join(["w"] * 80)]
    pairs = [(a, b) for a in edge for b in edge]
    pairs += [(rand_text(rng), rand_text(rng)) for _ in range(3000)]
    pairs += [(rand_text(rng, max_len=90), rand_text(rng, max_len=90)) for _ in range(200)]  # > 64 tokens
    for a, b in pairs:
        assert rouge_l(a, b) == ref(a, b), (a, b)
        assert rouge_l(a, b) == rouge_l(b, a)


def test_lcs_bit_parallel_matches_dynamic_programming():
    rng = random.Random(2)
    for _ in range(500):
        a = [rng.randrange(5) for _ in range(rng.randint(0, 140))]
        b = [rng.randrange(5) for _ in range(rng.randint(0, 140))]
        table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
        for i in range(1, len(a) + 1):
            for j in range(1, len(b) + 1):
                table[i][j] = table[i - 1][j - 1] + 1 if a[i - 1] == b[j - 1] else max(table[i - 1][j], table[i][j - 1])
        assert lcs_length(a, b) == table[-1][-1]


def near_dup_set(rng: random.Random, n: int) -> list[str]:
    """Texts where about half are small edits of an earlier one (so decisions are near the threshold)."""
    words = ["add", "the", "a", "to", "function", "parser", "cache", "sort", "list", "please", "in", "and",
             "handle", "errors", "log", "fix", "bug", "loop", "it", "Ä", "!!", "x1"]
    out: list[str] = []
    for _ in range(n):
        if out and rng.random() < 0.5:
            w = rng.choice(out).split()
            if w:
                w[rng.randrange(len(w))] = rng.choice(words)
            if rng.random() < 0.5:
                w.insert(rng.randrange(len(w) + 1), rng.choice(words))
            out.append(" ".join(w))
        else:
            out.append(" ".join(rng.choice(words) for _ in range(rng.randint(0, 14))))
    return out


@pytest.mark.parametrize("threshold", [0.5, 0.7, 0.8])
def test_filter_decisions_equal_naive_loop(threshold):
    rng = random.Random(int(threshold * 10))
    texts = near_dup_set(rng, 400)
    ours = filter_novel(texts, threshold)
    assert ours == filter_novel_naive(texts, threshold)
    assert 0 < sum(ours) < len(texts)  # the set really exercises both decisions


def test_threshold_ties_and_existing_pool():
    # 7 of 10 tokens shared in order: F is 0.7 up to float rounding; rouge-score's rounding decides
    base = "a b c d e f g h i j"
    tie = "a b c d e f g x y z"
    assert filter_novel([base, tie], 0.7) == filter_novel_naive([base, tie], 0.7)
    assert filter_novel([tie], 0.7, existing=[base]) == filter_novel_naive([tie], 0.7, existing=[base])
    # the exact rational case 2/3: 'a b' vs 'a b c' -> F = 0.8; with threshold 0.8 it is kept (not >)
    assert filter_novel(["a b", "a b c"], 0.8) == [True, True] == filter_novel_naive(["a b", "a b c"], 0.8)
    assert filter_novel(["a b", "a b c"], 0.79) == [True, False]


def test_long_texts_and_empty_texts():
    rng = random.Random(5)
    long = [" ".join(rng.choice("abcdefgh") for _ in range(rng.randint(60, 120))) for _ in range(60)]
    texts = long + ["", "!!", "", "a"] + [t + " z" for t in long[:10]]
    assert filter_novel(texts, 0.7) == filter_novel_naive(texts, 0.7)


def test_rouge_filter_api():
    f = RougeFilter(0.7)
    assert f.add_if_novel("Add a docstring to the parse function.")
    assert not f.add_if_novel("Add a docstring to the parse function!")
    assert f.add_if_novel("Rewrite the loop as a list comprehension.")
    assert len(f) == 2
    score, near = f.nearest("add docstring to the parse function")
    assert near == "Add a docstring to the parse function." and score > 0.7
    assert f.is_novel("Completely different words here")
    with pytest.raises(ValueError, match="threshold"):
        RougeFilter(1.5)
