"""Frames: what every source produces."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class Frame:
    """One video frame.

    Attributes:
        image: H x W x 3 uint8 RGB.
        index: 0-based frame number within the source (counts dropped frames too for live sources).
        timestamp_s: seconds since the source started (media time for files, capture time for live).
        source_id: name of the source; safe to log (credentials removed).
    """

    image: np.ndarray
    index: int
    timestamp_s: float
    source_id: str
