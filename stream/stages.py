"""The stage interfaces the pipeline calls, as Protocols so tests can pass small fakes.

The real implementations are ``tracking.FaceDetector``, ``tracking.FaceTracker``,
``tracking.crop_faces``, ``engine`` encoders from ``load_encoder`` and ``engine.SequenceScorer``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from engine.score import Score
from tracking.detection import Detection
from tracking.track import Track


class Detector(Protocol):
    def detect(self, image: np.ndarray) -> list[Detection]:
        """Faces in one H x W x 3 uint8 RGB image; an empty list when there are none."""
        ...


class Tracker(Protocol):
    def update(self, detections: list[Detection] | None, timestamp_s: float) -> list[Track]:
        """Advance one frame; ``None`` when detection did not run on it. Returns the live tracks.

        Must be called on every frame of its source, in order.
        """
        ...


class Cropper(Protocol):
    def __call__(self, image: np.ndarray, tracks: Sequence[Track]) -> np.ndarray:
        """N x 160 x 160 x 3 uint8 RGB face crops, one per track, in order."""
        ...


class Encoder(Protocol):
    def encode(self, crops: np.ndarray) -> np.ndarray:
        """N x 512 float32 L2-normalised embeddings of N x 160 x 160 x 3 uint8 RGB crops."""
        ...


class Scorer(Protocol):
    sample_rate_hz: float

    def wants_sample(self, track_id: int, timestamp_s: float) -> bool: ...

    def update_many(self, items: Sequence[tuple[int, np.ndarray, float]]) -> list[Score]:
        """One embedding for each of several distinct tracks; scores in the order of ``items``."""
        ...

    def forget(self, track_id: int) -> None: ...
