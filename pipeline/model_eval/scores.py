"""Accuracy figures of evaluated models, as small pure functions: a confidence interval, pass@k,
majority@k, and whether two models' difference on the same problems is more than noise."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

Z95 = 1.959964  # two-sided 95 %


def wilson(hits: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """Wilson score interval of a share: sound at 0 or n hits and for small n, where the normal one is not.

    >>> wilson(0, 10)
    (0.0, 0.2775)
    >>> wilson(5, 10)
    (0.2366, 0.7634)
    >>> wilson(0, 0) is None
    True
    """
    if n == 0:
        return None
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4)


def pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased pass@k of one problem from n samples of which c are correct (Chen et al., 2021):
    the chance that k of the n, drawn without replacement, hold at least one correct.

    >>> pass_at_k(4, 1, 1), pass_at_k(4, 1, 4), pass_at_k(4, 0, 2), round(pass_at_k(4, 2, 2), 4)
    (0.25, 1.0, 0.0, 0.8333)
    """
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples, got {n}")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def majority_correct(answers: Sequence[str | None], correct: Sequence[bool]) -> bool:
    """Whether the most frequent final answer is a correct one (no answer never wins; a tie goes to
    the answer given first, so the figure does not depend on how ties are broken elsewhere).

    >>> majority_correct(["4", "5", "4"], [True, False, True]), majority_correct(["5", "4"], [False, True])
    (True, False)
    >>> majority_correct([None, None, "4"], [False, False, True])
    True
    """
    given = [(a.strip(), ok) for a, ok in zip(answers, correct) if a is not None and a.strip()]
    if not given:
        return False
    votes = Counter(a for a, _ in given)
    top = max(votes.values())
    winner = next(a for a, _ in given if votes[a] == top)
    return any(ok for a, ok in given if a == winner)


def ks(samples: int) -> list[int]:
    """The k of pass@k and maj@k reported for n samples: 1, 2, 4, ... and n itself.

    >>> ks(4), ks(5), ks(1), ks(0)
    ([1, 2, 4], [1, 2, 4, 5], [1], [])
    """
    out = [k for k in (2**i for i in range(samples.bit_length())) if k <= samples]
    return out + ([samples] if samples and samples not in out else [])


def mcnemar_p(a: Sequence[bool], b: Sequence[bool]) -> float:
    """Exact two-sided McNemar p-value of two models graded on the same problems: only the problems
    one model got and the other did not say anything about their difference.

    >>> mcnemar_p([True] * 10, [False] * 10) < 0.01
    True
    >>> mcnemar_p([True, False, True], [False, True, True])
    1.0
    """
    if len(a) != len(b):
        raise ValueError("the two models were graded on different numbers of problems")
    only_a = sum(x and not y for x, y in zip(a, b))
    only_b = sum(y and not x for x, y in zip(a, b))
    n = only_a + only_b
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(only_a, only_b) + 1)) / 2**n
    return round(min(1.0, 2 * tail), 6)
