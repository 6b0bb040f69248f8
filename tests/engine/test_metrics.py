"""ROC AUC, EER, ROC curve and threshold calibration against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from engine.metrics import accuracy_at_threshold, equal_error_rate, roc_auc, roc_curve, threshold_at_fpr


def test_auc_perfect_inverted_and_ties() -> None:
    labels = np.array([0, 0, 1, 1])
    assert roc_auc(labels, np.array([0.1, 0.2, 0.8, 0.9])) == 1.0
    assert roc_auc(labels, np.array([0.9, 0.8, 0.2, 0.1])) == 0.0
    assert roc_auc(labels, np.array([0.5, 0.5, 0.5, 0.5])) == 0.5


def test_auc_matches_pairwise_count() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    labels[:2] = [0, 1]
    scores = np.round(rng.normal(labels * 0.7, 1.0), 1)  # rounding makes ties
    positives, negatives = scores[labels == 1], scores[labels == 0]
    pairwise = (positives[:, None] > negatives[None]).mean() + 0.5 * (
        positives[:, None] == negatives[None]
    ).mean()
    assert roc_auc(labels, scores) == pytest.approx(pairwise, abs=1e-12)
    fpr, tpr, _ = roc_curve(labels, scores)
    assert np.trapezoid(tpr, fpr) == pytest.approx(pairwise, abs=1e-12)


def test_roc_curve_points() -> None:
    fpr, tpr, thresholds = roc_curve(np.array([0, 1, 0, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
    np.testing.assert_allclose(fpr, [0, 0, 0, 0.5, 1])
    np.testing.assert_allclose(tpr, [0, 0.5, 1, 1, 1])
    assert np.isinf(thresholds[0]) and thresholds[1] == 0.8


def test_eer_separable_and_interleaved() -> None:
    assert equal_error_rate(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.8, 0.9])) == 0.0
    # One of two reals above one of two fakes: FPR = FNR = 0.5 at the crossing.
    assert equal_error_rate(np.array([0, 0, 1, 1]), np.array([0.1, 0.7, 0.6, 0.9])) == pytest.approx(0.5)


def test_threshold_at_fpr_keeps_false_positives_below_target() -> None:
    rng = np.random.default_rng(1)
    labels = np.r_[np.zeros(100), np.ones(100)].astype(int)
    scores = np.r_[rng.normal(0, 1, 100), rng.normal(2, 1, 100)]
    threshold = threshold_at_fpr(labels, scores, 0.05)
    false_positive_rate = (scores[labels == 0] >= threshold).mean()
    assert false_positive_rate <= 0.05
    assert false_positive_rate >= 0.04  # the lowest such threshold, not an overly strict one
    assert accuracy_at_threshold(labels, scores, threshold) == pytest.approx(
        ((scores >= threshold) == labels).mean()
    )


def test_threshold_at_fpr_needs_real_scores_only() -> None:
    # A set of real videos (a detector trained on pseudo-fakes) gets its false-alarm threshold, the
    # same one as with fakes beside them: only the real scores set a false-positive rate.
    rng = np.random.default_rng(2)
    real, fake = rng.normal(0, 1, 400), rng.normal(2, 1, 400)
    alone = threshold_at_fpr(np.zeros(400, int), real, 0.05)
    mixed = threshold_at_fpr(np.r_[np.zeros(400), np.ones(400)].astype(int), np.r_[real, fake], 0.05)
    assert alone == mixed and alone in real
    assert (real >= alone).mean() == pytest.approx(0.05)
    # No threshold but one above every real score keeps 0 false alarms.
    assert threshold_at_fpr(np.zeros(3, int), np.array([0.1, 0.2, 0.3]), 0.0) > 0.3
    with pytest.raises(ValueError, match="finite"):
        threshold_at_fpr(np.zeros(2, int), np.array([0.1, np.nan]), 0.05)
    with pytest.raises(ValueError, match="needs real scores"):
        threshold_at_fpr(np.ones(2, int), np.array([0.1, 0.2]), 0.05)


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="both classes"):
        roc_auc(np.array([1, 1]), np.array([0.1, 0.2]))
    with pytest.raises(ValueError, match="0 \\(real\\) or 1"):
        roc_auc(np.array([0, 2]), np.array([0.1, 0.2]))
    with pytest.raises(ValueError, match="one length"):
        roc_auc(np.array([0, 1]), np.array([0.1]))
