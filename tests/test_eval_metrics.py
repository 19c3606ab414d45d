"""Scorer metrics against figures worked out by hand on four judged solutions."""

from __future__ import annotations

import pytest

from pipeline.eval.metrics import Judged, judged_figures, threshold_sweep

# A: wrong at step 1, found. B: wrong at step 0, its judgement unknown (flags nothing), missed.
# C: all correct, nothing flagged. D: all correct, step 0 flagged.
SOLUTIONS = [
    Judged([True, False, None], [False, True, True], [0.9, 0.2, 0.1]),
    Judged([False, None], [False, False], [None, 0.6]),
    Judged([True, True], [False, False], [0.8, 0.7]),
    Judged([True, True, True], [True, False, False], [0.2, 0.9, 0.9]),
]


def test_processbench_figures():
    pb = judged_figures(SOLUTIONS)["processbench"]
    # Erroneous: A right (1 == 1), B wrong (-1 != 0). Correct: C right, D wrong (0 != -1).
    assert (pb["error_accuracy"], pb["correct_accuracy"], pb["f1"], pb["exact_match"]) == (0.5, 0.5, 0.5, 0.5)
    assert (pb["erroneous"], pb["correct"]) == (2, 2)


def test_step_level_figures_leave_unlabelled_steps_out():
    steps = judged_figures(SOLUTIONS)["steps"]
    # Labelled steps: A 2 (its flagged step 2 is unlabelled), B 1, C 2, D 3.
    # tp: A1; fp: D0; fn: B0 (an unknown judgement does not flag).
    assert (steps["tp"], steps["fp"], steps["fn"], steps["labelled_steps"]) == (1, 1, 1, 8)
    assert (steps["precision"], steps["recall"], steps["f1"]) == (0.5, 0.5, 0.5)


def test_auroc_counts_ties_half_and_skips_unscored_steps():
    # One wrong scored step (A1: 0.2) against six correct ones: five score higher, D0 ties at 0.2.
    assert judged_figures(SOLUTIONS)["auroc"] == pytest.approx(5.5 / 6)


def test_threshold_sweep():
    low, mid = threshold_sweep(SOLUTIONS, [0.5, 0.15])
    assert low["threshold"] == 0.15 and mid["threshold"] == 0.5
    # Below 0.5 flags the same steps as the verdicts (B0 has no score, so it stays unflagged).
    assert (mid["processbench_f1"], mid["step_f1"]) == (0.5, 0.5)
    # Below 0.15 flags only A2 (unlabelled): A's first error is missed, D's false alarm is gone.
    assert (low["error_accuracy"], low["correct_accuracy"], low["processbench_f1"]) == (0.0, 1.0, 0.0)
    assert low["step_precision"] is None and low["step_recall"] == 0.0 and low["step_f1"] is None


def test_figures_without_a_class_are_none_not_zero():
    only_correct = [Judged([True, True], [False, False], [0.9, 0.8])]
    fig = judged_figures(only_correct)
    assert fig["processbench"]["error_accuracy"] is None and fig["processbench"]["f1"] is None
    assert fig["processbench"]["correct_accuracy"] == 1.0
    assert fig["auroc"] is None and fig["steps"]["recall"] is None
