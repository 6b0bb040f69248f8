"""Face encoder (InceptionResNetV1) backends, weights, the sequence scorer, training and evaluation.

Never imports ``tracking`` or ``stream``.
"""

from engine.score import Score

__all__ = ["Score"]
