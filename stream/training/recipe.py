"""From extracted face caches to a trained, cross-validated scorer checkpoint.

The steps, all on cached crops (no video is decoded here):

1. Each video's primary track (up to ``max_crops`` samples) is one clip; real clips of training
   groups can also give a self-blended pseudo-fake clip (``stream.training.pseudo_fakes``).
2. The frozen lower part of the casia-webface encoder runs once per crop and clip variant; the
   feature maps are cached in memory.
3. Optionally the upper blocks are fine-tuned as a frame classifier (``engine.finetune``).
4. Every clip is embedded with the (fine-tuned) encoder and a sequence head is trained on the
   windows (``engine.training``).

Cross-validation repeats 3 and 4 inside each fold, so the figures are held out by identity group,
fine-tuning included. The final model is trained on everything and calibrated on the
out-of-fold window scores of the real videos (``engine.calibration``: thresholds at 1 % and 5 %
false alarms per window and per track, stored in the checkpoint with the cross-validated AUC).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from engine.calibration import Calibration, calibrate
from engine.checkpoint import ScorerCheckpoint
from engine.encoder import preprocess
from engine.finetune import (
    FinetuneConfig,
    build_model,
    embed_features,
    finetune_encoder,
    lower_features,
)
from engine.inception_resnet_v1 import InceptionResnetV1
from engine.metrics import roc_auc, threshold_at_fpr
from engine.snapshots import Snapshots
from engine.training import (
    HeadTrainingConfig,
    TrainedHead,
    VideoSequence,
    group_folds,
    method_aucs,
    score_videos,
    score_windows,
    seed_everything,
    split_by_group,
    train_head,
)
from stream.training.extract import ExtractedVideo, crop_settings
from stream.training.pseudo_fakes import self_blend_clip
from tracking.config import CropConfig

logger = logging.getLogger(__name__)

PSEUDO_FAKE_METHOD = "SBI"
# Calibrated thresholds are kept inside this range (see train_on_clips).
THRESHOLD_RANGE = (0.001, 0.999)


@dataclass(frozen=True)
class TrainingOptions:
    """What ``train_detector`` does.

    Attributes:
        head: the sequence head and how it trains.
        finetune: encoder fine-tuning settings; None keeps the encoder frozen.
        pseudo_fakes: add one self-blended fake clip per real training clip.
        cv_folds: group-held-out folds for the reported figures (0 = no cross-validation).
        cv_split: only manifest rows with this ``set``/split value are cross-validated (others,
            e.g. extra real clips, are only ever trained on); "" cross-validates every row.
        threshold_fpr: false-positive rate (window level, real videos) the threshold targets.
        max_crops: samples of each video's primary track used (from its start).
        sample_rate_hz: the rate the clips were sampled at (recorded in the checkpoint).
        crop: the crop settings the clips were extracted with (recorded in the checkpoint; the
            live app refuses other crops).
        val_fraction: share of training groups held out for early stopping.
        seed: seeds everything.
    """

    head: HeadTrainingConfig = field(default_factory=HeadTrainingConfig)
    finetune: FinetuneConfig | None = None
    pseudo_fakes: bool = False
    cv_folds: int = 5
    cv_split: str = ""
    threshold_fpr: float = 0.05
    max_crops: int = 32
    sample_rate_hz: float = 8.0
    crop: CropConfig = field(default_factory=CropConfig)
    val_fraction: float = 0.25
    seed: int = 0

    def __post_init__(self) -> None:
        if self.cv_folds < 0 or self.cv_folds == 1:
            raise ValueError(f"cv_folds must be 0 (none) or >= 2, got {self.cv_folds!r}")
        if not 0.0 <= self.threshold_fpr < 1.0:
            raise ValueError(f"threshold_fpr must be in [0, 1), got {self.threshold_fpr!r}")
        if self.max_crops < 1:
            raise ValueError(f"max_crops must be >= 1, got {self.max_crops!r}")


def feature_split(options: TrainingOptions) -> str:
    """The encoder stage whose input the clips cache: everything below it is frozen."""
    return options.finetune.feature_split if options.finetune is not None else "last_linear"


@dataclass(frozen=True, eq=False)
class Clip:
    """One training/evaluation clip: a video's primary-track crops as cached lower features."""

    name: str
    label: int
    group: str
    method: str
    source: str
    split: str
    features: torch.Tensor
    pseudo_fake_of: str = ""


