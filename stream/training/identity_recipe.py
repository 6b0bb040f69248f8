"""The identity-evidence recipe: real faces in, a calibrated ``identity`` checkpoint out.

No fake video is ever used. The steps:

1. Photo pseudo-fakes (``evidence_data.photo_evidence``): real photos of many people and
   cross-person blends onto them, as identity evidence features.
2. Clip pseudo-fakes (``evidence_data.clip_evidence``): real videos, extracted with the live
   per-frame step, and per-clip swaps and self-blends of them.
3. Training (``identity``): stage 1 projections on the photos, stage 2 the LSTM on the clips;
   ``stages`` may skip either (with no stage the head is the training-free identity score:
   the raw disagreement of inner and outer face, mean over the window).
4. Calibration on real faces only (``engine.calibration``): windows of the held-out real clips and
   held-out real photos (a photo is a still face: a window of W copies), grouped by kind of
   face (``fairness_group``) so that each measured group is held to the stated rate.

The figure that goes with a model comes from ``deepwatch eval`` on labelled videos it never
saw; ``validated_auc``/``auc_protocol`` record it in the checkpoint.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from engine.calibration import MIN_GROUP_TRACKS, Calibration, calibrate
from engine.checkpoint import ScorerCheckpoint
from engine.heads import IdentityConsistencyHead
from stream.training.evidence_data import ClipEvidence, PhotoEvidence
from stream.training.extract import crop_settings
from stream.training.identity import (
    ProjectionTraining,
    SequenceTraining,
    clip_windows,
    fit_projections,
    fit_sequence,
)
from tracking.config import CropConfig

logger = logging.getLogger(__name__)

STAGES = ("projections", "sequence")
# Frame logit of the training-free head: -TRAINING_FREE_SCALE * cos(inner, outer) + bias. The bias
# puts p_fake 0.5 at the cosine that only TRAINING_FREE_REAL_TAIL of the training photos' real faces
# fall below, so a typical real face reads well under 0.5 (the median real photo near 0.15) before
# calibration sets the decision thresholds.
TRAINING_FREE_SCALE = 8.0
TRAINING_FREE_REAL_TAIL = 0.05


@dataclass(frozen=True)
class IdentityRecipe:
    """Settings of the recipe.

    Attributes:
        stages: which of ``STAGES`` to train (empty: the training-free identity score).
        window_size: samples per window (W).
        sample_rate_hz: rate of the windows' samples, Hz (clip features are taken at this rate).
        holdout_fraction: share of photo people and of clip groups kept out of training for
            calibration.
        projection, sequence: the two stages' settings.
        seed: seed of the split.
    """

    stages: tuple[str, ...] = ()
    window_size: int = 8
    sample_rate_hz: float = 4.0
    holdout_fraction: float = 0.25
    projection: ProjectionTraining = field(default_factory=ProjectionTraining)
    sequence: SequenceTraining = field(default_factory=SequenceTraining)
    seed: int = 0

    def __post_init__(self) -> None:
        unknown = set(self.stages) - set(STAGES)
        if unknown:
            raise ValueError(f"stages must be among {STAGES}, got {sorted(unknown)}")
        if not isinstance(self.window_size, int) or self.window_size < 1:
            raise ValueError(f"window_size must be an integer >= 1, got {self.window_size!r}")
        if not 0.0 < self.holdout_fraction < 1.0:
            raise ValueError(f"holdout_fraction must be in (0, 1), got {self.holdout_fraction!r}")


def split_groups(groups: Sequence[str], fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of the rows whose group is held out; a group is never on both sides.

    At least one group is held out and at least one kept (when there are two or more).
    """
    names = sorted(set(groups))
    if len(names) < 2:
        raise ValueError(f"a held-out split needs at least 2 groups, got {len(names)}")
    rng = np.random.default_rng(seed)
    count = min(len(names) - 1, max(1, round(fraction * len(names))))
    held = set(rng.choice(names, count, replace=False).tolist())
    return np.array([group in held for group in groups])


