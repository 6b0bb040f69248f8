"""Face encoder (InceptionResNetV1) backends, weights, the sequence scorer, training and evaluation.

Never imports ``tracking`` or ``stream``.
"""

from engine.config import EncoderConfig
from engine.encoder import FaceEncoder, encoder_from_config, load_encoder
from engine.errors import BackendUnavailableError, WeightsError
from engine.score import Score
from engine.weights import list_weights

__all__ = [
    "BackendUnavailableError",
    "EncoderConfig",
    "FaceEncoder",
    "Score",
    "WeightsError",
    "encoder_from_config",
    "list_weights",
    "load_encoder",
]