def _primary_clip(result: ExtractedVideo, max_crops: int) -> np.ndarray:
    return result.faces.primary_track()[:max_crops]


def _landmarks_for_clip(result: ExtractedVideo, indices: np.ndarray) -> np.ndarray:
    from tracking.crops import landmark_template

    landmarks = result.faces.crop_landmarks_5x2[indices].astype(np.float64)
    finite = np.isfinite(landmarks).all(axis=(1, 2))
    if not finite.any():
        size = result.faces.crops.shape[1]
        return np.broadcast_to(landmark_template(size, 0.25), landmarks.shape).copy()
    fallback = np.median(landmarks[finite], axis=0)
    landmarks[~finite] = fallback
    return landmarks


def _stable_seed(name: str, seed: int) -> int:
    return int(hashlib.sha1(f"{name}|{seed}".encode()).hexdigest()[:8], 16)


def build_clips(
    results: Sequence[ExtractedVideo],
    base_state: dict[str, torch.Tensor],
    train_from: str,
    options: TrainingOptions,
    progress: bool = True,
    device: torch.device | None = None,
) -> list[Clip]:
    """Lower feature maps of every video's primary clip (and its pseudo-fake, for real videos)."""
    model = build_model(base_state).to(device or torch.device("cpu"))
    clips = []
    usable = [result for result in results if not result.faces.empty]
    for result in tqdm(usable, desc="encoder features", unit="video", disable=not progress):
        item = result.item
        indices = _primary_clip(result, options.max_crops)
        crops = result.faces.crops[indices]
        base = {
            "name": item.name,
            "group": item.group,
            "source": item.source,
            "split": item.split,
        }
        clips.append(
            Clip(
                label=item.label,
                method=item.method,
                features=lower_features(model, preprocess(crops), train_from),
                **base,
            )
        )
        if options.pseudo_fakes and item.label == 0:
            rng = np.random.default_rng(_stable_seed(item.name, options.seed))
            blended, _ = self_blend_clip(crops, _landmarks_for_clip(result, indices), rng)
            clips.append(
                Clip(
                    label=1,
                    method=PSEUDO_FAKE_METHOD,
                    features=lower_features(model, preprocess(blended), train_from),
                    pseudo_fake_of=item.name,
                    **{**base, "name": f"{item.name}#sbi"},
                )
            )
    return clips


@dataclass(frozen=True, eq=False)
class FoldModel:
    """An encoder (base + overrides) and the heads trained on its embeddings of some clips."""

    overrides: dict[str, torch.Tensor]
    heads: dict[str, TrainedHead]
    finetune_val_auc: float


def _sequences(model: InceptionResnetV1, clips: Sequence[Clip], train_from: str) -> list[VideoSequence]:
    return [
        VideoSequence(
            name=clip.name,
            label=clip.label,
            group=clip.group,
            embeddings=embed_features(model, clip.features, train_from),
            method=clip.method,
            source=clip.source,
        )
        for clip in clips
    ]


