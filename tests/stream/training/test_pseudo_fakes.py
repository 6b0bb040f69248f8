"""Self-blended pseudo-fakes: local, coherent over a clip, reproducible, and visibly different."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import skimage.data

from stream.training.pseudo_fakes import landmark_mask, sample_parameters, self_blend, self_blend_clip

# MTCNN's landmarks of the astronaut's face in the crop below (eyes, nose, mouth corners).
LANDMARKS = np.array([[56.0, 54.2], [78.7, 55.7], [67.1, 68.5], [54.4, 74.6], [77.7, 75.8]])


@pytest.fixture(scope="module")
def face_crop() -> np.ndarray:
    return cv2.resize(skimage.data.astronaut()[0:300, 100:400], (160, 160), interpolation=cv2.INTER_AREA)


def test_blend_changes_the_face_and_leaves_the_background(face_crop: np.ndarray) -> None:
    parameters = sample_parameters(np.random.default_rng(0))
    blended = self_blend(face_crop, LANDMARKS, parameters)
    assert blended.shape == face_crop.shape and blended.dtype == np.uint8
    difference = np.abs(blended.astype(int) - face_crop.astype(int)).sum(axis=2)
    mask = landmark_mask(LANDMARKS, face_crop.shape[:2], parameters)
    assert difference[mask == 0].max() == 0  # outside the soft mask nothing moves
    inside = mask > 0.9 * parameters.blend_ratio
    assert inside.sum() > 400  # the mask covers the face, not only the 5 points
    assert difference[inside].mean() > 3.0
    # The mask covers the landmarks and not the crop's corners.
    for x, y in LANDMARKS.astype(int):
        assert mask[y, x] > 0
    assert mask[0, 0] == 0 and mask[-1, -1] == 0


def test_one_parameter_set_per_clip_and_reproducible(face_crop: np.ndarray) -> None:
    clip = np.stack([face_crop] * 3)
    blended, parameters = self_blend_clip(clip, LANDMARKS, np.random.default_rng(5))
    assert blended.shape == clip.shape
    # Same frame, same landmarks -> the same fake on every frame: one coherent manipulation.
    assert np.array_equal(blended[0], blended[1]) and np.array_equal(blended[1], blended[2])
    again, parameters_again = self_blend_clip(clip, LANDMARKS, np.random.default_rng(5))
    assert np.array_equal(again, blended) and parameters_again == parameters
    other, _ = self_blend_clip(clip, LANDMARKS, np.random.default_rng(6))
    assert not np.array_equal(other, blended)


def test_mask_follows_per_frame_landmarks(face_crop: np.ndarray) -> None:
    moved = LANDMARKS + np.array([20.0, 10.0])
    landmarks = np.stack([LANDMARKS, moved])
    parameters = sample_parameters(np.random.default_rng(1))
    blended, _ = self_blend_clip(np.stack([face_crop] * 2), landmarks, np.random.default_rng(1), parameters)
    expected = self_blend(face_crop, moved, parameters)
    assert np.array_equal(blended[1], expected)


def test_bad_inputs_are_refused(face_crop: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="T x H x W x 3 uint8"):
        self_blend_clip(face_crop.astype(np.float32)[None], LANDMARKS, rng)
    with pytest.raises(ValueError, match="5 x 2 or 2 x 5 x 2"):
        self_blend_clip(np.stack([face_crop] * 2), np.zeros((3, 5, 2)), rng)
    with pytest.raises(ValueError, match="5 x 2 finite"):
        landmark_mask(np.full((5, 2), np.nan), (160, 160), sample_parameters(rng))
