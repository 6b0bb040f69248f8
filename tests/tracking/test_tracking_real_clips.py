"""Detector and tracker on the real clips of ../shared/data (skipped when it is absent)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from tracking import DetectorConfig, FaceDetector, FaceTracker, TrackerConfig, TrackState, crop_faces


def read_frames(path: Path, count: int) -> tuple[list[np.ndarray], float]:
    capture = cv2.VideoCapture(str(path))
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    frames = []
    while len(frames) < count:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    capture.release()
    return frames, float(fps)


@pytest.mark.parametrize(
    "clip",
    ["liveportrait_d12.mp4", "sadtalker_WDA_KatieHill_000.mp4", "retalking_face2.mp4"],
)
def test_talking_head_keeps_one_id(data_dir: Path, detector: FaceDetector, clip: str) -> None:
    # liveportrait_d12 has the fastest head motion of the set; retalking_face2 is 844 x 844.
    frames, fps = read_frames(data_dir / "real" / clip, 90)
    assert len(frames) == 90
    tracker = FaceTracker(TrackerConfig(detect_every_n_frames=3))
    states = []
    for index, frame in enumerate(frames):
        detections = detector.detect(frame) if index % 3 == 0 else None
        if detections is not None:
            assert len(detections) == 1, f"frame {index}: {len(detections)} faces"
        tracks = tracker.update(detections, index / fps)
        assert [t.track_id for t in tracks] == [1], f"frame {index}"
        states.append(tracks[0].state)
        if tracks[0].state is TrackState.CONFIRMED:
            crops = crop_faces(frame, tracks)
            assert crops.shape == (1, 160, 160, 3)
            assert crops.std() > 20  # a face, not a black border
    assert states.index(TrackState.CONFIRMED) == 6
    assert states[6:] == [TrackState.CONFIRMED] * (len(states) - 6)
    assert tracker.ids_created == 1


@pytest.mark.slow
def test_street_scene_tracks_several_people_with_stable_ids(data_dir: Path) -> None:
    frames, fps = read_frames(data_dir / "real" / "crowd_street.mp4", 24)
    detector = FaceDetector(DetectorConfig(max_side_px=1280, min_face_size_px=20))
    tracker = FaceTracker(TrackerConfig(detect_every_n_frames=2, min_hits=3))
    confirmed_per_frame = []
    for index, frame in enumerate(frames):
        detections = detector.detect(frame) if index % 2 == 0 else None
        tracks = tracker.update(detections, index / fps)
        confirmed_per_frame.append(sum(t.state is TrackState.CONFIRMED for t in tracks))
        ids = [t.track_id for t in tracks]
        assert len(ids) == len(set(ids))
    # Seven people face the camera at the start of the clip (checked by eye on the crops).
    assert max(confirmed_per_frame) >= 6
    # Stable ids: the same few people do not get new ids as they walk.
    assert tracker.ids_created <= max(confirmed_per_frame) + 2
