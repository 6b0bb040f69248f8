"""Typed configuration of the streaming sequence scorer."""

from __future__ import annotations

import math
from dataclasses import dataclass

# The sequence heads ``engine.heads.HEADS`` builds, by name (here so the CLI lists them without torch).
HEAD_NAMES = ("frame_mean", "lstm", "temporal_conv", "transformer")
# Heads over identity evidence (inner and outer face embeddings), trained by deepwatch train-identity.
EVIDENCE_HEAD_NAMES = ("identity",)


@dataclass(frozen=True)
class ScorerConfig:
    """How ``SequenceScorer`` samples, windows and smooths a track's embeddings.

    Attributes:
        window_size: embeddings per window fed to the head (W).
        sample_rate_hz: rate at which a track's embeddings are sampled, Hz; the head was
            trained on windows sampled at this rate, so it should match the checkpoint's.
        min_samples: embeddings needed before a score is reported (``Score.ready``); windows
            shorter than ``window_size`` are scored as they are.
        ema_alpha: weight of the newest window probability in the exponential moving average,
            in (0, 1]; 1 disables smoothing.
        max_gap_s: a track whose previous sample is older than this starts a fresh window,
            seconds (the face was lost, occluded or the stream stalled).
        device: torch device the head runs on.
    """

    window_size: int = 16
    sample_rate_hz: float = 8.0
    min_samples: int = 16
    ema_alpha: float = 0.3
    max_gap_s: float = 1.0
    device: str = "cpu"

    def __post_init__(self) -> None:
        if not isinstance(self.window_size, int) or self.window_size < 1:
            raise ValueError(f"window_size must be an integer >= 1, got {self.window_size!r}")
        if not (isinstance(self.sample_rate_hz, (int, float)) and math.isfinite(self.sample_rate_hz)):
            raise ValueError(f"sample_rate_hz must be a finite number, got {self.sample_rate_hz!r}")
        if not 0.1 <= self.sample_rate_hz <= 120.0:
            raise ValueError(f"sample_rate_hz must be in [0.1, 120], got {self.sample_rate_hz!r}")
        if not isinstance(self.min_samples, int) or not 1 <= self.min_samples <= self.window_size:
            raise ValueError(
                f"min_samples must be an integer in [1, window_size={self.window_size}], "
                f"got {self.min_samples!r}"
            )
        if not (isinstance(self.ema_alpha, (int, float)) and 0.0 < self.ema_alpha <= 1.0):
            raise ValueError(f"ema_alpha must be in (0, 1], got {self.ema_alpha!r}")
        period_s = 1.0 / self.sample_rate_hz
        if not (isinstance(self.max_gap_s, (int, float)) and self.max_gap_s > period_s):
            raise ValueError(
                f"max_gap_s must be a number above the sample period {period_s:.3f} s, got {self.max_gap_s!r}"
            )
        if not isinstance(self.device, str) or not self.device:
            raise ValueError(
                f"device must be a non-empty string such as 'cpu' or 'cuda', got {self.device!r}"
            )

    @property
    def period_s(self) -> float:
        """Seconds between two samples of one track."""
        return 1.0 / self.sample_rate_hz
