"""Training the identity-consistency head (``engine.heads.IdentityConsistencyHead``) on real faces only.

Two stages, both on cached ``engine.evidence`` features (inner and outer embeddings), so no
encoder runs while training:

1. ``fit_projections``: photos of many people. For a real photo the inner and outer faces belong
   to one person; for a cross-person blend (``stream.training.blends``) they do not. The
   projections learn both from a contrastive loss over the real photos of a batch (photo i's
   inner face must match photo i's outer face better than any other person's, ICT's idea) and
   from a binary loss on reals versus blends, which also fits the frame logit.
2. ``fit_sequence``: windows of clips (real clips and their per-clip pseudo-fakes) train the
   LSTM on top of the frozen frame features.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from engine.heads import IdentityConsistencyHead

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProjectionTraining:
    """Settings of stage 1.

    Attributes:
        steps: optimiser steps.
        batch_size: real photos per step (as many blends join them).
        learning_rate: Adam learning rate.
        weight_decay: Adam weight decay.
        contrastive_weight: weight of the contrastive loss beside the binary one.
        temperature: softmax temperature of the contrastive loss.
        seed: seed of the batches and the initial weights.
    """

    steps: int = 1500
    batch_size: int = 128
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    contrastive_weight: float = 0.5
    temperature: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature!r}")


def _check_features(name: str, features: np.ndarray) -> torch.Tensor:
    array = np.asarray(features, np.float32)
    if array.ndim != 2 or array.shape[1] != 1024 or len(array) == 0:
        raise ValueError(f"{name} must be N x 1024 evidence features with N >= 1, got {array.shape}")
    return torch.from_numpy(array)


def fit_projections(
    head: IdentityConsistencyHead,
    real: np.ndarray,
    fake: np.ndarray,
    settings: ProjectionTraining | None = None,
) -> list[float]:
    """Stage 1: train the head's projections and frame logit on photos; returns the loss per step.

    ``real`` holds the features of real photos, one person each (the contrastive loss treats
    the other rows of a batch as other people), ``fake`` those of cross-person blends.
    """
    settings = settings or ProjectionTraining()
    real_t, fake_t = _check_features("real", real), _check_features("fake", fake)
    generator = torch.Generator().manual_seed(settings.seed)
    torch.manual_seed(settings.seed)
    parameters = [
        *head.project_inner.parameters(),
        *head.project_outer.parameters(),
        *head.frame.parameters(),
    ]
    optimiser = torch.optim.Adam(parameters, lr=settings.learning_rate, weight_decay=settings.weight_decay)
    binary = nn.BCEWithLogitsLoss()
    losses = []
    head.train()
    for _ in range(settings.steps):
        real_batch = real_t[torch.randint(len(real_t), (settings.batch_size,), generator=generator)]
        fake_batch = fake_t[torch.randint(len(fake_t), (settings.batch_size,), generator=generator)]
        logits = head.frame_logits(torch.cat([real_batch, fake_batch]))
        labels = torch.cat([torch.zeros(settings.batch_size), torch.ones(settings.batch_size)])
        loss = binary(logits, labels)
        if settings.contrastive_weight > 0:
            inner, outer = head.projected(real_batch)
            similarity = inner @ outer.T / settings.temperature
            targets = torch.arange(len(real_batch))
            contrastive = (
                nn.functional.cross_entropy(similarity, targets)
                + nn.functional.cross_entropy(similarity.T, targets)
            ) / 2
            loss = loss + settings.contrastive_weight * contrastive
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(float(loss))
    head.eval()
    return losses


@dataclass(frozen=True)
class SequenceTraining:
    """Settings of stage 2: ``steps`` Adam steps of ``batch_size`` windows at ``learning_rate``."""

    steps: int = 400
    batch_size: int = 64
    learning_rate: float = 3e-3
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


def clip_windows(features: np.ndarray, window_size: int) -> np.ndarray:
    """All windows (stride 1) of one clip's T x D features: (T - W + 1) x W x D (none if T < W)."""
    features = np.asarray(features, np.float32)
    count = len(features) - window_size + 1
    if count <= 0:
        return np.zeros((0, window_size, features.shape[1]), np.float32)
    return np.stack([features[start : start + window_size] for start in range(count)])


def fit_sequence(
    head: IdentityConsistencyHead,
    windows: np.ndarray,
    labels: np.ndarray,
    settings: SequenceTraining | None = None,
) -> list[float]:
    """Stage 2: train the LSTM (projections and frame logit frozen) on B x W x 1024 windows.

    Real and fake windows are drawn equally often whatever their counts. Returns the loss per step.
    """
    settings = settings or SequenceTraining()
    windows_t = torch.from_numpy(np.asarray(windows, np.float32))
    labels_t = torch.from_numpy(np.asarray(labels, np.float32))
    if windows_t.ndim != 3 or len(windows_t) != len(labels_t):
        raise ValueError(f"windows must be B x W x 1024 with one label each, got {tuple(windows_t.shape)}")
    classes = [torch.nonzero(labels_t == value).squeeze(1) for value in (0.0, 1.0)]
    if any(len(members) == 0 for members in classes):
        raise ValueError("stage 2 needs real and fake windows")
    generator = torch.Generator().manual_seed(settings.seed)
    torch.manual_seed(settings.seed)
    with torch.no_grad():
        features = head.frame_features(windows_t)
        frame_mean = head.frame(features).squeeze(-1).mean(dim=1)
    optimiser = torch.optim.Adam(
        [*head.lstm.parameters(), *head.sequence.parameters()], lr=settings.learning_rate
    )
    binary = nn.BCEWithLogitsLoss()
    half = max(1, settings.batch_size // 2)
    losses = []
    head.train()
    for _ in range(settings.steps):
        picks = torch.cat(
            [members[torch.randint(len(members), (half,), generator=generator)] for members in classes]
        )
        output, _ = head.lstm(features[picks])
        logits = frame_mean[picks] + head.sequence(output[:, -1]).squeeze(1)
        loss = binary(logits, labels_t[picks])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(float(loss))
    head.eval()
    return losses
