"""FaceDetector on real faces: the astronaut photo, a video generated from it, and bad input."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from skimage import data

from tests.tracking.conftest import ASTRONAUT_FACE_BOX, GeneratedVideo, place_astronaut
from tracking import (
    CropConfig,
    Detection,
    FaceDetector,
    FaceTracker,
    TrackerConfig,
    TrackState,
    crop_faces,
)
from tracking.matching import iou_matrix


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float(iou_matrix(np.asarray(a)[None], np.asarray(b)[None])[0, 0])


def test_finds_the_astronaut_with_sane_landmarks(detector: FaceDetector) -> None:
    detections = detector.detect(data.astronaut())
    assert len(detections) == 1
    (face,) = detections
    assert isinstance(face, Detection)
    assert face.confidence > 0.95
    assert face.box_xyxy.dtype == np.float32 and face.box_xyxy.shape == (4,)
    assert face.landmarks_5x2.dtype == np.float32 and face.landmarks_5x2.shape == (5, 2)
    assert iou(face.box_xyxy, ASTRONAUT_FACE_BOX) > 0.9
    x1, y1, x2, y2 = face.box_xyxy
    points = face.landmarks_5x2
    assert np.all((points[:, 0] > x1) & (points[:, 0] < x2) & (points[:, 1] > y1) & (points[:, 1] < y2))
    eye_a, eye_b, nose, mouth_a, mouth_b = points
    assert eye_a[0] < eye_b[0] and mouth_a[0] < mouth_b[0]  # image-left first
    assert max(eye_a[1], eye_b[1]) < nose[1] < min(mouth_a[1], mouth_b[1])


@pytest.mark.parametrize(
    "frame",
    [
        np.zeros((480, 640, 3), np.uint8),
        np.full((480, 640, 3), 255, np.uint8),
        np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8),
        np.zeros((8, 8, 3), np.uint8),
        np.zeros((1, 3000, 3), np.uint8),
    ],
    ids=["black", "white", "noise", "tiny", "sliver"],
)
def test_no_face_is_an_empty_list(detector: FaceDetector, frame: np.ndarray) -> None:
    assert detector.detect(frame) == []


@pytest.mark.parametrize(
    ("frame", "error", "got"),
    [
        (np.zeros((480, 640), np.uint8), ValueError, r"got \(480, 640\) uint8"),
        (np.zeros((480, 640, 3), np.float32), ValueError, r"got \(480, 640, 3\) float32"),
        (np.zeros((480, 640, 4), np.uint8), ValueError, r"got \(480, 640, 4\) uint8"),
        (np.zeros((0, 640, 3), np.uint8), ValueError, r"got \(0, 640, 3\) uint8"),
        ([[0, 0, 0]], TypeError, r"got list"),
    ],
)
def test_bad_frames_say_expected_versus_got(
    detector: FaceDetector, frame: object, error: type[Exception], got: str
) -> None:
    with pytest.raises(error, match=r"image.* must be .*HxWx3 uint8 RGB, " + got):
        detector.detect(frame)  # type: ignore[arg-type]
    with pytest.raises(error, match=r"images\[1\]"):
        detector.detect_batch([data.astronaut(), frame])  # type: ignore[list-item]


def test_downscaled_detection_maps_boxes_back_to_the_frame() -> None:
    big = np.kron(data.astronaut(), np.ones((2, 2, 1), np.uint8))  # 1024 x 1024, face twice as large
    downscaled = FaceDetector(max_side_px=320).detect(big)
    full = FaceDetector(max_side_px=None).detect(big)
    assert len(downscaled) == len(full) == 1
    assert iou(downscaled[0].box_xyxy, ASTRONAUT_FACE_BOX * 2) > 0.85
    assert iou(downscaled[0].box_xyxy, full[0].box_xyxy) > 0.85
    size = float(np.sqrt(np.prod(full[0].box_xyxy[2:] - full[0].box_xyxy[:2])))
    landmark_error = np.linalg.norm(downscaled[0].landmarks_5x2 - full[0].landmarks_5x2, axis=1)
    assert landmark_error.max() < 0.06 * size


def test_min_face_size_decides_whether_a_small_face_is_found() -> None:
    frame = place_astronaut(0.35, 200, 150)  # face about 30 x 39 px
    assert len(FaceDetector(min_face_size_px=20, max_side_px=None).detect(frame)) == 1
    assert FaceDetector(min_face_size_px=80, max_side_px=None).detect(frame) == []


def test_batch_matches_one_by_one_and_keeps_input_order(detector: FaceDetector) -> None:
    frames = [
        place_astronaut(0.6, 40, 30),
        np.zeros((480, 640, 3), np.uint8),
        data.astronaut(),  # another size: runs as its own batch
        place_astronaut(0.8, 300, 80),
    ]
    batched = detector.detect_batch(frames)
    single = [detector.detect(frame) for frame in frames]
    assert [len(result) for result in batched] == [1, 0, 1, 1]
    for got, expected in zip(batched, single, strict=True):
        for a, b in zip(got, expected, strict=True):
            np.testing.assert_allclose(a.box_xyxy, b.box_xyxy, atol=0.5)
            np.testing.assert_allclose(a.landmarks_5x2, b.landmarks_5x2, atol=0.5)
            assert a.confidence == pytest.approx(b.confidence, abs=1e-3)
    assert detector.detect_batch([]) == []


def test_detector_follows_the_face_through_the_generated_video(
    astronaut_video: GeneratedVideo, astronaut_detections: list[list[Detection]]
) -> None:
    assert len(astronaut_detections) == len(astronaut_video.face_boxes)
    overlaps = []
    for detections, expected in zip(astronaut_detections, astronaut_video.face_boxes, strict=True):
        assert len(detections) == 1
        overlaps.append(iou(detections[0].box_xyxy, expected))
    assert min(overlaps) > 0.7


@pytest.mark.parametrize("every_n", [1, 3])
def test_tracker_keeps_one_id_and_crops_follow_the_face(
    astronaut_video: GeneratedVideo, astronaut_detections: list[list[Detection]], every_n: int
) -> None:
    tracker = FaceTracker(TrackerConfig(detect_every_n_frames=every_n, min_hits=3))
    confirmed_from = None
    overlaps = []
    reference_crop = None
    crop_differences = []
    for index, (frame, expected) in enumerate(
        zip(astronaut_video.frames(), astronaut_video.face_boxes, strict=True)
    ):
        detections = astronaut_detections[index] if index % every_n == 0 else None
        tracks = tracker.update(detections, index / astronaut_video.fps)
        assert len(tracks) == 1 and tracks[0].track_id == 1
        if tracks[0].state is TrackState.CONFIRMED and confirmed_from is None:
            confirmed_from = index
        if confirmed_from is None:
            continue
        # Once confirmed the velocity is known, so predicted frames stay on the face too.
        overlaps.append(iou(tracks[0].box_xyxy, expected))
        crop = crop_faces(frame, tracks, CropConfig())[0].astype(float)
        if reference_crop is None:
            reference_crop = crop
            track = tracks[0]
            assert track.landmarks_5x2 is not None
            shifted = replace(
                track,
                box_xyxy=np.add(track.box_xyxy, [30, 0, 30, 0]),
                landmarks_5x2=np.add(track.landmarks_5x2, [30, 0]),
            )
            misplaced_difference = float(np.abs(crop_faces(frame, [shifted])[0] - crop).mean())
        crop_differences.append(float(np.abs(crop - reference_crop).mean()))
    assert confirmed_from == 2 * every_n
    assert tracker.ids_created == 1
    assert min(overlaps) > 0.75
    # The face grows by 60% and moves 220 px, yet the crops stay closer to the first crop than a
    # crop shifted by a third of the face is (blending trades a little lag for smoothness).
    assert float(np.median(crop_differences)) < 0.5 * misplaced_difference
    assert max(crop_differences) < misplaced_difference


def test_detection_threads_are_scoped_to_the_call() -> None:
    import torch

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        FaceDetector(num_threads=1).detect(place_astronaut(0.5, 10, 10))
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
