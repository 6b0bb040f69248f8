"""Scoring labelled videos with a checkpoint: video- and window-level figures, breakdowns, ROC plot."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

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
    }


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
    axes.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    axes.set_xlabel("false-positive rate (real flagged fake)")
    axes.set_ylabel("true-positive rate (fake caught)")
    axes.set_title(title)
    axes.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot.close(figure)
    return path
