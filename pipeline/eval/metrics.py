"""Scorer metrics against step labels, as small pure functions.

A step is flagged when the scorer judges it incorrect; an unknown judgement flags nothing (it is
counted apart). The wrong-step class is the positive one throughout. Unlabelled steps (after the first
error in ProcessBench-style data) count for the predicted first error but not for step-level figures.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class Judged:
    """One solution: its step labels (True correct, False wrong, None unlabelled) and judgements."""

    labels: Sequence[bool | None]
    flags: Sequence[bool]  # judged incorrect
    scores: Sequence[float | None]  # the scorer's score for "correct", None when it could not tell

    @property
    def first_error(self) -> int:
        return first_flag([ok is False for ok in self.labels])


def first_flag(flags: Sequence[bool]) -> int:
    """Index of the first flagged step, -1 when none is.

    >>> first_flag([False, True, True]), first_flag([False, False])
    (1, -1)
    """
    return next((i for i, f in enumerate(flags) if f), -1)


def _share(hits: int, n: int) -> float | None:
    return hits / n if n else None


def harmonic_mean(a: float | None, b: float | None) -> float | None:
    """
    >>> harmonic_mean(0.5, 1.0), harmonic_mean(0.0, 0.0), harmonic_mean(None, 1.0)
    (0.6666666666666666, 0.0, None)
    """
    if a is None or b is None:
        return None
    return 2 * a * b / (a + b) if a + b else 0.0


def processbench(labels: Sequence[int], predicted: Sequence[int]) -> dict:
    """ProcessBench's figures from each solution's first wrong step (-1: all correct) and the one
    predicted: accuracy on the erroneous solutions (predicted == label), on the correct ones
    (predicted == -1), their harmonic mean (F1), and exact match over all solutions.

    >>> r = processbench([2, 0, -1, -1], [2, -1, -1, 1])
    >>> r["error_accuracy"], r["correct_accuracy"], round(r["f1"], 4), r["exact_match"]
    (0.5, 0.5, 0.5, 0.5)
    """
    wrong = [(lab, p) for lab, p in zip(labels, predicted) if lab != -1]
    right = [p for lab, p in zip(labels, predicted) if lab == -1]
    error_acc = _share(sum(lab == p for lab, p in wrong), len(wrong))
    correct_acc = _share(sum(p == -1 for p in right), len(right))
    return {
        "error_accuracy": error_acc,
        "correct_accuracy": correct_acc,
        "f1": harmonic_mean(error_acc, correct_acc),
        "exact_match": _share(sum(lab == p for lab, p in zip(labels, predicted)), len(labels)),
        "erroneous": len(wrong),
        "correct": len(right),
    }


def step_prf(labels: Sequence[bool | None], flags: Sequence[bool]) -> dict:
    """Precision, recall and F1 of flagging wrong steps, over labelled steps only.

    >>> r = step_prf([True, False, None, False, True], [True, True, True, False, False])
    >>> r["precision"], r["recall"], r["f1"], r["tp"], r["fp"], r["fn"]
    (0.5, 0.5, 0.5, 1, 1, 1)
    """
    pairs = [(ok, f) for ok, f in zip(labels, flags) if ok is not None]
    tp = sum(f and ok is False for ok, f in pairs)
    fp = sum(f and ok is True for ok, f in pairs)
    fn = sum(not f and ok is False for ok, f in pairs)
    precision, recall = _share(tp, tp + fp), _share(tp, tp + fn)
    return {
        "precision": precision,
        "recall": recall,
        "f1": harmonic_mean(precision, recall),
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "labelled_steps": len(pairs),
    }


def auroc(labels: Sequence[bool | None], scores: Sequence[float | None]) -> float | None:
    """The chance that a wrong step scores below a correct one (ties count half), over labelled,
    scored steps; None without both kinds. Rank-based (Mann-Whitney U with average ranks).

    >>> auroc([False, False, True, True], [0.1, 0.4, 0.35, 0.8])
    0.75
    >>> auroc([False, True, True], [0.5, 0.5, 1.0])
    0.75
    >>> auroc([True, True], [0.2, 0.9]) is None
    True
    """
    pairs = [(s, ok) for s, ok in zip(scores, labels) if s is not None and ok is not None]
    n_right = sum(ok for _, ok in pairs)
    n_wrong = len(pairs) - n_right
    if not n_right or not n_wrong:
        return None
    ranks = pd.Series([s for s, _ in pairs], dtype=float).rank(method="average")
    right_ranks = sum(r for r, (_, ok) in zip(ranks, pairs) if ok)
    return (right_ranks - n_right * (n_right + 1) / 2) / (n_right * n_wrong)


def judged_figures(solutions: Sequence[Judged]) -> dict:
    """ProcessBench and step-level figures for a set of judged solutions, flags as given."""
    labels = [lab for s in solutions for lab in s.labels]
    return {
        "processbench": processbench(
            [s.first_error for s in solutions], [first_flag(s.flags) for s in solutions]
        ),
        "steps": step_prf(labels, [f for s in solutions for f in s.flags]),
        "auroc": auroc(labels, [x for s in solutions for x in s.scores]),
    }


def threshold_sweep(solutions: Sequence[Judged], thresholds: Sequence[float]) -> list[dict]:
    """The figures with a step flagged when its score is below each threshold (unscored: not flagged).

    >>> sols = [Judged([True, False], [False, False], [0.9, 0.3]), Judged([True], [False], [0.6])]
    >>> [(r["threshold"], r["processbench_f1"], r["step_f1"]) for r in threshold_sweep(sols, [0.5, 0.7])]
    [(0.5, 1.0, 1.0), (0.7, 0.0, 0.6666666666666666)]
    """
    out = []
    for t in sorted(thresholds):
        flagged = [Judged(s.labels, [x is not None and x < t for x in s.scores], s.scores) for s in solutions]
        pb = processbench([s.first_error for s in flagged], [first_flag(s.flags) for s in flagged])
        steps = step_prf([lab for s in flagged for lab in s.labels], [f for s in flagged for f in s.flags])
        out.append(
            {
                "threshold": t,
                "processbench_f1": pb["f1"],
                "error_accuracy": pb["error_accuracy"],
                "correct_accuracy": pb["correct_accuracy"],
                "step_precision": steps["precision"],
                "step_recall": steps["recall"],
                "step_f1": steps["f1"],
            }
        )
    return out
