"""Full-frame pseudo-fakes: where they change the frame, what they keep, and per-clip coherence."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import skimage.data

from stream.training import blends
from stream.training.evidence_data import clip_versions

# MTCNN's landmarks of the astronaut in skimage.data.astronaut() (512 x 512), frame pixels.
ASTRONAUT_LANDMARKS = np.array(
    [[204.0, 101.7], [248.1, 103.7], [226.1, 129.2], [202.2, 140.1], [247.1, 142.3]]
)


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return np.ascontiguousarray(skimage.data.astronaut())


@pytest.fixture(scope="module")
def other_person() -> tuple[np.ndarray, np.ndarray]:
    """A 'face' unlike the astronaut's: a saturated checkerboard, with landmarks placed on it."""
    yy, xx = np.mgrid[0:300, 0:300]
    board = (((yy // 12) + (xx // 12)) % 2).astype(np.uint8)
    image = np.stack([board * 220, 255 - board * 200, np.full_like(board, 90)], axis=2).astype(np.uint8)
    marks = np.array([[120.0, 130.0], [180.0, 130.0], [150.0, 165.0], [125.0, 195.0], [175.0, 195.0]])
    return image, marks


def alpha_parameters(seed: int) -> blends.CrossBlendParameters:
    return dataclasses.replace(blends.sample_cross_parameters(np.random.default_rng(seed)), poisson=False)


def test_cross_person_blend_keeps_the_head_and_replaces_the_inner_face(
    astronaut: np.ndarray, other_person: tuple[np.ndarray, np.ndarray]
) -> None:
    source, source_marks = other_person
    fake, mask = blends.cross_person_blend(
        astronaut, ASTRONAUT_LANDMARKS, source, source_marks, alpha_parameters(0)
    )
    assert fake.shape == astronaut.shape and fake.dtype == np.uint8
    assert mask.shape == astronaut.shape[:2] and 0.0 <= mask.min() and mask.max() <= 1.0
    difference = np.abs(fake.astype(int) - astronaut.astype(int)).sum(axis=2)
    # The head, hair, background: untouched wherever the mask is zero.
    assert mask[0:60].max() == 0 and mask[:, :150].max() == 0
    assert difference[mask == 0].max() == 0
    # The inner face (between eyes and mouth) is replaced by the other person's pattern.
    nose_x, nose_y = ASTRONAUT_LANDMARKS[2].astype(int)
    assert mask[nose_y, nose_x] > 0.8
    inner = difference[nose_y - 15 : nose_y + 15, nose_x - 15 : nose_x + 15]
    assert inner.mean() > 40


def test_cross_person_mask_stays_near_the_landmark_hull(
    astronaut: np.ndarray, other_person: tuple[np.ndarray, np.ndarray]
) -> None:
    source, source_marks = other_person
    eyes = blends.eye_distance_px(ASTRONAUT_LANDMARKS)
    for seed in range(5):
        _, mask = blends.cross_person_blend(
            astronaut,
            ASTRONAUT_LANDMARKS,
            source,
            source_marks,
            blends.sample_cross_parameters(np.random.default_rng(seed)),
        )
        ys, xs = np.nonzero(mask > 0.01)
        centre = ASTRONAUT_LANDMARKS.mean(axis=0)
        # Nothing beyond ~2 eye distances of the face centre (hull + growth + feathering).
        assert np.hypot(xs - centre[0], ys - centre[1]).max() < 2.0 * eyes


def test_poisson_paste_reports_the_area_it_touched(
    astronaut: np.ndarray, other_person: tuple[np.ndarray, np.ndarray]
) -> None:
    source, source_marks = other_person
    parameters = dataclasses.replace(alpha_parameters(1), poisson=True)
    fake, mask = blends.cross_person_blend(astronaut, ASTRONAUT_LANDMARKS, source, source_marks, parameters)
    difference = np.abs(fake.astype(int) - astronaut.astype(int)).sum(axis=2)
    assert difference[mask == 0].max() == 0
    assert mask[int(ASTRONAUT_LANDMARKS[2, 1]), int(ASTRONAUT_LANDMARKS[2, 0])] == 1.0


def test_self_blend_on_the_full_frame_changes_only_the_masked_area(astronaut: np.ndarray) -> None:
    parameters = blends.sample_self_blend_parameters(np.random.default_rng(3), ASTRONAUT_LANDMARKS)
    fake, mask = blends.self_blend_frame(astronaut, ASTRONAUT_LANDMARKS, parameters)
    difference = np.abs(fake.astype(int) - astronaut.astype(int)).sum(axis=2)
    assert difference[mask == 0].max() == 0
    assert difference[mask > 0.9 * parameters.blend_ratio].mean() > 3.0


def test_compression_round_trips_keep_size_and_degrade_with_strength(astronaut: np.ndarray) -> None:
    frame = astronaut[:301, :299]  # odd sides: H.264 pads and cuts back
    errors = {}
    for name, compression in {
        "none": blends.Compression("none"),
        "jpeg95": blends.Compression("jpeg", quality=95),
        "jpeg30": blends.Compression("jpeg", quality=30),
        "h264_18": blends.Compression("h264", crf=18),
        "h264_40": blends.Compression("h264", crf=40),
    }.items():
        (out,) = blends.compress_frames([frame], compression)
        assert out.shape == frame.shape and out.dtype == np.uint8
        errors[name] = float(np.abs(out.astype(int) - frame.astype(int)).mean())
    assert errors["none"] == 0
    assert 0 < errors["jpeg95"] < errors["jpeg30"]
    assert 0 < errors["h264_18"] < errors["h264_40"]
    with pytest.raises(ValueError, match="codec"):
        blends.compress_frames([frame], blends.Compression("vp9"))


def test_clip_versions_use_one_recipe_per_clip(
    astronaut: np.ndarray, other_person: tuple[np.ndarray, np.ndarray]
) -> None:
    frames = [astronaut] * 4
    landmarks = np.stack([ASTRONAUT_LANDMARKS] * 4)
    versions = clip_versions(frames, landmarks, [other_person], np.random.default_rng(7), crosses=2)
    assert set(versions) == {"real", "cross0", "cross1", "sbi"}
    for name, crops in versions.items():
        assert crops.shape == (4, 160, 160, 3)
        # Identical input frames + one recipe per clip -> frames differ only by the codec.
        spread = np.abs(crops.astype(int) - crops[:1].astype(int)).mean()
        assert spread < 2.0, name
    # The swaps differ from the real clip inside the face.
    assert (
        np.abs(versions["cross0"].astype(int) - versions["real"].astype(int))[:, 70:110, 60:100].mean() > 20
    )


def test_bad_inputs_are_refused(astronaut: np.ndarray) -> None:
    parameters = alpha_parameters(0)
    with pytest.raises(ValueError, match="target must be H x W x 3 uint8"):
        blends.cross_person_blend(
            astronaut[..., 0], ASTRONAUT_LANDMARKS, astronaut, ASTRONAUT_LANDMARKS, parameters
        )
    with pytest.raises(ValueError, match="source_landmarks must be 5 x 2"):
        blends.cross_person_blend(astronaut, ASTRONAUT_LANDMARKS, astronaut, np.zeros((4, 2)), parameters)
    with pytest.raises(ValueError, match="T x 5 x 2"):
        clip_versions(
            [astronaut], np.zeros((2, 5, 2)), [(astronaut, ASTRONAUT_LANDMARKS)], np.random.default_rng(0)
        )
