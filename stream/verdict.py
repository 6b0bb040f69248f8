"""Turning a probability into REAL / FAKE / UNSURE."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class VerdictRule:
    """REAL / UNSURE / FAKE from p_fake, in one of two forms.

    Calibrated (``real_at_most`` given; thresholds from real faces, ``engine.calibration``):
    FAKE when p_fake > ``threshold`` (the 5 % per-track threshold), REAL when p_fake <=
    ``real_at_most`` (the 5 % per-window threshold), UNSURE in between; ``margin`` is unused.

    Uncalibrated (a threshold set in the config, or an old checkpoint): FAKE at or above
    ``threshold + margin``, REAL below ``threshold - margin``, else UNSURE.

    Attributes:
        threshold: the decision threshold on p_fake, in (0, 1) (calibrated: in [0, 1]).
        margin: half-width of the UNSURE band around the threshold, in [0, 0.5).
        real_at_most: the calibrated REAL bound, in [0, threshold]; None for the uncalibrated form.
    """

    threshold: float
    margin: float = 0.0
    real_at_most: float | None = None

    def __post_init__(self) -> None:
        if self.real_at_most is not None:
            if not 0.0 <= self.real_at_most <= self.threshold <= 1.0:
                raise ValueError(
                    "calibrated thresholds must satisfy 0 <= real_at_most <= threshold <= 1, "
                    f"got real_at_most {self.real_at_most!r} and threshold {self.threshold!r}"
                )
        elif not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {self.threshold!r}")
        if not 0.0 <= self.margin < 0.5:
            raise ValueError(f"margin must be in [0, 0.5), got {self.margin!r}")

    def verdict(self, p_fake: float, ready: bool) -> str:
        """One of ``stream.results.VERDICTS``; UNSURE while the score is not ready or NaN."""
        if not ready or math.isnan(p_fake):
            return "UNSURE"
        if self.real_at_most is not None:
            if p_fake > self.threshold:
                return "FAKE"
            return "REAL" if p_fake <= self.real_at_most else "UNSURE"
        if p_fake >= self.threshold + self.margin:
            return "FAKE"
        if p_fake < self.threshold - self.margin:
            return "REAL"
        return "UNSURE"
