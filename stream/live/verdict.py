"""Turning a probability into REAL / FAKE / UNSURE."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class VerdictRule:
    """FAKE at or above ``threshold + margin``, REAL below ``threshold - margin``, else UNSURE.

    Attributes:
        threshold: the model's decision threshold on p_fake, in (0, 1).
        margin: half-width of the UNSURE band around the threshold, in [0, 0.5).
    """

    threshold: float
    margin: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {self.threshold!r}")
        if not 0.0 <= self.margin < 0.5:
            raise ValueError(f"margin must be in [0, 0.5), got {self.margin!r}")

    def verdict(self, p_fake: float, ready: bool) -> str:
        """One of ``stream.contracts.VERDICTS``; UNSURE while the score is not ready or NaN."""
        if not ready or math.isnan(p_fake):
            return "UNSURE"
        if p_fake >= self.threshold + self.margin:
            return "FAKE"
        if p_fake < self.threshold - self.margin:
            return "REAL"
        return "UNSURE"


def resolve_threshold(configured: float | None, calibrated: float) -> float:
    """The decision threshold in use: the configured one (``pipeline.threshold``) when set, else the
    checkpoint's calibrated one. The one place this rule lives; everything else takes its result."""
    return configured if configured is not None else calibrated
