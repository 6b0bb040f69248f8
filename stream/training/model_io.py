"""Opening the encoder that goes with a scorer checkpoint, for extraction, training and evaluation."""

from __future__ import annotations

import logging
from typing import Any

import torch

logger = logging.getLogger(__name__)


def open_encoder(
    weights: str, checkpoint_path: str | None, backend: str = "auto"
) -> tuple[Any, dict[str, torch.Tensor]]:
    """The encoder (base ``weights`` plus the checkpoint's fine-tuned layers, if a checkpoint is given).

    Returns ``(encoder, overrides)``; ``overrides`` is empty for a frozen encoder. A checkpoint
    trained on other base weights than ``weights`` is refused (``CheckpointError`` naming both).
    """
    import engine

    overrides: dict[str, torch.Tensor] = {}
    if checkpoint_path is not None:
        checkpoint = engine.load_checkpoint(checkpoint_path)
        if weights != checkpoint.encoder_weights:
            logger.info("using the checkpoint's encoder weights %s", checkpoint.encoder_weights)
        weights = checkpoint.encoder_weights
        overrides = checkpoint.encoder_overrides
    encoder = engine.load_encoder(weights=weights, backend=backend, state_overrides=overrides or None)
    if checkpoint_path is not None:
        checkpoint.check_encoder(encoder.weights_id)
    return encoder, overrides
