"""Training of sequence heads on per-video embedding sequences, and group splits.

Everything here works on plain arrays (``VideoSequence``); turning videos into embeddings is
``stream.training.extract``'s job, and the recipe that cross-validates a whole detector is
``stream.training.recipe``. Splits are always by identity ``group``: one person never appears on
both sides of a split.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from engine.heads import build_head
from engine.metrics import roc_auc
from engine.snapshots import Snapshots, random_state, restore_random_state

logger = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class VideoSequence:
    """The sampled embeddings of one face track of one video.

    Attributes:
        name: a stable id of the video (e.g. its manifest path).
        label: 1 fake, 0 real.
        group: identity group; never split across train and test.
        embeddings: N x D float32, in time order, sampled at the training sample rate.
        method: manipulation method ("none" for real; "SBI" for self-blended pseudo-fakes).
        source: where the video comes from (e.g. the repository it ships with).
    """

    name: str
    label: int
    group: str
    embeddings: np.ndarray
    method: str = "none"
    source: str = ""

    def __post_init__(self) -> None:
        if self.label not in (0, 1):
            raise ValueError(f"label must be 0 (real) or 1 (fake), got {self.label!r} for {self.name}")
        if self.embeddings.ndim != 2 or len(self.embeddings) == 0:
            raise ValueError(
                f"embeddings of {self.name} must be N x D with N >= 1, got {self.embeddings.shape}"
            )


@dataclass(frozen=True)
class HeadTrainingConfig:
    """How a sequence head is trained.

    Attributes:
        head_type, head_params: which head (``engine.heads.HEADS``) and its parameters.
        window_size: embeddings per training window (W).
        stride: step between the start of consecutive windows of one video, samples.
        max_epochs: upper bound on epochs; early stopping on validation AUC usually ends sooner.
        windows_per_epoch: windows drawn per epoch, half real and half fake (class balance).
        batch_size: windows per optimiser step.
        learning_rate, weight_decay: Adam settings.
        patience: epochs without a better validation AUC before stopping.
        embedding_noise: std of Gaussian noise added to training embeddings (regularisation).
        seed: seeds sampling, initialisation and dropout.
    """

    head_type: str = "lstm"
    head_params: dict[str, Any] = field(default_factory=dict)
    window_size: int = 16
    stride: int = 4
    max_epochs: int = 30
    windows_per_epoch: int = 512
    batch_size: int = 32
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    patience: int = 6
    embedding_noise: float = 0.01
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("window_size", "stride", "max_epochs", "windows_per_epoch", "batch_size", "patience"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate!r}")
        if self.weight_decay < 0 or self.embedding_noise < 0:
            raise ValueError(
                "weight_decay and embedding_noise must be >= 0, "
                f"got {self.weight_decay!r} and {self.embedding_noise!r}"
            )


@dataclass(frozen=True, eq=False)
class TrainedHead:
    """A trained head and how training went.

    Attributes:
        head: the module (eval mode).
        best_epoch: epoch (1-based) whose weights were kept.
        val_auc: video-level validation AUC at that epoch (NaN without validation data).
        history: per-epoch dicts with loss and validation AUC.
    """

    head: nn.Module
    best_epoch: int
    val_auc: float
    history: list[dict[str, float]]


def seed_everything(seed: int) -> None:
    """Seed numpy and torch so training runs repeat exactly on one machine."""
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_windows(embeddings: np.ndarray, window_size: int, stride: int) -> np.ndarray:
    """All windows of ``window_size`` consecutive rows, ``stride`` apart (K x W x D).

    A sequence shorter than the window is front-padded with its first row, the way a live
    scorer that reports from fewer samples would see a track that just appeared.
    """
    if len(embeddings) < window_size:
        padding = np.repeat(embeddings[:1], window_size - len(embeddings), axis=0)
        embeddings = np.concatenate([padding, embeddings])
    starts = list(range(0, len(embeddings) - window_size + 1, stride))
    if starts[-1] != len(embeddings) - window_size:
        starts.append(len(embeddings) - window_size)
    return np.stack([embeddings[start : start + window_size] for start in starts]).astype(np.float32)


def group_folds(
    groups: Sequence[str], labels: Sequence[int], n_folds: int, seed: int = 0
) -> list[np.ndarray]:
    """Assign every item to one of ``n_folds`` folds by group, spreading fake-holding groups evenly.

    Returns one array of item indices per fold; items of one group are always in one fold.
    """
    groups_array = np.asarray(groups)
    labels_array = np.asarray(labels)
    unique_groups = sorted(set(groups_array.tolist()))
    if n_folds < 2 or n_folds > len(unique_groups):
        raise ValueError(f"n_folds must be in [2, {len(unique_groups)} groups], got {n_folds}")
    rng = np.random.default_rng(seed)
    rng.shuffle(unique_groups)
    # Place groups with fakes first, largest first, each into the fold with fewest fakes so far,
    # then real-only groups into the fold with fewest items: every fold gets both classes.
    sizes = {group: int((groups_array == group).sum()) for group in unique_groups}
    fakes = {group: int(labels_array[groups_array == group].sum()) for group in unique_groups}
    ordered = sorted(unique_groups, key=lambda group: (fakes[group] == 0, -fakes[group], -sizes[group]))
    fold_fakes = np.zeros(n_folds)
    fold_items = np.zeros(n_folds)
    assignment: dict[str, int] = {}
    for group in ordered:
        if fakes[group] > 0:
            fold = int(np.lexsort((fold_items, fold_fakes))[0])
        else:
            fold = int(np.argmin(fold_items))
        assignment[group] = fold
        fold_fakes[fold] += fakes[group]
        fold_items[fold] += sizes[group]
    return [np.nonzero([assignment[group] == fold for group in groups_array])[0] for fold in range(n_folds)]


def split_by_group(
    videos: Sequence[VideoSequence], val_fraction: float, seed: int = 0
) -> tuple[list[VideoSequence], list[VideoSequence]]:
    """Hold out about ``val_fraction`` of the groups (with both classes) for validation."""
    n_folds = max(2, round(1.0 / val_fraction)) if val_fraction > 0 else 0
    groups = [video.group for video in videos]
    if n_folds == 0 or len(set(groups)) < n_folds:
        return list(videos), []
    folds = group_folds(groups, [video.label for video in videos], n_folds, seed)
    held_out = set(folds[0].tolist())
    return (
        [video for i, video in enumerate(videos) if i not in held_out],
        [video for i, video in enumerate(videos) if i in held_out],
    )


def _device_of(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


def score_videos(
    head: nn.Module, videos: Sequence[VideoSequence], window_size: int, stride: int
) -> np.ndarray:
    """Video-level p_fake: the mean of the head's window probabilities over each video."""
    head.eval()
    scores = []
    with torch.inference_mode():
        for video in videos:
            windows = torch.from_numpy(make_windows(video.embeddings, window_size, stride))
            scores.append(float(torch.sigmoid(head(windows.to(_device_of(head)))).mean()))
    return np.asarray(scores)