def fit_model(
    train_clips: Sequence[Clip],
    base_state: dict[str, torch.Tensor],
    train_from: str,
    options: TrainingOptions,
    seed: int,
    heads: dict[str, HeadTrainingConfig],
    progress: bool = False,
    snapshots: Snapshots | None = None,
    device: torch.device | None = None,
    snapshot_prefix: str = "",
) -> tuple[FoldModel, InceptionResnetV1]:
    """Fine-tune (optional), then train each head on ``train_clips``; early stopping on a group split.

    With ``snapshots`` every training loop saves its state per epoch under ``snapshot_prefix``
    and continues from a saved one (``deepwatch train --resume``).
    """
    seed_everything(seed)
    model = build_model(base_state)
    real_clips = [clip for clip in train_clips if not clip.pseudo_fake_of]
    _, val = split_by_group(
        [VideoSequence(c.name, c.label, c.group, np.zeros((1, 1), np.float32)) for c in real_clips],
        options.val_fraction,
        seed=seed,
    )
    val_groups = {video.group for video in val}
    # Validation scores the held-out groups' real videos against their fakes. Their pseudo-fakes
    # join only when those groups have no real fake (a set of real videos only, trained on
    # pseudo-fakes alone): else early stopping would see one class. They never train either way.
    pseudo_val = not any(
        clip.label == 1 and not clip.pseudo_fake_of and clip.group in val_groups for clip in train_clips
    )
    finetune_val_auc = float("nan")
    overrides: dict[str, torch.Tensor] = {}
    if options.finetune is not None:
        features = torch.cat([clip.features for clip in train_clips])
        labels = np.concatenate([np.full(len(clip.features), clip.label) for clip in train_clips])
        video_ids = np.concatenate([np.full(len(clip.features), i) for i, clip in enumerate(train_clips)])
        # No training crop is derived from a validation video: the held-out groups' pseudo-fakes
        # are validation rows (``pseudo_val``) or dropped.
        in_val = np.concatenate(
            [np.full(len(clip.features), clip.group in val_groups) for clip in train_clips]
        )
        derived = np.concatenate(
            [np.full(len(clip.features), bool(clip.pseudo_fake_of)) for clip in train_clips]
        )
        keep = ~(in_val & derived) | pseudo_val
        result = finetune_encoder(
            model,
            features[torch.from_numpy(keep)],
            labels[keep],
            video_ids[keep],
            ~in_val[keep],
            options.finetune,
            progress=progress,
            snapshots=snapshots,
            snapshot_name=f"{snapshot_prefix}finetune",
            device=device,
        )
        overrides, finetune_val_auc = result.overrides, result.val_auc
    sequences = _sequences(model, train_clips, train_from)
    fit_sequences = [s for s in sequences if s.group not in val_groups]
    val_sequences = [
        s
        for s, clip in zip(sequences, train_clips, strict=True)
        if s.group in val_groups and (pseudo_val or not clip.pseudo_fake_of)
    ]
    trained = {
        name: train_head(
            fit_sequences,
            val_sequences,
            config,
            progress=progress,
            snapshots=snapshots,
            snapshot_name=f"{snapshot_prefix}head-{name}",
            device=device,
        )
        for name, config in heads.items()
    }
    return FoldModel(overrides, trained, finetune_val_auc), model


