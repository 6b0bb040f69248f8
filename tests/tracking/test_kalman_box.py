"""The constant-velocity box filter."""

from __future__ import annotations

import numpy as np
import pytest

from tracking.kalman import MIN_BOX_SIDE_PX, KalmanBoxFilter, box_to_state


def test_starts_at_the_first_box() -> None:
    kalman = KalmanBoxFilter(np.array([10, 20, 50, 80], np.float32), 0.05, 2.0)
    np.testing.assert_allclose(kalman.box_xyxy, [10, 20, 50, 80], atol=1e-5)
    np.testing.assert_allclose(box_to_state(np.array([10, 20, 50, 80])), [30, 50, 40, 60])
    assert kalman.size == pytest.approx(np.sqrt(40 * 60))


def test_learns_constant_velocity_and_extrapolates_it() -> None:
    dt = 1 / 25
    kalman = KalmanBoxFilter(np.array([0, 0, 100, 100], np.float32), 0.05, 2.0)
    for step in range(1, 40):
        kalman.predict(dt)
        shift = 250.0 * step * dt  # 250 px/s to the right
        kalman.update(np.array([shift, 0, shift + 100, 100], np.float32))
    np.testing.assert_allclose(kalman.velocity_px_per_s[:2], [250.0, 0.0], atol=10.0)
    kalman.predict(0.4)
    expected = 250.0 * 39 * dt + 250.0 * 0.4
    assert float(kalman.box_xyxy[0]) == pytest.approx(expected, abs=5.0)


def test_zero_time_step_changes_nothing() -> None:
    kalman = KalmanBoxFilter(np.array([0, 0, 10, 10], np.float32), 0.05, 2.0)
    before = kalman.box_xyxy.copy()
    kalman.predict(0.0)
    np.testing.assert_array_equal(kalman.box_xyxy, before)


def test_shrinking_box_never_inverts() -> None:
    kalman = KalmanBoxFilter(np.array([0, 0, 100, 100], np.float32), 0.05, 2.0)
    for step in range(1, 10):
        kalman.predict(0.04)
        side = 100 - 10 * step
        kalman.update(np.array([50 - side / 2, 50 - side / 2, 50 + side / 2, 50 + side / 2], np.float32))
    for _ in range(50):
        kalman.predict(0.04)
        box = kalman.box_xyxy
        assert box[2] - box[0] >= MIN_BOX_SIDE_PX - 1e-4 and box[3] - box[1] >= MIN_BOX_SIDE_PX - 1e-4
