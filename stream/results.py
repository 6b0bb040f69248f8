"""What the pipeline returns for each frame: per-face results and events.

The overlay, the sinks and the WebRTC server read only these types.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from stream.frame import Frame

VERDICTS = ("REAL", "FAKE", "UNSURE")


@dataclass(frozen=True, eq=False)
class FaceResult:
    """One tracked face in one frame.

    Attributes:
        track_id: tracker id (unique per source).
        box_xyxy: float32 (4,) box in frame pixels.
        confirmed: the tracker has confirmed the track.
        p_fake: latest smoothed probability of manipulation; NaN until ``ready``.
        ready: the scorer has enough frames for a meaningful score.
        verdict: one of VERDICTS (UNSURE while not ready or inside the uncertainty band).
        history: recent p_fake values, oldest first, for sparklines and charts.
        frames_scored: embeddings the scorer has accepted for this track.
    """

    track_id: int
    box_xyxy: np.ndarray
    confirmed: bool
    p_fake: float
    ready: bool
    verdict: str
    history: tuple[float, ...]
    frames_scored: int


@dataclass(frozen=True)
class Event:
    """A track event: kind is one of "track_new", "track_update", "alert", "track_end".

    ``timestamp_s`` is stream time; ``wall_time`` is Unix time when the event was made.
    """

    kind: str
    source_id: str
    track_id: int
    timestamp_s: float
    wall_time: float
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class FrameResult:
    """Everything the pipeline knows after processing one frame.

    ``timings_ms`` maps a stage name ("detect", "track", "crop", "encode", "score", "total") to
    the milliseconds it took on this frame (stages that did not run are absent).
    """

    frame: Frame
    faces: tuple[FaceResult, ...]
    events: tuple[Event, ...]
    timings_ms: dict[str, float]
