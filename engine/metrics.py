"""Detection metrics on scores where higher means "more likely fake" (label 1 = fake).

numpy only, so evaluation does not depend on scikit-learn.
"""

from __future__ import annotations

import numpy as np


def _check(
    labels: np.ndarray, scores: np.ndarray, both_classes: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels)
    scores = np.asarray(scores, dtype=np.float64)
    if labels.ndim != 1 or scores.shape != labels.shape:
        raise ValueError(
            f"labels and scores must be 1-D of one length, got {labels.shape} and {scores.shape}"
        )
    if not np.isin(labels, (0, 1)).all():
        raise ValueError(f"labels must be 0 (real) or 1 (fake), got values {np.unique(labels)[:5]}")
    if not np.isfinite(scores).all():
        raise ValueError("scores must be finite")
    labels = labels.astype(np.int64)
    if both_classes and (labels.sum() == 0 or labels.sum() == len(labels)):
        raise ValueError(f"need both classes, got {int(labels.sum())} fake of {len(labels)}")
    return labels, scores


def roc_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC points for "fake if score >= threshold", thresholds descending.

    Returns ``(fpr, tpr, thresholds)``; the first point is (0, 0) at threshold +inf.
    """
    labels, scores = _check(labels, scores)
    order = np.argsort(-scores, kind="mergesort")
    sorted_scores, sorted_labels = scores[order], labels[order]
    # One ROC point per distinct score: the last index of each run of tied scores.
    last_of_tie = np.r_[np.nonzero(np.diff(sorted_scores))[0], len(sorted_scores) - 1]
    true_positives = np.cumsum(sorted_labels)[last_of_tie]
    false_positives = (last_of_tie + 1) - true_positives
    tpr = np.r_[0.0, true_positives / labels.sum()]
    fpr = np.r_[0.0, false_positives / (len(labels) - labels.sum())]
    thresholds = np.r_[np.inf, sorted_scores[last_of_tie]]
    return fpr, tpr, thresholds


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve: P(score of a random fake > score of a random real), ties count 1/2."""
    labels, scores = _check(labels, scores)
    ranks = _average_ranks(scores)
    positives = int(labels.sum())
    negatives = len(labels) - positives
    return float((ranks[labels == 1].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def equal_error_rate(labels: np.ndarray, scores: np.ndarray) -> float:
    """The error rate where the false-positive rate equals the false-negative rate (interpolated)."""
    fpr, tpr, _ = roc_curve(labels, scores)
    fnr = 1.0 - tpr
    difference = fpr - fnr
    crossing = int(np.nonzero(difference >= 0)[0][0])
    if crossing == 0 or difference[crossing] == 0:
        return float(fpr[crossing])
    # Linear interpolation between the two ROC points around the crossing.
    before, after = difference[crossing - 1], difference[crossing]
    weight = before / (before - after)
    return float(fpr[crossing - 1] + weight * (fpr[crossing] - fpr[crossing - 1]))


def threshold_at_fpr(labels: np.ndarray, scores: np.ndarray, target_fpr: float) -> float:
    """The lowest real score usable as a threshold whose false-positive rate ("fake if score >= t")
    is <= ``target_fpr``.

    Only the real scores (label 0) set a false-positive rate, so a set without fakes gets one too.
    When even the top real score alone is too many, the threshold sits just above it.
    """
    if not 0.0 <= target_fpr <= 1.0:
        raise ValueError(f"target_fpr must be in [0, 1], got {target_fpr!r}")
    labels, scores = _check(labels, scores, both_classes=False)
    real = np.sort(scores[labels == 0])
    if len(real) == 0:
        raise ValueError("a false-positive rate needs real scores (label 0), got none")
    candidates = np.unique(real)[::-1]
    # Share of real scores at or above each candidate, rising as the candidates fall.
    fpr = (len(real) - np.searchsorted(real, candidates, side="left")) / len(real)
    allowed = candidates[fpr <= target_fpr + 1e-12]
    if len(allowed) == 0:
        return float(np.nextafter(real[-1], np.inf))
    return float(allowed[-1])


def accuracy_at_threshold(labels: np.ndarray, scores: np.ndarray, threshold: float) -> float:
    """Fraction of correct decisions with "fake if score >= threshold"."""
    labels = np.asarray(labels).astype(np.int64)
    predictions = (np.asarray(scores, dtype=np.float64) >= threshold).astype(np.int64)
    if labels.shape != predictions.shape or labels.ndim != 1 or len(labels) == 0:
        raise ValueError(f"labels and scores must be 1-D of one non-zero length, got {labels.shape}")
    return float((predictions == labels).mean())


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks with ties given their average rank."""
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    ranks = np.empty(len(values), dtype=np.float64)
    starts = np.r_[0, np.nonzero(np.diff(sorted_values))[0] + 1]
    ends = np.r_[starts[1:], len(values)]
    for start, end in zip(starts, ends, strict=True):
        ranks[order[start:end]] = (start + end + 1) / 2.0
    return ranks
