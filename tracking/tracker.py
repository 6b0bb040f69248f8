"""FaceTracker: Kalman-filtered face tracks with ids, fed with detections once per frame."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import numpy as np

from tracking.config import TrackerConfig
from tracking.detection import Detection
from tracking.kalman import KalmanBoxFilter
from tracking.matching import associate
from tracking.track import Track, TrackState
from tracking.validation import check_detections, check_timestamp

logger = logging.getLogger(__name__)

# A gap this long between two frames (a stalled source) says nothing about motion; extrapolating
# the velocity across all of it would only throw the box off the face.
MAX_PREDICT_GAP_S = 1.0


class _LiveTrack:
    """Mutable per-track state, private to the tracker; ``Track`` is its frozen snapshot."""

    def __init__(self, track_id: int, detection: Detection, config: TrackerConfig) -> None:
        self.track_id = track_id
        self.filter = KalmanBoxFilter(detection.box_xyxy, config.measurement_noise, config.process_noise)
        self.state = TrackState.CONFIRMED if config.min_hits <= 1 else TrackState.TENTATIVE
        self.hits = 1
        self.age = 0
        self.frames_since_update = 0
        # Landmark layout as fractions of the box (smoothed over detections), so the landmarks
        # ride on the box between detections.
        self.layout_in_box = _landmarks_in_box(detection)
        # What the reported box and layout still lag behind the estimate after a correction,
        # and over how many more frames that gap closes (see TrackerConfig.blend_corrections).
        self.box_correction = np.zeros(4)
        self.layout_correction = np.zeros((5, 2))
        self.correction_frames_left = 0

    def correct(self, detection: Detection, blend_frames: int, landmark_smoothing: float) -> None:
        """Update with a matched detection, spreading the visible jump over ``blend_frames``."""
        reported_box, reported_layout = self.reported_box(), self.reported_layout()
        self.filter.update(detection.box_xyxy)
        fresh = _landmarks_in_box(detection)
        self.layout_in_box = landmark_smoothing * self.layout_in_box + (1 - landmark_smoothing) * fresh
        # The first share of the jump shows on this frame, so blending over 1 frame is no blending.
        remaining = 1.0 - 1.0 / blend_frames
        self.box_correction = (reported_box - self.filter.box_xyxy.astype(np.float64)) * remaining
        self.layout_correction = (reported_layout - self.layout_in_box) * remaining
        self.correction_frames_left = blend_frames - 1

    def advance(self, gap_s: float) -> None:
        """Predict one frame ahead and close one more share of a pending correction."""
        self.filter.predict(gap_s)
        if self.correction_frames_left > 0:
            remaining = 1.0 - 1.0 / self.correction_frames_left
            self.box_correction = self.box_correction * remaining
            self.layout_correction = self.layout_correction * remaining
            self.correction_frames_left -= 1
        self.age += 1
        self.frames_since_update += 1

    def reported_box(self) -> np.ndarray:
        return self.filter.box_xyxy.astype(np.float64) + self.box_correction

    def reported_layout(self) -> np.ndarray:
        return self.layout_in_box + self.layout_correction

    def snapshot(self, source_id: str) -> Track:
        box = self.reported_box()
        origin, extent = box[:2], box[2:] - box[:2]
        landmarks = (origin + self.reported_layout() * extent).astype(np.float32)
        return Track(
            track_id=self.track_id,
            box_xyxy=box.astype(np.float32),
            state=self.state,
            hits=self.hits,
            age=self.age,
            source_id=source_id,
            landmarks_5x2=landmarks,
            frames_since_update=self.frames_since_update,
        )


def _landmarks_in_box(detection: Detection) -> np.ndarray:
    """Landmarks as fractions of the detection box, so they can ride on the smoothed box."""
    box = np.asarray(detection.box_xyxy, dtype=np.float64)
    origin, extent = box[:2], box[2:] - box[:2]
    return (np.asarray(detection.landmarks_5x2, dtype=np.float64) - origin) / extent


class FaceTracker:
    """Follows faces across the frames of one stream.

    Call ``update`` exactly once per frame, in frame order, even when the detector did not run
    (``detections=None``: the tracks only predict) or found nothing (``[]``: every track misses).
    Tracks move at constant velocity between detections (a Kalman filter per track), so boxes
    on frames without detection follow the face.

    Lifecycle: an unmatched detection starts a TENTATIVE track; ``min_hits`` matches on
    consecutive detection runs make it CONFIRMED; a TENTATIVE track that misses ENDS; a
    CONFIRMED track that misses is LOST (its box keeps predicting) and becomes CONFIRMED again
    when matched; a track with no match for more than ``max_age_frames`` frames ENDS. Ids are
    unique within this instance and never reused; each tracker owns its own counter, so one per
    stream can run side by side. Not thread-safe.

    Args:
        config: tracker settings; defaults to ``TrackerConfig()``.
        source_id: copied into every ``Track``.
        **overrides: fields of ``TrackerConfig`` to change, e.g. ``min_hits=1``.
    """

    def __init__(self, config: TrackerConfig | None = None, source_id: str = "0", **overrides: Any) -> None:
        base = config if config is not None else TrackerConfig()
        self.config = replace(base, **overrides) if overrides else base
        self.source_id = source_id
        self._tracks: list[_LiveTrack] = []
        self._next_id = 1
        self._last_timestamp_s: float | None = None
        self._ended_ids: list[int] = []
        self._frames_since_detection = 0

    def update(self, detections: list[Detection] | None, timestamp_s: float) -> list[Track]:
        """Advance all tracks to this frame and match the frame's detections to them.

        Args:
            detections: this frame's detections (pixels of the frame), ``[]`` when the detector
                ran and found no face, or None when the detector did not run on this frame.
            timestamp_s: the frame's time in seconds; must not decrease between calls. Velocities
                are in pixels per second, so frames dropped by a live source are bridged correctly.

        Returns:
            The live tracks (TENTATIVE, CONFIRMED, LOST; never ENDED), sorted by ``track_id``.
            ``ended_track_ids()`` names the ones that ended in this call.

        Raises:
            TypeError, ValueError: malformed detections or timestamp (nothing is changed then).
        """
        checked = None if detections is None else check_detections(detections)
        now_s = check_timestamp(timestamp_s, self._last_timestamp_s)
        gap_s = (
            0.0 if self._last_timestamp_s is None else min(now_s - self._last_timestamp_s, MAX_PREDICT_GAP_S)
        )
        self._last_timestamp_s = now_s
        self._ended_ids = []

        # Step 1: predict every track to this frame.
        for track in self._tracks:
            track.advance(gap_s)
        self._frames_since_detection += 1

        # Step 2: match, correct, and move states on frames where the detector ran.
        if checked is not None:
            self._associate(checked)
            self._frames_since_detection = 0

        # Step 3: end tracks that went unmatched for too long.
        for track in self._tracks:
            if track.frames_since_update > self.config.max_age_frames:
                track.state = TrackState.ENDED
        self._ended_ids = [t.track_id for t in self._tracks if t.state is TrackState.ENDED]
        if self._ended_ids:
            logger.debug("source %s: tracks %s ended", self.source_id, self._ended_ids)
        self._tracks = [t for t in self._tracks if t.state is not TrackState.ENDED]
        return self.tracks()

    def _associate(self, detections: list[Detection]) -> None:
        # Match against the Kalman prediction, not the blended box the tracks report.
        track_boxes = np.array([t.filter.box_xyxy for t in self._tracks], dtype=np.float64).reshape(-1, 4)
        detection_boxes = np.array([d.box_xyxy for d in detections], dtype=np.float64).reshape(-1, 4)
        assignment = associate(
            track_boxes, detection_boxes, self.config.iou_threshold, self.config.max_centre_distance
        )
        # Spread each correction over the frames until the next detection is expected: the
        # interval seen between the last two detection runs, at most the configured one (after
        # a long pause of the detector, a slow catch-up would only leave the box behind).
        blend_frames = 1
        if self.config.blend_corrections:
            blend_frames = max(1, min(self._frames_since_detection, self.config.detect_every_n_frames))
        for track_index, detection_index in assignment.matches:
            track, detection = self._tracks[track_index], detections[detection_index]
            track.correct(detection, blend_frames, self.config.landmark_smoothing)
            track.hits += 1
            track.frames_since_update = 0
            if track.state is TrackState.LOST or (
                track.state is TrackState.TENTATIVE and track.hits >= self.config.min_hits
            ):
                track.state = TrackState.CONFIRMED
        for track_index in assignment.unmatched_tracks:
            track = self._tracks[track_index]
            if track.state is TrackState.TENTATIVE:
                track.state = TrackState.ENDED
            elif track.state is TrackState.CONFIRMED:
                track.state = TrackState.LOST
        for detection_index in assignment.unmatched_detections:
            self._tracks.append(_LiveTrack(self._next_id, detections[detection_index], self.config))
            self._next_id += 1

    def tracks(self) -> list[Track]:
        """Snapshots of the live tracks as of the last ``update``, sorted by ``track_id``."""
        return [t.snapshot(self.source_id) for t in sorted(self._tracks, key=lambda t: t.track_id)]

    def ended_track_ids(self) -> list[int]:
        """Ids of the tracks that ended during the last ``update`` (or ``end_all``), ascending.

        The pipeline passes these to the scorer's ``forget``; an id is reported exactly once.
        """
        return sorted(self._ended_ids)

    def end_all(self) -> list[int]:
        """End every live track (e.g. when the stream stops) and return their ids, ascending.

        Ids stay used: tracks born after this get new ids.
        """
        self._ended_ids = sorted(t.track_id for t in self._tracks)
        self._tracks = []
        return list(self._ended_ids)

    @property
    def ids_created(self) -> int:
        """How many track ids this tracker has handed out so far."""
        return self._next_id - 1
