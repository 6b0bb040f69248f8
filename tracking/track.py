"""Tracks: the tracker's per-person output for one frame."""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np


class TrackState(enum.Enum):
    """Lifecycle: TENTATIVE -> CONFIRMED -> LOST -> ENDED (a TENTATIVE track that misses ends)."""

    TENTATIVE = "tentative"
    CONFIRMED = "confirmed"
    LOST = "lost"
    ENDED = "ended"


@dataclass(frozen=True, eq=False)
class Track:
    """The state of one tracked face after a tracker update.

    Attributes:
        track_id: unique within one tracker instance, never reused.
        box_xyxy: float32 (4,) box in frame pixels; the Kalman estimate (predicted on frames
            without a matching detection).
        state: lifecycle state.
        hits: number of detections matched to this track so far.
        age: frames since the track was born.
        source_id: the stream the track belongs to.
        landmarks_5x2: float32 (5, 2) landmarks of the last matched detection, moved with the
            box since then; None only if the track never had landmarks.
        frames_since_update: frames since the last matched detection (0 on a matched frame).
    """

    track_id: int
    box_xyxy: np.ndarray
    state: TrackState
    hits: int
    age: int
    source_id: str
    landmarks_5x2: np.ndarray | None = None
    frames_since_update: int = 0