def cross_validate_detector(
    clips: Sequence[Clip],
    base_state: dict[str, torch.Tensor],
    train_from: str,
    options: TrainingOptions,
    extra_heads: dict[str, HeadTrainingConfig] | None = None,
    progress: bool = True,
    snapshots: Snapshots | None = None,
    device: torch.device | None = None,
) -> dict[str, Any]:
    """Group-held-out CV of the whole recipe (fine-tuning included); returns figures and scores.

    The main head's figures are at the top level; ``extra_heads`` (compared on the same folds and
    the same fine-tuned encoders) are reported under ``heads``.
    """
    heads = {"main": options.head, **(extra_heads or {})}
    evaluated = [
        clip
        for clip in clips
        if not clip.pseudo_fake_of and (not options.cv_split or clip.split == options.cv_split)
    ]
    folds = group_folds(
        [c.group for c in evaluated], [c.label for c in evaluated], options.cv_folds, options.seed
    )
    video_scores = {name: np.full(len(evaluated), np.nan) for name in heads}
    window_scores: dict[str, list[np.ndarray]] = {name: [np.zeros(0)] * len(evaluated) for name in heads}
    fold_details = []
    for fold, test_indices in enumerate(
        tqdm(folds, desc="cross-validation", unit="fold", disable=not progress)
    ):
        started = time.monotonic()
        held_out_groups = {evaluated[i].group for i in test_indices}
        train_clips = [clip for clip in clips if clip.group not in held_out_groups]
        fold_model, model = fit_model(
            train_clips,
            base_state,
            train_from,
            options,
            options.seed + fold,
            heads,
            snapshots=snapshots,
            snapshot_prefix=f"cv{fold}-",
            device=device,
        )
        test_clips = [evaluated[i] for i in test_indices]
        test_sequences = _sequences(model, test_clips, train_from)
        for name, config in heads.items():
            head = fold_model.heads[name].head
            video_scores[name][test_indices] = score_videos(
                head, test_sequences, config.window_size, config.stride
            )
            for i, windows in zip(
                test_indices, score_windows(head, test_sequences, config.window_size, 1), strict=True
            ):
                window_scores[name][i] = windows
        fold_details.append(
            {
                "fold": fold,
                "test_videos": len(test_indices),
                "finetune_val_auc": fold_model.finetune_val_auc,
                "head_val_auc": {name: trained.val_auc for name, trained in fold_model.heads.items()},
                "head_best_epoch": {name: trained.best_epoch for name, trained in fold_model.heads.items()},
                "seconds": round(time.monotonic() - started, 1),
            }
        )
        logger.info("fold %d: %s", fold, fold_details[-1])
    labels = np.array([clip.label for clip in evaluated])
    for_methods = [
        VideoSequence(
            c.name, c.label, c.group, np.zeros((1, 1), np.float32), method=c.method, source=c.source
        )
        for c in evaluated
    ]
    per_head = {}
    for name in heads:
        window_labels = np.concatenate(
            [np.full(len(w), clip.label) for w, clip in zip(window_scores[name], evaluated, strict=True)]
        )
        all_windows = np.concatenate(window_scores[name])
        per_head[name] = {
            "video_auc": roc_auc(labels, video_scores[name]),
            "video_auc_per_method": method_aucs(for_methods, video_scores[name]),
            "window_auc": roc_auc(window_labels, all_windows),
            "threshold": threshold_at_fpr(window_labels, all_windows, options.threshold_fpr),
            "scores": {
                clip.name: float(score) for clip, score in zip(evaluated, video_scores[name], strict=True)
            },
        }
    real_windows = [
        windows for windows, clip in zip(window_scores["main"], evaluated, strict=True) if clip.label == 0
    ]
    calibration = calibrate(
        real_windows,
        float(per_head["main"]["video_auc"]),  # type: ignore[arg-type]
        f"group {options.cv_folds}-fold cross-validation of the training set"
        + (f" (rows with set {options.cv_split!r})" if options.cv_split else "")
        + ", out-of-fold scores",
    )
    figures = {
        **per_head["main"],
        "calibration": calibration.to_dict(),
        "videos": len(evaluated),
        "real": int((labels == 0).sum()),
        "fake": int(labels.sum()),
        "folds": fold_details,
    }
    if extra_heads:
        figures["heads"] = {
            name: {key: value for key, value in result.items() if key != "scores"}
            for name, result in per_head.items()
        }
    return figures


def check_cross_validation(options: TrainingOptions, labels: Sequence[int]) -> None:
    """Raise ``ValueError`` when ``options`` cross-validate a set whose videos (``labels``, 0 real,
    1 fake) hold no fake: cross-validation scores held-out real fakes. Callers check before any
    training (``deepwatch train`` before it reads a frame)."""
    if options.cv_folds and not any(label == 1 for label in labels):
        raise ValueError(
            "cross-validation needs fake videos, but the set holds real ones only; with --pseudo-fakes "
            "train with --cv-folds 0, then measure with deepwatch eval on labelled videos"
        )


def train_detector(
    results: Sequence[ExtractedVideo],
    base_state: dict[str, torch.Tensor],
    base_weights: str,
    base_weights_id: str,
    options: TrainingOptions,
    progress: bool = True,
    snapshots: Snapshots | None = None,
    device: torch.device | None = None,
) -> tuple[ScorerCheckpoint, dict[str, Any]]:
    """Cross-validate (if asked), then train the final model on everything; returns it and the figures.

    ``snapshots`` makes every training loop resumable (see ``fit_model``).
    """
    train_from = feature_split(options)
    clips = build_clips(results, base_state, train_from, options, progress=progress, device=device)
    return train_on_clips(
        clips, base_state, base_weights, base_weights_id, options, progress, snapshots, device
    )


