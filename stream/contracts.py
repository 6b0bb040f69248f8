"""The types that cross rooms: frames, what the live chain returns for them, and the stage interfaces.

Sources produce ``Frame``s; the live chain turns each into a ``FrameResult`` (per-face results and
``Event``s); sinks, the server and the overlay read only these types. The stage interfaces
(``Detector``, ``Tracker``, ``Cropper``, ``Encoder``, ``Scorer``) are Protocols so tests can pass
small fakes; the real implementations are ``tracking.FaceDetector``, ``tracking.FaceTracker``,
``tracking.crop_faces``, ``engine`` encoders from ``load_encoder`` and ``engine.SequenceScorer``.

This module imports no other part of ``stream``: every room may import it, it imports none.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from engine.score import ReferenceMatch, Score
from tracking.detection import Detection
from tracking.track import Track


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
        reference: how the face compares with the enrolled person (``engine.reference``); None
            when nobody is enrolled or the track has no score yet.
    """

    track_id: int
    box_xyxy: np.ndarray
    confirmed: bool
    p_fake: float
    ready: bool
    verdict: str
    history: tuple[float, ...]
    frames_scored: int
    reference: ReferenceMatch | None = None


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


class Detector(Protocol):
    def detect_batch(self, images: Sequence[np.ndarray]) -> list[list[Detection]]:
        """Faces in each of several H x W x 3 uint8 RGB images (one list per image, in order; an
        empty list where there are none). One call for several streams' frames."""
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
    """One scorer serves every track of every stream (track ids are ints the caller makes unique).
    The caller decides when a track is due for a sample, at ``sample_rate_hz`` or slower."""

    sample_rate_hz: float

    def update_many(self, items: Sequence[tuple[int, np.ndarray, float]]) -> list[Score]:
        """One embedding for each of several distinct tracks; scores in the order of ``items``."""
        ...

    def forget(self, track_id: int) -> None: ...


def check_unique_stream_ids(ids: Sequence[str], what: str) -> None:
    """Raise ``ValueError`` naming the ids unless every stream id is different.

    Results, events and sequence numbers are routed by stream id, so two streams with one id
    would mix their tracks.
    """
    if len(set(ids)) != len(ids):
        raise ValueError(f"{what} ids must be unique, got {list(ids)}")
