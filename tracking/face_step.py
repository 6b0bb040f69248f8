"""The per-frame detect -> track step of one source, as extraction for training runs it.

``DetectionSchedule`` is the live chain's rule for which frames of a source get a detection (the
first, then every N-th frame after the last one asked for, never a second while one is still
running); ``stream.live`` uses it for every stream, submitting the due frames of all streams as
one detector batch and marking each delivered when its result comes back. ``FaceStep`` applies the
same schedule to one source synchronously (the detection is delivered at once), runs the tracker
on every frame and drops ended tracks; both feed the same tracker and ``crop_faces``, so a model is
trained on the faces, tracks and crops the live app produces. The caller decides which frames it
feeds: extraction the frames sampled at the scorer's rate.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from tracking.detection import Detection
from tracking.track import Track, TrackState


class Detector(Protocol):
    def detect(self, image: np.ndarray) -> list[Detection]: ...


class Tracker(Protocol):
    def update(self, detections: list[Detection] | None, timestamp_s: float) -> Sequence[Track]: ...


@dataclass(frozen=True)
class StepResult:
    """What one call of ``FaceStep.track`` found.

    Attributes:
        tracks: the live tracks after this frame (never ``ENDED`` ones), in the tracker's order.
        detected: True when the detector ran on this frame.
        detect_ms: detector time on this frame, milliseconds (0.0 when it did not run).
        track_ms: tracker update time, milliseconds.
    """

    tracks: list[Track]
    detected: bool
    detect_ms: float
    track_ms: float


class DetectionSchedule:
    """Which frames of one source get a detection.

    Call ``ask`` once per frame, in order: True on the first frame, then on the first frame at
    least ``every`` frames after the last one that was asked for, never while that one is still
    in flight (call ``delivered`` when its result is in). ``every`` may change between calls (the
    load-shedding rule stretches it).
    """

    def __init__(self) -> None:
        self._since_asked: int | None = None
        self._in_flight = False

    def ask(self, every: int) -> bool:
        due = (self._since_asked is None or self._since_asked >= every) and not self._in_flight
        if not due:
            self._since_asked = (self._since_asked or 0) + 1
            return False
        self._in_flight = True
        self._since_asked = 1
        return True

    def delivered(self) -> None:
        self._in_flight = False


class FaceStep:
    """Detect on every ``detect_every_n_frames``-th call (the first included), track on every call.

    Calling contract: call ``track`` once per frame of one source, in time order; the tracker
    predicts the boxes on the calls without detection. One instance per source (it owns the
    source's tracker and frame count); the detector may be shared.
    """

    def __init__(self, detector: Detector, tracker: Tracker, detect_every_n_frames: int = 1) -> None:
        if not isinstance(detect_every_n_frames, int) or detect_every_n_frames < 1:
            raise ValueError(f"detect_every_n_frames must be an integer >= 1, got {detect_every_n_frames!r}")
        self.detect_every_n_frames = detect_every_n_frames
        self.tracker = tracker
        self._detector = detector
        self._schedule = DetectionSchedule()

    def track(self, image: np.ndarray, timestamp_s: float) -> StepResult:
        """Advance the source by one frame (H x W x 3 uint8 RGB at ``timestamp_s`` seconds)."""
        detections = None
        detect_ms = 0.0
        detected = self._schedule.ask(self.detect_every_n_frames)
        if detected:
            started = time.perf_counter()
            detections = self._detector.detect(image)
            detect_ms = (time.perf_counter() - started) * 1000.0
            self._schedule.delivered()
        started = time.perf_counter()
        tracks = self.tracker.update(detections, timestamp_s)
        track_ms = (time.perf_counter() - started) * 1000.0
        live = [track for track in tracks if track.state is not TrackState.ENDED]
        return StepResult(tracks=live, detected=detected, detect_ms=detect_ms, track_ms=track_ms)