def train_on_clips(
    clips: Sequence[Clip],
    base_state: dict[str, torch.Tensor],
    base_weights: str,
    base_weights_id: str,
    options: TrainingOptions,
    progress: bool = True,
    snapshots: Snapshots | None = None,
    device: torch.device | None = None,
) -> tuple[ScorerCheckpoint, dict[str, Any]]:
    """``train_detector`` on clips already built (their features must match the options' split)."""
    train_from = feature_split(options)
    if not clips:
        raise ValueError("no video with a face to train on")
    figures: dict[str, Any] = {}
    check_cross_validation(options, [clip.label for clip in clips if not clip.pseudo_fake_of])
    if options.cv_folds:
        figures = cross_validate_detector(
            clips, base_state, train_from, options, progress=progress, snapshots=snapshots, device=device
        )
        logger.info(
            "cross-validated video AUC %.3f, per method %s",
            figures["video_auc"],
            {k: round(v, 3) for k, v in figures["video_auc_per_method"].items()},
        )
    final_model, model = fit_model(
        clips,
        base_state,
        train_from,
        options,
        options.seed,
        {"main": options.head},
        progress=progress,
        snapshots=snapshots,
        snapshot_prefix="final-",
        device=device,
    )
    final_head = final_model.heads["main"].head
    if "threshold" in figures:
        threshold = float(figures["threshold"])
    else:
        sequences = [s for s in _sequences(model, clips, train_from) if not s.name.endswith("#sbi")]
        windows = score_windows(final_head, sequences, options.head.window_size, 1)
        window_labels = np.concatenate(
            [np.full(len(w), s.label) for w, s in zip(windows, sequences, strict=True)]
        )
        all_windows = np.concatenate(windows)
        # Without cross-validation the threshold comes from the training data itself: optimistic.
        # A false-alarm rate needs real windows only, so a set of real videos (trained on
        # pseudo-fakes, excluded here) gets one too.
        threshold = threshold_at_fpr(window_labels, all_windows, options.threshold_fpr)
    # A detector that cannot reach the target FPR gets a threshold at the top of the range (it
    # then flags almost nothing); the live verdict needs a threshold strictly inside (0, 1).
    figures["threshold_uncapped"] = float(threshold)
    threshold = float(min(max(threshold, THRESHOLD_RANGE[0]), THRESHOLD_RANGE[1]))
    real_clips = [clip for clip in clips if not clip.pseudo_fake_of]
    methods: dict[str, int] = {}
    for clip in clips:
        methods[clip.method] = methods.get(clip.method, 0) + 1
    summary = {
        "videos": len(real_clips),
        "real": sum(clip.label == 0 for clip in real_clips),
        "fake": sum(clip.label == 1 for clip in real_clips),
        "pseudo_fakes": len(clips) - len(real_clips),
        "groups": len({clip.group for clip in clips}),
        "methods": methods,
        "sources": sorted({clip.source for clip in clips}),
        "crops_per_video": options.max_crops,
        "options": _options_summary(options),
    }
    head_params = {"input_dim": 512, **options.head.head_params}
    checkpoint = ScorerCheckpoint(
        encoder_weights=base_weights,
        encoder_weights_id=base_weights_id,
        encoder_overrides={name: value.detach().clone() for name, value in final_model.overrides.items()},
        head_type=options.head.head_type,
        head_params=head_params,
        head_state={name: value.detach().clone() for name, value in final_head.state_dict().items()},
        window_size=options.head.window_size,
        sample_rate_hz=options.sample_rate_hz,
        threshold=threshold,
        threshold_fpr=options.threshold_fpr,
        training_summary=summary,
        metrics={key: value for key, value in figures.items() if key != "scores"},
        crop=crop_settings(options.crop),
    )
    if "calibration" in figures:
        # Thresholds from the out-of-fold scores of real videos (held out by group).
        checkpoint = checkpoint.with_calibration(Calibration.from_dict(figures["calibration"]))
    return checkpoint, figures


def _options_summary(options: TrainingOptions) -> dict[str, Any]:
    return asdict(options)
