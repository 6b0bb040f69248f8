"""Face encoder (InceptionResNetV1) backends, weights, the sequence scorer, training and evaluation.

Never imports ``tracking`` or ``stream``.
"""

from engine.checkpoint import CheckpointError, ScorerCheckpoint, load_checkpoint
from engine.config import EncoderConfig
from engine.encoder import FaceEncoder, encoder_from_config, load_encoder
from engine.errors import BackendUnavailableError, WeightsError
from engine.score import Score
from engine.scorer import SampleClock, SequenceScorer
from engine.scorer_config import ScorerConfig
from engine.weights import list_weights

__all__ = [
    "BackendUnavailableError",
    "CheckpointError",
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
]
