"""Scoring labelled videos with a checkpoint: video- and window-level figures, breakdowns, ROC plot."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from engine.calibration import FALSE_ALARM_RATES, reliability_curve
from engine.checkpoint import ScorerCheckpoint
from engine.metrics import accuracy_at_threshold, equal_error_rate, roc_auc, roc_curve
from engine.training import VideoSequence, score_windows
from stream.training.extract import ExtractedVideo

logger = logging.getLogger(__name__)


def _figures(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, Any]:
    figures: dict[str, Any] = {
        "n": len(labels),
        "real": int((labels == 0).sum()),
        "fake": int((labels == 1).sum()),
    }
    if len(labels):
        figures["accuracy"] = accuracy_at_threshold(labels, scores, threshold)
    if 0 < labels.sum() < len(labels):
        figures["auc"] = roc_auc(labels, scores)
        figures["eer"] = equal_error_rate(labels, scores)
    return figures


def evaluate(results: Sequence[ExtractedVideo], checkpoint: ScorerCheckpoint) -> dict[str, Any]:
    """Score every video's primary track with the checkpoint's head (windows of W, stride 1).

    A video's score is the mean of its window probabilities; videos without faces are listed
    under ``unscored``. Returns the report (see ``deepwatch eval``).
    """
    head = checkpoint.build_head()
    scored, unscored = [], []
    for result in results:
        if result.faces.empty or result.embeddings is None:
            unscored.append({"name": result.item.name, "reason": result.faces.reason or "no embeddings"})
            continue
        indices = result.faces.primary_track()
        scored.append(
            (
                result,
                VideoSequence(
                    name=result.item.name,
                    label=result.item.label,
                    group=result.item.group,
                    embeddings=result.embeddings[indices],
                    method=result.item.method,
                    source=result.item.source,
                ),
            )
        )
    if not scored:
        raise ValueError("no video could be scored (no faces found in any)")
    sequences = [sequence for _, sequence in scored]
    windows = score_windows(head, sequences, checkpoint.window_size, 1)
    video_scores = np.array([float(w.mean()) for w in windows])
    labels = np.array([sequence.label for sequence in sequences])
    window_labels = np.concatenate(
        [np.full(len(w), s.label) for w, s in zip(windows, sequences, strict=True)]
    )
    window_scores = np.concatenate(windows)
    threshold = checkpoint.threshold
    video = _figures(labels, video_scores, threshold)
    track_scores = np.array([float(w.max()) for w in windows])
    methods = np.array([sequence.method for sequence in sequences])
    sources = np.array([sequence.source for sequence in sequences])
    per_method = {}
    for method in sorted(set(methods[labels == 1].tolist())):
        keep = (labels == 0) | (methods == method)
        per_method[method] = {
            "fake_videos": int((methods == method).sum()),
            **_figures(labels[keep], video_scores[keep], threshold),
        }
    per_source = {}
    for source in sorted(set(sources.tolist())):
        keep = sources == source
        per_source[source] = _figures(labels[keep], video_scores[keep], threshold)
    return {
        "video_auc": video.get("auc"),
        "video": video,
        "window": _figures(window_labels, window_scores, threshold),
        "threshold": threshold,
        "threshold_fpr": checkpoint.threshold_fpr,
        "per_method": per_method,
        "per_source": per_source,
        "calibration": _calibration_report(checkpoint, labels, track_scores, window_labels, window_scores),
        "checkpoint": {
            "path": str(checkpoint.path) if checkpoint.path else None,
            "encoder_weights": checkpoint.encoder_weights,
            "changed_layers": checkpoint.changed_layers,
            "head_type": checkpoint.head_type,
            "window_size": checkpoint.window_size,
            "sample_rate_hz": checkpoint.sample_rate_hz,
        },
        "videos": [
            {
                "name": sequence.name,
                "label": sequence.label,
                "method": sequence.method,
                "source": sequence.source,
                "p_fake": float(score),
                "windows": len(w),
            }
            for sequence, score, w in zip(sequences, video_scores, windows, strict=True)
        ],
        "unscored": unscored,
        "_curves": {
            "video": (labels, video_scores),
            "window": (window_labels, window_scores),
        },
        "_real_windows": [w for w, s in zip(windows, sequences, strict=True) if s.label == 0],
    }


def _calibration_report(
    checkpoint: ScorerCheckpoint,
    labels: np.ndarray,
    track_scores: np.ndarray,
    window_labels: np.ndarray,
    window_scores: np.ndarray,
) -> dict[str, Any] | None:
    """How the checkpoint's calibrated thresholds do on this set (None when it has none).

    A video's track score is its highest window p_fake (``engine.calibration``): a real video
    "past" the 5 % per-track threshold would have read FAKE at some moment.
    """
    calibration = checkpoint.calibration
    if calibration is None:
        return None
    report: dict[str, Any] = {"stored": calibration.to_dict()}
    for rate in FALSE_ALARM_RATES:
        track_threshold, window_threshold = calibration.track[rate], calibration.window[rate]
        real_tracks, fake_tracks = track_scores[labels == 0], track_scores[labels == 1]
        real_windows, fake_windows = window_scores[window_labels == 0], window_scores[window_labels == 1]
        report[f"{rate:g}"] = {
            "track_threshold": track_threshold,
            "real_tracks_past": int((real_tracks > track_threshold).sum()),
            "fake_tracks_past": int((fake_tracks > track_threshold).sum()),
            "real_tracks": len(real_tracks),
            "fake_tracks": len(fake_tracks),
            "window_threshold": window_threshold,
            "real_window_false_alarm_rate": float((real_windows > window_threshold).mean())
            if len(real_windows)
            else None,
            "fake_window_detection_rate": float((fake_windows > window_threshold).mean())
            if len(fake_windows)
            else None,
        }
    return report


def plot_reliability(
    curves: dict[str, tuple[np.ndarray, np.ndarray]], path: Path, title: str, bins: int = 10
) -> Path | None:
    """Write a reliability diagram (fraction fake against mean p_fake per bin) to a PNG.

    Points on the diagonal mean p_fake can be read as a probability; the marker area shows how
    many windows or videos fell in each bin.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(5, 5))
    drawn = 0
    for name, (labels, scores) in curves.items():
        if len(labels) == 0:
            continue
        mean_score, fraction_fake, counts = reliability_curve(labels, scores, bins)
        axes.plot(mean_score, fraction_fake, marker="o", label=f"{name} (n={len(labels)})")
        axes.scatter(mean_score, fraction_fake, s=20 + 200 * counts / counts.max(), alpha=0.3)
        drawn += 1
    if not drawn:
        pyplot.close(figure)
        return None
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1)
    axis_labels = (f"mean p_fake in the bin ({bins} equal bins)", "fraction fake")
    return _finish(pyplot, figure, axes, path, axis_labels, title, "upper left")


def _finish(
    pyplot: Any, figure: Any, axes: Any, path: Path, labels: tuple[str, str], title: str, legend: str
) -> Path:
    """Diagonal, axis labels, title and legend; write the PNG and close the figure."""
    axes.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    axes.set_xlabel(labels[0])
    axes.set_ylabel(labels[1])
    axes.set_title(title)
    axes.legend(loc=legend, fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot.close(figure)
    return path


def plot_roc(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: Path, title: str) -> Path | None:
    """Write the ROC curves to a PNG (matplotlib's Agg backend, chosen here, never at import)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(5, 5))
    drawn = 0
    for name, (labels, scores) in curves.items():
        if not 0 < labels.sum() < len(labels):
            continue
        fpr, tpr, _ = roc_curve(labels, scores)
        axes.plot(fpr, tpr, label=f"{name} (AUC {roc_auc(labels, scores):.3f}, n={len(labels)})")
        drawn += 1
    if not drawn:
        pyplot.close(figure)
        logger.warning("no ROC curve drawn: the evaluated videos hold only one class")
        return None
    axis_labels = ("false-positive rate (real flagged fake)", "true-positive rate (fake caught)")
    return _finish(pyplot, figure, axes, path, axis_labels, title, "lower right")