def score_windows(
    head: nn.Module, videos: Sequence[VideoSequence], window_size: int, stride: int
) -> list[np.ndarray]:
    """Per-window p_fake for each video (one array per video)."""
    head.eval()
    with torch.inference_mode():
        return [
            torch.sigmoid(
                head(
                    torch.from_numpy(make_windows(video.embeddings, window_size, stride)).to(_device_of(head))
                )
            )
            .cpu()
            .numpy()
            for video in videos
        ]


def train_head(
    train_videos: Sequence[VideoSequence],
    val_videos: Sequence[VideoSequence],
    config: HeadTrainingConfig,
    fixed_epochs: int | None = None,
    progress: bool = True,
    snapshots: Snapshots | None = None,
    snapshot_name: str = "head",
    device: torch.device | None = None,
) -> TrainedHead:
    """Train a head with class-balanced window sampling and early stopping on validation video AUC.

    Without validation videos of both classes (or with ``fixed_epochs``) it trains for
    ``fixed_epochs`` (default ``max_epochs``) epochs and keeps the last weights.

    With ``snapshots`` the whole state is saved as ``snapshot_name`` after every epoch, and a
    saved state is continued from: the result equals an uninterrupted run's (same data, config).
    ``device`` is where the head trains (default CPU); the returned head is on the CPU.
    """
    labels = np.array([video.label for video in train_videos])
    if labels.sum() == 0 or labels.sum() == len(labels):
        raise ValueError(
            f"training needs real and fake videos, got {int(labels.sum())} fake of {len(labels)}"
        )
    seed_everything(config.seed)
    rng = np.random.default_rng(config.seed)
    windows = [make_windows(video.embeddings, config.window_size, config.stride) for video in train_videos]
    input_dim = windows[0].shape[2]
    device = device or torch.device("cpu")
    head = build_head(config.head_type, input_dim=input_dim, **config.head_params).to(device)
    optimiser = torch.optim.Adam(head.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    loss_function = nn.BCEWithLogitsLoss()
    val_labels = np.array([video.label for video in val_videos])
    use_validation = fixed_epochs is None and len(val_videos) > 0 and 0 < val_labels.sum() < len(val_labels)
    epochs = fixed_epochs if fixed_epochs is not None else config.max_epochs
    by_class = [np.nonzero(labels == label)[0] for label in (0, 1)]

    best_auc, best_epoch, best_state = -np.inf, epochs, copy.deepcopy(head.state_dict())
    history: list[dict[str, float]] = []
    stale = 0
    first_epoch = 1
    saved = snapshots.load(snapshot_name) if snapshots is not None else None
    if saved is not None:
        head.load_state_dict(saved["head"])
        optimiser.load_state_dict(saved["optimiser"])
        restore_random_state(rng, saved["random"])
        best_auc, best_epoch, best_state = (
            float(saved["best_auc"]),
            int(saved["best_epoch"]),
            saved["best_state"],
        )
        stale, history = int(saved["stale"]), list(saved["history"])
        first_epoch = epochs + 1 if saved["finished"] else int(saved["epoch"]) + 1
        logger.info("%s: resuming after epoch %d", snapshot_name, int(saved["epoch"]))
    bar = tqdm(
        range(first_epoch, epochs + 1),
        desc=f"train {config.head_type}",
        disable=not progress,
        leave=False,
        initial=first_epoch - 1,
        total=epochs,
    )
    for epoch in bar:
        head.train()
        # Class balance: each window picks a class with equal odds, then a video, then a window.
        classes = rng.integers(0, 2, config.windows_per_epoch)
        video_ids = np.array([rng.choice(by_class[c]) for c in classes])
        batch_windows = np.stack([windows[v][rng.integers(len(windows[v]))] for v in video_ids])
        targets = labels[video_ids].astype(np.float32)
        losses = []
        for start in range(0, len(batch_windows), config.batch_size):
            x = torch.from_numpy(batch_windows[start : start + config.batch_size])
            if config.embedding_noise > 0:
                x = x + config.embedding_noise * torch.randn_like(x)
            x = x.to(device)
            y = torch.from_numpy(targets[start : start + config.batch_size]).to(device)
            optimiser.zero_grad()
            loss = loss_function(head(x), y)
            loss.backward()
            optimiser.step()
            losses.append(float(loss.detach()))
        record = {"epoch": float(epoch), "loss": float(np.mean(losses))}
        if use_validation:
            val_auc = roc_auc(val_labels, score_videos(head, val_videos, config.window_size, config.stride))
            record["val_auc"] = val_auc
            if val_auc > best_auc:
                best_auc, best_epoch, best_state, stale = val_auc, epoch, copy.deepcopy(head.state_dict()), 0
            else:
                stale += 1
        history.append(record)
        bar.set_postfix({key: round(value, 3) for key, value in record.items() if key != "epoch"})
        stop = use_validation and stale >= config.patience
        if snapshots is not None:
            snapshots.save(
                snapshot_name,
                {
                    "epoch": epoch,
                    "finished": stop or epoch == epochs,
                    "head": head.state_dict(),
                    "optimiser": optimiser.state_dict(),
                    "random": random_state(rng),
                    "best_auc": float(best_auc),
                    "best_epoch": best_epoch,
                    "best_state": best_state,
                    "stale": stale,
                    "history": history,
                },
            )
        if stop:
            break
    if use_validation:
        head.load_state_dict(best_state)
    else:
        best_auc = float("nan")
    logger.info("trained %s head: best epoch %d, validation AUC %.3f", config.head_type, best_epoch, best_auc)
    return TrainedHead(
        head=head.cpu().eval(), best_epoch=best_epoch, val_auc=float(best_auc), history=history
    )


def method_aucs(videos: Sequence[VideoSequence], scores: np.ndarray) -> dict[str, float]:
    """Per manipulation method: AUC of that method's fake videos against every real video."""
    labels = np.array([video.label for video in videos])
    methods = np.array([video.method for video in videos])
    result = {}
    for method in sorted(set(methods[labels == 1].tolist())):
        keep = (labels == 0) | (methods == method)
        if (labels[keep] == 0).any():
            result[method] = roc_auc(labels[keep], scores[keep])
    return result
