"""Face crops: geometry of box and aligned crops, on synthetic images and the astronaut photo."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage import data

from tracking import CropConfig, Track, TrackState, crop_faces
from tracking.crops import landmark_template, similarity_transform

# MTCNN's landmarks for skimage's astronaut (from tracking.FaceDetector; fixed here so these
# geometry tests do not need the detector).
ASTRONAUT_BOX = np.array([182.2, 62.0, 267.5, 174.1], np.float32)
ASTRONAUT_LANDMARKS = np.array(
    [[204.1, 101.1], [247.3, 103.3], [225.3, 129.5], [201.9, 139.7], [245.7, 141.5]], np.float32
)


def make_track(box: np.ndarray, landmarks: np.ndarray | None = None, track_id: int = 1) -> Track:
    return Track(
        track_id=track_id,
        box_xyxy=np.asarray(box, np.float32),
        state=TrackState.CONFIRMED,
        hits=3,
        age=3,
        source_id="0",
        landmarks_5x2=None if landmarks is None else np.asarray(landmarks, np.float32),
    )


def rotate_about(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    return np.hstack([points, np.ones((len(points), 1))]) @ matrix.T


def test_output_shape_dtype_and_empty_input() -> None:
    image = np.zeros((240, 320, 3), np.uint8)
    crops = crop_faces(image, [make_track([10, 10, 60, 70]), make_track([100, 50, 200, 150])])
    assert crops.shape == (2, 160, 160, 3) and crops.dtype == np.uint8
    assert crop_faces(image, []).shape == (0, 160, 160, 3)
    assert crop_faces(image, [], CropConfig(size_px=112)).shape == (0, 112, 112, 3)


@pytest.mark.parametrize(
    ("image", "got"),
    [
        (np.zeros((100, 100), np.uint8), r"got \(100, 100\) uint8"),
        (np.zeros((100, 100, 3), np.float32), r"got \(100, 100, 3\) float32"),
        (np.zeros((100, 100, 4), np.uint8), r"got \(100, 100, 4\) uint8"),
        (np.zeros((0, 100, 3), np.uint8), r"got \(0, 100, 3\) uint8"),
    ],
)
def test_bad_image_says_expected_versus_got(image: np.ndarray, got: str) -> None:
    with pytest.raises(ValueError, match=r"image must be HxWx3 uint8 RGB, " + got):
        crop_faces(image, [make_track([0, 0, 10, 10])])


def test_box_crop_centres_the_box_with_the_margin() -> None:
    image = np.zeros((400, 400, 3), np.uint8)
    image[100:200, 150:250] = 255  # a white 100 x 100 "face"
    crops = crop_faces(image, [make_track([150, 100, 250, 200])], CropConfig(mode="box", margin=0.6))
    crop = crops[0, :, :, 0].astype(float)
    # The face covers 1 / 1.6 of the crop side: 100 px of the 160, centred (to half a pixel).
    for profile in (crop[:, 80], crop[80, :]):
        white = np.flatnonzero(profile > 127)
        assert len(white) in (100, 101)
        assert abs((white[0] + white[-1]) / 2 - 79.5) <= 0.5
    assert crop[:25].max() == 0 and crop[135:].max() == 0


def test_box_crop_outside_the_frame_is_black() -> None:
    image = np.full((100, 100, 3), 200, np.uint8)
    crop = crop_faces(image, [make_track([-50, -50, 50, 50])], CropConfig(mode="box", margin=0.0))[0]
    assert crop[:70, :70].max() == 0  # the top-left part lies outside the frame
    assert crop[90:, 90:].min() == 200


def test_similarity_transform_recovers_a_known_transform() -> None:
    source = np.array([[10, 20], [40, 22], [25, 40], [12, 55], [38, 57]], float)
    angle, scale, shift = np.deg2rad(17), 1.7, np.array([5.0, -3.0])
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    target = source @ (scale * rotation).T + shift
    matrix = similarity_transform(source, target)
    np.testing.assert_allclose(matrix[:, :2], scale * rotation, atol=1e-9)
    np.testing.assert_allclose(matrix[:, 2], shift, atol=1e-9)


def test_similarity_transform_never_reflects() -> None:
    source = np.array([[0, 0], [10, 0], [5, 5], [2, 10], [8, 10]], float)
    mirrored = source * [-1, 1]
    matrix = similarity_transform(source, mirrored)
    assert np.linalg.det(matrix[:, :2]) > 0


def test_aligned_crop_puts_the_landmarks_on_the_template() -> None:
    config = CropConfig(mode="aligned", margin=0.25)
    template = landmark_template(config.size_px, config.margin)
    # Landmarks that are exactly a rotated, scaled, shifted template; each marked with a dot.
    angle = np.deg2rad(-20)
    rotation = 2.3 * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    landmarks = template @ rotation.T + [140.0, 90.0]
    image = np.full((600, 600, 3), 60, np.uint8)
    for x, y in landmarks:
        cv2.circle(image, (round(float(x)), round(float(y))), 4, (0, 255, 0), -1)
    box = np.r_[landmarks.min(axis=0) - 40, landmarks.max(axis=0) + 40]
    crop = crop_faces(image, [make_track(box, landmarks)], config)[0]
    green = (crop[..., 1] > 150) & (crop[..., 0] < 100)
    count, labels = cv2.connectedComponents(green.astype(np.uint8))
    assert count - 1 == 5
    centroids = np.array([np.argwhere(labels == k).mean(axis=0)[::-1] for k in range(1, count)])
    for x, y in template:
        assert np.linalg.norm(centroids - [x, y], axis=1).min() < 1.0, (x, y)


def test_aligned_crop_undoes_in_plane_rotation_and_box_crop_does_not() -> None:
    image = data.astronaut()
    centre = ASTRONAUT_LANDMARKS.mean(axis=0)
    rotation = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), 25.0, 1.0)
    rotated_image = cv2.warpAffine(image, rotation, (image.shape[1], image.shape[0]))
    rotated_landmarks = rotate_about(ASTRONAUT_LANDMARKS.astype(float), rotation)
    aligned = CropConfig(mode="aligned")
    box = CropConfig(mode="box")
    upright_track = make_track(ASTRONAUT_BOX, ASTRONAUT_LANDMARKS)
    rotated_track = make_track(ASTRONAUT_BOX, rotated_landmarks)  # same box: a detector's box does not rotate

    def difference(config: CropConfig) -> float:
        a = crop_faces(image, [upright_track], config)[0].astype(float)
        b = crop_faces(rotated_image, [rotated_track], config)[0].astype(float)
        inner = slice(40, 120)  # the face, away from the corners that rotate in from outside
        return float(np.abs(a[inner, inner] - b[inner, inner]).mean())

    assert difference(aligned) < 6.0
    assert difference(box) > 3 * difference(aligned)


def test_aligned_mode_falls_back_to_box_without_landmarks() -> None:
    image = data.astronaut()
    without = crop_faces(image, [make_track(ASTRONAUT_BOX)], CropConfig(mode="aligned"))
    as_box = crop_faces(image, [make_track(ASTRONAUT_BOX)], CropConfig(mode="box"))
    np.testing.assert_array_equal(without, as_box)
    collapsed = np.repeat(ASTRONAUT_LANDMARKS[:1], 5, axis=0)
    degenerate = crop_faces(image, [make_track(ASTRONAUT_BOX, collapsed)], CropConfig(mode="aligned"))
    np.testing.assert_array_equal(degenerate, as_box)


def test_large_faces_are_area_averaged_not_aliased() -> None:
    # A fine checkerboard "face" 800 px wide shrinks 5x into the crop: averaged, it is flat grey;
    # point-sampled it would be a moire of black and white.
    board = ((np.indices((900, 900)).sum(axis=0) % 2) * 255).astype(np.uint8)
    image = np.repeat(board[:, :, None], 3, axis=2)
    crop = crop_faces(image, [make_track([50, 50, 850, 850])], CropConfig(mode="box", margin=0.0))[0]
    inner = crop[10:150, 10:150].astype(float)
    assert abs(inner.mean() - 127.5) < 3
    assert inner.std() < 6


def test_large_face_crop_matches_a_plain_resize() -> None:
    image = cv2.resize(data.astronaut(), (1536, 1536), interpolation=cv2.INTER_CUBIC)
    box = np.array([300, 200, 1100, 1000], np.float32)
    crop = crop_faces(image, [make_track(box)], CropConfig(mode="box", margin=0.0))[0]
    reference = cv2.resize(image[200:1000, 300:1100], (160, 160), interpolation=cv2.INTER_AREA)
    assert np.abs(crop.astype(float) - reference.astype(float)).mean() < 3.0
