"""Fine-tuning InceptionResNetV1 as a real/fake frame classifier, so its embeddings carry artefacts.

The casia-webface encoder is split at ``train_from``: the frozen lower part runs once per crop
(and per pseudo-fake variant) and its feature maps are cached, so training only runs the upper
blocks. The classifier is a linear layer on the L2-normalised embedding, so the fake evidence
ends up in the embedding direction that the sequence head reads. Batch norm keeps its
casia-webface statistics (the model stays in eval mode): with a few thousand crops, re-estimating
them would only add noise. Only the trained blocks' parameters change and are stored.

With ``FinetuneConfig.train_low`` the stem through ``repeat_1`` trains as well, together with the
upper blocks; the cache then holds the pixels (``FinetuneConfig.feature_split``) and every step
runs the whole network, the frozen middle only passing gradients.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.nn import functional
from tqdm.auto import tqdm

from engine.devices import training_autocast
from engine.encoder_stages import LOW_STAGES, STAGES, TRAINABLE_FROM
from engine.inception_resnet_v1 import InceptionResnetV1
from engine.metrics import roc_auc
from engine.snapshots import Snapshots, random_state, restore_random_state

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FinetuneConfig:
    """How the encoder is fine-tuned.

    Attributes:
        train_from: first stage that trains (a ``TRAINABLE_FROM`` name); everything before it is
            frozen and its output cached.
        train_low: also train the stem through ``repeat_1`` (``LOW_STAGES``); the stages between
            them and ``train_from`` stay frozen but pass gradients. The cached features are then
            the pixels, and every step runs the whole network forward and backward.
        max_epochs: upper bound; early stopping on validation video AUC usually ends sooner.
        steps_per_epoch: optimiser steps per epoch.
        batch_size: crops per step, half real and half fake.
        learning_rate: Adam rate of the encoder blocks; the new classifier uses 10 times this.
        weight_decay: Adam weight decay.
        patience: epochs without a better validation AUC before stopping.
        seed: seeds sampling and initialisation.
    """

    train_from: str = "repeat_3"
    train_low: bool = False
    max_epochs: int = 8
    steps_per_epoch: int = 40
    batch_size: int = 32
    learning_rate: float = 1e-4
    weight_decay: float = 1e-4
    patience: int = 3
    seed: int = 0

    def __post_init__(self) -> None:
        if self.train_from not in TRAINABLE_FROM:
            raise ValueError(f"train_from must be one of {TRAINABLE_FROM}, got {self.train_from!r}")
        for name in ("max_epochs", "steps_per_epoch", "batch_size", "patience"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate!r}")

    @property
    def feature_split(self) -> str:
        """Where cached features are taken: the pixels when the low stages train."""
        return STAGES[0] if self.train_low else self.train_from


@dataclass(frozen=True, eq=False)
class FinetuneResult:
    """Fine-tuned encoder parameters and how training went.

    Attributes:
        overrides: the changed encoder parameters (facenet-pytorch names), float32.
        classifier: the frame classifier's state (weight 1 x 512, bias 1).
        best_epoch: the epoch whose weights were kept (0 = unchanged base weights).
        val_auc: validation video AUC of the kept weights (NaN without validation data).
        history: per-epoch loss and validation AUC.
    """

    overrides: dict[str, torch.Tensor]
    classifier: dict[str, torch.Tensor]
    best_epoch: int
    val_auc: float
    history: list[dict[str, float]] = field(default_factory=list)


def build_model(
    base_state: dict[str, torch.Tensor], overrides: dict[str, torch.Tensor] | None = None
) -> InceptionResnetV1:
    """InceptionResNetV1 with the base weights and optional overrides, in eval mode."""
    model = InceptionResnetV1()
    model.load_state_dict(base_state)
    if overrides:
        state = model.state_dict()
        unknown = set(overrides) - set(state)
        if unknown:
            raise ValueError(f"encoder overrides name unknown parameters: {sorted(unknown)[:5]}")
        state.update({name: value.to(state[name].dtype) for name, value in overrides.items()})
        model.load_state_dict(state)
    return model.eval()


def _lower_stages(train_from: str) -> tuple[str, ...]:
    if train_from == "last_linear":
        return STAGES
    return STAGES[: STAGES.index(train_from)]


def upper_parameter_names(model: InceptionResnetV1, train_from: str, train_low: bool = False) -> list[str]:
    """Names of the parameters that fine-tuning from ``train_from`` (and the low stages) changes."""
    lower = set(_lower_stages(train_from))
    if train_low:
        lower -= set(LOW_STAGES)
    return [name for name, _ in model.named_parameters() if name.split(".", 1)[0] not in lower]


def lower_features(
    model: InceptionResnetV1, pixels: np.ndarray, train_from: str, batch_size: int = 32
) -> torch.Tensor:
    """Run the frozen lower part on N x 3 x 160 x 160 standardised pixels; fp16 feature maps."""
    stages = [getattr(model, name) for name in _lower_stages(train_from)]
    device = next(model.parameters()).device
    outputs = []
    with torch.inference_mode():
        for start in range(0, len(pixels), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(pixels[start : start + batch_size])).to(device)
            for stage in stages:
                x = stage(x)
            outputs.append(x.half().cpu())
    return torch.cat(outputs) if outputs else torch.zeros(0)


def advance_features(
    model: InceptionResnetV1, features: torch.Tensor, from_split: str, to_split: str, batch_size: int = 64
) -> torch.Tensor:
    """Run the frozen stages between two split points on cached features (fp16 in, fp16 out).

    Lets one cache of low-level features serve fine-tuning from any higher split point.
    """
    start, stop = len(_lower_stages(from_split)), len(_lower_stages(to_split))
    if stop < start:
        raise ValueError(f"to_split {to_split!r} must not come before from_split {from_split!r}")
    stages = [getattr(model, name) for name in STAGES[start:stop]]
    outputs = []
    with torch.inference_mode():
        for index in range(0, len(features), batch_size):
            x = features[index : index + batch_size].float()
            for stage in stages:
                x = stage(x)
            outputs.append(x.half())
    return torch.cat(outputs) if outputs else features


def upper_embeddings(model: InceptionResnetV1, features: torch.Tensor, train_from: str) -> torch.Tensor:
    """L2-normalised N x 512 embeddings from lower feature maps (gradients flow when enabled)."""
    x = features.float()
    for name in STAGES[len(_lower_stages(train_from)) :]:
        x = getattr(model, name)(x)
    x = model.avgpool_1a(x).flatten(1)
    x = model.last_bn(model.last_linear(model.dropout(x)))
    return functional.normalize(x, p=2.0, dim=1)


def embed_features(
    model: InceptionResnetV1, features: torch.Tensor, train_from: str, batch_size: int = 256
) -> np.ndarray:
    """Embeddings of cached lower feature maps, N x 512 float32."""
    model.eval()
    device = next(model.parameters()).device
    with torch.inference_mode():
        chunks = [
            upper_embeddings(model, features[start : start + batch_size].to(device), train_from).float().cpu()
            for start in range(0, len(features), batch_size)
        ]
    return torch.cat(chunks).numpy() if chunks else np.zeros((0, 512), np.float32)


def finetune_encoder(
    model: InceptionResnetV1,
    features: torch.Tensor,
    labels: np.ndarray,
    video_ids: np.ndarray,
    train_mask: np.ndarray,
    config: FinetuneConfig,
    progress: bool = True,
    snapshots: Snapshots | None = None,
    snapshot_name: str = "finetune",
    device: torch.device | None = None,
) -> FinetuneResult:
    """Fine-tune the upper blocks on cached lower features; early stopping on validation video AUC.

    With ``snapshots`` the whole state is saved as ``snapshot_name`` after every epoch and a
    saved state is continued from (see ``engine.snapshots``). ``device`` is where the steps run
    (default CPU; bf16 autocast where ``engine.devices.bf16_worthwhile``); the model ends on the CPU.

    Args:
        model: the encoder with its base weights; modified in place (left at the kept weights).
        features: N lower feature maps from ``lower_features`` at ``config.feature_split``.
        labels: (N,) 1 fake, 0 real, per crop.
        video_ids: (N,) which video each crop comes from (validation scores videos by the mean
            frame probability).
        train_mask: (N,) True for training crops; the others are validation crops (their videos'
            groups must be disjoint from the training ones; the caller splits by group).
        config: fine-tuning settings.
    """
    labels = np.asarray(labels).astype(np.int64)
    train_indices = [np.nonzero(train_mask & (labels == label))[0] for label in (0, 1)]
    if any(len(indices) == 0 for indices in train_indices):
        raise ValueError("fine-tuning needs real and fake training crops")
    val_indices = np.nonzero(~train_mask)[0]
    val_video_labels = _video_labels(labels[val_indices], video_ids[val_indices])
    use_validation = len(val_video_labels) > 0 and 0 < val_video_labels.sum() < len(val_video_labels)

    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    names = upper_parameter_names(model, config.train_from, config.train_low)
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(name in names)
    classifier = nn.Linear(512, 1)
    # The embedding is unit-length, so a logit scale is learnt with the classifier.
    nn.init.zeros_(classifier.weight)
    nn.init.zeros_(classifier.bias)
    device = device or torch.device("cpu")
    model.to(device)
    classifier.to(device)
    trainable = [parameter for name, parameter in model.named_parameters() if name in names]
    optimiser = torch.optim.Adam(
        [
            {"params": trainable, "lr": config.learning_rate},
            {"params": classifier.parameters(), "lr": config.learning_rate * 10},
        ],
        weight_decay=config.weight_decay,
    )
    best = (
        _val_auc(model, classifier, features, labels, video_ids, val_indices, config)
        if use_validation
        else -np.inf,
        0,
    )
    best_state = _snapshot(model, names, classifier)
    history: list[dict[str, float]] = [{"epoch": 0.0, "val_auc": float(best[0])}]
    stale = 0
    first_epoch = 1
    saved = snapshots.load(snapshot_name) if snapshots is not None else None
    if saved is not None:
        model.load_state_dict({**model.state_dict(), **saved["trained"]})
        classifier.load_state_dict(saved["classifier"])
        optimiser.load_state_dict(saved["optimiser"])
        restore_random_state(rng, saved["random"])
        best = (float(saved["best_auc"]), int(saved["best_epoch"]))
        best_state = (saved["best_trained"], saved["best_classifier"])
        stale, history = int(saved["stale"]), list(saved["history"])
        first_epoch = config.max_epochs + 1 if saved["finished"] else int(saved["epoch"]) + 1
        logger.info("%s: resuming after epoch %d", snapshot_name, int(saved["epoch"]))
    half = config.batch_size // 2
    bar = tqdm(
        range(first_epoch, config.max_epochs + 1),
        desc=f"fine-tune from {config.train_from}",
        disable=not progress,
        initial=first_epoch - 1,
        total=config.max_epochs,
    )
    for epoch in bar:
        model.eval()
        losses = []
        for _ in range(config.steps_per_epoch):
            batch = np.concatenate([rng.choice(indices, half) for indices in train_indices])
            targets = torch.from_numpy(labels[batch].astype(np.float32)).to(device)
            with training_autocast(device):
                embeddings = upper_embeddings(model, features[batch].to(device), config.feature_split)
                logits = classifier(embeddings).squeeze(1).float() * 10.0
            loss = functional.binary_cross_entropy_with_logits(logits, targets)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            losses.append(float(loss.detach()))
        record = {"epoch": float(epoch), "loss": float(np.mean(losses))}
        if use_validation:
            record["val_auc"] = _val_auc(model, classifier, features, labels, video_ids, val_indices, config)
            if record["val_auc"] > best[0]:
                best, best_state, stale = (record["val_auc"], epoch), _snapshot(model, names, classifier), 0
            else:
                stale += 1
        history.append(record)
        bar.set_postfix({key: round(value, 3) for key, value in record.items() if key != "epoch"})
        stop = use_validation and stale >= config.patience
        if snapshots is not None:
            trained, classifier_now = _snapshot(model, names, classifier)
            snapshots.save(
                snapshot_name,
                {
                    "epoch": epoch,
                    "finished": stop or epoch == config.max_epochs,
                    "trained": trained,
                    "classifier": classifier_now,
                    "optimiser": optimiser.state_dict(),
                    "random": random_state(rng),
                    "best_auc": float(best[0]),
                    "best_epoch": int(best[1]),
                    "best_trained": best_state[0],
                    "best_classifier": best_state[1],
                    "stale": stale,
                    "history": history,
                },
            )
        if stop:
            break
    if not use_validation:
        best, best_state = (float("nan"), config.max_epochs), _snapshot(model, names, classifier)
    overrides, classifier_state = best_state
    model.cpu()
    model.load_state_dict({**model.state_dict(), **overrides})
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    logger.info(
        "fine-tuned from %s: kept epoch %d, validation video AUC %.3f", config.train_from, best[1], best[0]
    )
    return FinetuneResult(overrides, classifier_state, int(best[1]), float(best[0]), history)


def frame_probabilities(
    model: InceptionResnetV1,
    classifier_state: dict[str, torch.Tensor],
    features: torch.Tensor,
    train_from: str,
) -> np.ndarray:
    """Per-crop p_fake of the fine-tuned frame classifier."""
    classifier = nn.Linear(512, 1)
    classifier.load_state_dict(classifier_state)
    embeddings = torch.from_numpy(embed_features(model, features, train_from))
    with torch.inference_mode():
        return torch.sigmoid(classifier(embeddings).squeeze(1) * 10.0).numpy()


def _snapshot(
    model: InceptionResnetV1, names: Sequence[str], classifier: nn.Module
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    state = model.state_dict()
    return (
        {name: state[name].detach().cpu().clone() for name in names},
        {name: value.detach().cpu().clone() for name, value in classifier.state_dict().items()},
    )


def _video_labels(labels: np.ndarray, video_ids: np.ndarray) -> np.ndarray:
    return (
        np.array([labels[video_ids == video].max() for video in np.unique(video_ids)])
        if len(labels)
        else labels
    )


def _val_auc(
    model: InceptionResnetV1,
    classifier: nn.Module,
    features: torch.Tensor,
    labels: np.ndarray,
    video_ids: np.ndarray,
    indices: np.ndarray,
    config: FinetuneConfig,
) -> float:
    embeddings = torch.from_numpy(embed_features(model, features[indices], config.feature_split))
    with torch.inference_mode():
        probabilities = (
            torch.sigmoid(classifier(embeddings.to(next(classifier.parameters()).device)).squeeze(1))
            .cpu()
            .numpy()
        )
    videos = video_ids[indices]
    unique = np.unique(videos)
    video_scores = np.array([probabilities[videos == video].mean() for video in unique])
    video_labels = np.array([labels[indices][videos == video].max() for video in unique])
    return roc_auc(video_labels, video_scores)
