"""The artifact study's statistics react to what they claim to measure."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from stream.training.artifact_study import INNER, compare, crop_statistics


def textured_crop() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(60, 200, (160, 160, 3), dtype=np.uint8)


def test_blurring_the_inner_face_lowers_the_sharpness_ratio() -> None:
    crop = textured_crop()
    blurred = crop.copy()
    blurred[INNER] = cv2.GaussianBlur(crop, (9, 9), 3)[INNER]
    sharp, soft = crop_statistics(crop), crop_statistics(blurred)
    assert 0.9 < sharp["lap_ratio"] < 1.1
    assert soft["lap_ratio"] < 0.5 * sharp["lap_ratio"]
    assert soft["hf_ratio"] < 0.5 * sharp["hf_ratio"]


def test_brightening_the_inner_face_raises_the_lightness_offset() -> None:
    crop = textured_crop()
    brighter = crop.copy()
    brighter[INNER] = np.clip(crop[INNER].astype(int) + 30, 0, 255).astype(np.uint8)
    assert crop_statistics(brighter)["dL"] > crop_statistics(crop)["dL"] + 15


def test_compare_counts_pairs_where_the_fake_is_higher() -> None:
    names = ("lap_ratio", "hf_ratio", "dL", "da", "db", "std_ratio")
    real = [dict.fromkeys(names, 1.0), dict.fromkeys(names, 2.0)]
    fake = [dict.fromkeys(names, 1.5), dict.fromkeys(names, 1.0)]
    table = compare(real, fake)
    assert table["lap_ratio"] == {"real_median": 1.5, "fake_median": 1.25, "fake_higher": "1/2"}


def test_a_crop_outside_the_frame_is_refused() -> None:
    with pytest.raises(ValueError, match="outside the frame"):
        crop_statistics(np.zeros((160, 160, 3), np.uint8))