def split_photo_groups(groups: Sequence[str], fraction: float, seed: int) -> np.ndarray:
    """``split_groups`` within each kind of face (``fairness_group``), small kinds held out more.

    Each kind holds out ``fraction`` of its people, but at least half of them up to
    ``MIN_GROUP_TRACKS``, so that a kind that is rare in the photos still has enough held-out
    faces for its own thresholds (``engine.calibration``). A person is never on both sides.
    """
    kinds = np.array([fairness_group(group) for group in groups])
    persons = np.asarray(groups)
    held = np.zeros(len(persons), bool)
    for number, kind in enumerate(sorted(set(kinds))):
        rows = kinds == kind
        people = sorted(set(persons[rows].tolist()))
        if len(people) < 2:
            continue
        wanted = max(fraction * len(people), min(MIN_GROUP_TRACKS, len(people) // 2))
        held[rows] = split_groups(persons[rows].tolist(), wanted / len(people), seed + number)
    return held


def _training_free_head(real_photos: np.ndarray) -> IdentityConsistencyHead:
    head = IdentityConsistencyHead()
    cosine = np.sum(real_photos[:, :512] * real_photos[:, 512:], axis=1)
    with torch.no_grad():
        head.frame.weight.copy_(torch.tensor([[-TRAINING_FREE_SCALE, 0.0]]))
        head.frame.bias.fill_(float(TRAINING_FREE_SCALE * np.quantile(cosine, TRAINING_FREE_REAL_TAIL)))
    return head.eval()


def window_scores(head: torch.nn.Module, features: np.ndarray, window_size: int) -> np.ndarray:
    """p_fake of every window (stride 1) of one track's T x 1024 features; one window if T < W."""
    windows = clip_windows(features, window_size)
    if len(windows) == 0:
        windows = np.asarray(features, np.float32)[None]
    with torch.inference_mode():
        return torch.sigmoid(head(torch.from_numpy(windows))).numpy()


def train_identity(
    photos: PhotoEvidence,
    clips: ClipEvidence,
    recipe: IdentityRecipe,
    encoder_weights: str,
    encoder_weights_id: str,
    crop: CropConfig | None = None,
    validated_auc: float = float("nan"),
    auc_protocol: str = "not validated",
) -> tuple[ScorerCheckpoint, dict[str, Any]]:
    """Train (the chosen stages), calibrate on held-out reals, and return the checkpoint and a report."""
    crop = crop or CropConfig()
    held_photos = split_photo_groups(photos.groups.tolist(), recipe.holdout_fraction, recipe.seed)
    held_clips = split_groups(clips.groups, recipe.holdout_fraction, recipe.seed)
    train_real, train_fake = photos.real[~held_photos], photos.fake[~held_photos]
    report: dict[str, Any] = {
        "photos": {"train": int((~held_photos).sum()), "held_out": int(held_photos.sum()), **photos.report},
        "clips": {
            "train": int((~held_clips).sum()),
            "held_out": int(held_clips.sum()),
            "real_held_out": int((held_clips & (clips.labels == 0)).sum()),
        },
        "stages": list(recipe.stages),
    }
    # The head's initial weights come from torch's generator: seed it, so a run is repeatable.
    torch.manual_seed(recipe.seed)
    if "projections" in recipe.stages:
        head = IdentityConsistencyHead()
        losses = fit_projections(head, train_real, train_fake, recipe.projection)
        report["projection_loss_last100"] = float(np.mean(losses[-100:]))
    else:
        head = _training_free_head(train_real)
    if "sequence" in recipe.stages:
        windows, labels = [], []
        for features, label, held in zip(clips.features, clips.labels, held_clips, strict=True):
            if held:
                continue
            made = clip_windows(features, recipe.window_size)
            windows.append(made)
            labels.extend([int(label)] * len(made))
        if not windows:
            raise ValueError("no training clip is long enough for one window")
        losses = fit_sequence(head, np.concatenate(windows), np.asarray(labels), recipe.sequence)
        report["sequence_loss_last50"] = float(np.mean(losses[-50:]))
    head.eval()
    calibration = calibrate_head(
        head,
        photos.real[held_photos],
        [fairness_group(group) for group in photos.groups[held_photos]],
        clips,
        held_clips,
        recipe,
        validated_auc,
        auc_protocol,
    )
    report["calibration"] = calibration.to_dict()
    report["held_out_pseudo_fake_auc"] = _held_out_auc(head, clips, held_clips, recipe.window_size)
    checkpoint = ScorerCheckpoint(
        encoder_weights=encoder_weights,
        encoder_overrides={},
        encoder_weights_id=encoder_weights_id,
        head_type="identity",
        head_params={},
        head_state={name: value.detach().clone() for name, value in head.state_dict().items()},
        window_size=recipe.window_size,
        sample_rate_hz=recipe.sample_rate_hz,
        threshold=calibration.track[0.05],
        threshold_fpr=0.05,
        training_summary={
            "recipe": "identity evidence, trained on real faces and pseudo-fakes only (no real fake)",
            "photos": report["photos"],
            "clips": report["clips"],
            "stages": list(recipe.stages),
            "settings": asdict(recipe),
        },
        metrics={"validated_auc": validated_auc, "auc_protocol": auc_protocol},
        crop=crop_settings(crop),
        calibration=calibration,
    )
    return checkpoint, report


def fairness_group(person: str) -> str:
    """The kind of face a photo's person group stands for, for per-group thresholds.

    UTKFace names carry ``age_gender_race_date`` (race 0 white, 1 black, 2 Asian, 3 Indian,
    4 other); other photo sets are one group each, named by the part before ":" (All-Age-Faces
    is mostly East Asian, the American Multiracial Face Database mixed); person names without a
    set prefix are all one group, "photos".
    """
    source, colon, name = str(person).partition(":")
    if not colon:
        return "photos"
    if source == "utkface":
        fields = name.split("_")
        race = fields[2] if len(fields) >= 4 else ""
        return f"utkface:{UTKFACE_RACES.get(race, 'unlabelled')}"
    return source


UTKFACE_RACES = {"0": "white", "1": "black", "2": "asian", "3": "indian", "4": "other"}


def calibrate_head(
    head: torch.nn.Module,
    held_real_photos: np.ndarray,
    photo_groups: list[str],
    clips: ClipEvidence,
    held_clips: np.ndarray,
    recipe: IdentityRecipe,
    validated_auc: float,
    auc_protocol: str,
) -> Calibration:
    """Thresholds from held-out real clips and photos, each measured group held to the rate."""
    tracks, groups = [], []
    for features, label, held in zip(clips.features, clips.labels, held_clips, strict=True):
        if held and label == 0:
            tracks.append(window_scores(head, features, recipe.window_size))
            groups.append("clips")
    # A held-out photo is a still face: one window of W copies of its features.
    for features, group in zip(held_real_photos, photo_groups, strict=True):
        tracks.append(
            window_scores(head, np.repeat(features[None], recipe.window_size, axis=0), recipe.window_size)
        )
        groups.append(group)
    if not tracks:
        raise ValueError("calibration needs held-out real clips or photos, got none")
    return calibrate(tracks, validated_auc, auc_protocol, groups=groups)


def _held_out_auc(head: torch.nn.Module, clips: ClipEvidence, held: np.ndarray, window_size: int) -> float:
    from engine.metrics import roc_auc

    labels, scores = [], []
    for features, label, is_held in zip(clips.features, clips.labels, held, strict=True):
        if is_held:
            labels.append(int(label))
            scores.append(float(window_scores(head, features, window_size).mean()))
    if len(set(labels)) < 2:
        return float("nan")
    return float(roc_auc(np.asarray(labels), np.asarray(scores)))
