"""Face encoder (InceptionResNetV1) backends, weights, the sequence scorer, training and evaluation.

Never imports ``tracking`` or ``stream``. The exports load on first use, so importing a light
submodule (``engine.config``) or the package itself does not pull in torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.checkpoint import (
        CheckpointError,
        CropSettings,
        ScorerCheckpoint,
        load_checkpoint,
        open_encoder,
    )
    from engine.config import EncoderConfig
    from engine.encoder import FaceEncoder, encoder_from_config, load_encoder
    from engine.errors import BackendUnavailableError, WeightsError
    from engine.score import Score
    from engine.scorer import SampleClock, SequenceScorer
    from engine.scorer_config import ScorerConfig
    from engine.weights import list_weights

# Exported name -> the module that defines it.
_EXPORTS = {
    "BackendUnavailableError": "engine.errors",
    "CheckpointError": "engine.checkpoint",
    "CropSettings": "engine.checkpoint",
    "EncoderConfig": "engine.config",
    "FaceEncoder": "engine.encoder",
    "SampleClock": "engine.scorer",
    "Score": "engine.score",
    "ScorerCheckpoint": "engine.checkpoint",
    "ScorerConfig": "engine.scorer_config",
    "SequenceScorer": "engine.scorer",
    "WeightsError": "engine.errors",
    "encoder_from_config": "engine.encoder",
    "list_weights": "engine.weights",
    "load_checkpoint": "engine.checkpoint",
    "load_encoder": "engine.encoder",
    "open_encoder": "engine.checkpoint",
}

__all__ = [
    "BackendUnavailableError",
    "CheckpointError",
    "CropSettings",
    "EncoderConfig",
    "FaceEncoder",
    "SampleClock",
    "Score",
    "ScorerCheckpoint",
    "ScorerConfig",
    "SequenceScorer",
    "WeightsError",
    "encoder_from_config",
    "list_weights",
    "load_checkpoint",
    "load_encoder",
    "open_encoder",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'engine' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
