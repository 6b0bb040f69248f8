"""Constant-velocity Kalman filter of one face box, on filterpy's ``KalmanFilter``."""

from __future__ import annotations

import numpy as np
from filterpy.kalman import KalmanFilter

# State: centre x, centre y, width, height (pixels), then their rates (pixels per second).
STATE_DIM = 8
MEASUREMENT_DIM = 4

# A newborn track's speed is unknown: allow up to about two box sizes per second (one standard
# deviation) so the first few detections set the velocity instead of the prior.
INITIAL_SPEED_STD_SIZES_PER_S = 2.0

# Coasting can shrink a box through a negative size rate; a box keeps at least this side.
MIN_BOX_SIDE_PX = 1.0


def box_to_state(box_xyxy: np.ndarray) -> np.ndarray:
    """(x1, y1, x2, y2) -> (centre x, centre y, width, height)."""
    x1, y1, x2, y2 = (float(v) for v in box_xyxy)
    return np.array([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], dtype=np.float64)


def box_size(width: float, height: float) -> float:
    """Geometric mean of the sides: the scale that noise and distances are measured in."""
    return float(np.sqrt(max(width, MIN_BOX_SIDE_PX) * max(height, MIN_BOX_SIDE_PX)))


class KalmanBoxFilter:
    """Kalman estimate of one box moving at constant velocity (white-noise acceleration).

    Noise scales with the box size, so a face near the camera and a distant one are smoothed
    alike. Time is in seconds: ``predict(dt_s)`` advances the state by ``dt_s``.

    Args:
        box_xyxy: the first detection's box, pixels.
        measurement_noise: detection noise, standard deviation in box sizes.
        process_noise: acceleration noise, standard deviation in box sizes per second squared.
    """

    def __init__(self, box_xyxy: np.ndarray, measurement_noise: float, process_noise: float) -> None:
        self._measurement_noise = measurement_noise
        self._process_noise = process_noise
        self._filter = KalmanFilter(dim_x=STATE_DIM, dim_z=MEASUREMENT_DIM)
        self._filter.H = np.hstack([np.eye(MEASUREMENT_DIM), np.zeros((MEASUREMENT_DIM, MEASUREMENT_DIM))])
        measured = box_to_state(box_xyxy)
        self._filter.x = np.concatenate([measured, np.zeros(MEASUREMENT_DIM)]).reshape(STATE_DIM, 1)
        size = box_size(measured[2], measured[3])
        position_var = (measurement_noise * size) ** 2
        speed_var = (INITIAL_SPEED_STD_SIZES_PER_S * size) ** 2
        self._filter.P = np.diag([position_var] * MEASUREMENT_DIM + [speed_var] * MEASUREMENT_DIM)

    @property
    def size(self) -> float:
        width, height = self._filter.x[2, 0], self._filter.x[3, 0]
        return box_size(width, height)

    def predict(self, dt_s: float) -> None:
        """Advance the state by ``dt_s`` seconds (0 leaves it as it is)."""
        if dt_s <= 0.0:
            return
        transition = np.eye(STATE_DIM)
        transition[:MEASUREMENT_DIM, MEASUREMENT_DIM:] = dt_s * np.eye(MEASUREMENT_DIM)
        # Discretised continuous white-noise acceleration, per coordinate.
        spectral_density = (self._process_noise * self.size) ** 2
        block = spectral_density * np.array([[dt_s**3 / 3, dt_s**2 / 2], [dt_s**2 / 2, dt_s]])
        process = np.kron(block, np.eye(MEASUREMENT_DIM))
        self._filter.predict(F=transition, Q=process)
        self._filter.x[2:4, 0] = np.maximum(self._filter.x[2:4, 0], MIN_BOX_SIDE_PX)

    def update(self, box_xyxy: np.ndarray) -> None:
        """Correct the state with a matched detection box (pixels)."""
        measured = box_to_state(box_xyxy)
        noise_var = (self._measurement_noise * box_size(measured[2], measured[3])) ** 2
        self._filter.update(measured.reshape(MEASUREMENT_DIM, 1), R=noise_var * np.eye(MEASUREMENT_DIM))
        self._filter.x[2:4, 0] = np.maximum(self._filter.x[2:4, 0], MIN_BOX_SIDE_PX)

    @property
    def box_xyxy(self) -> np.ndarray:
        """The current estimate as a float32 (x1, y1, x2, y2) box."""
        centre_x, centre_y, width, height = self._filter.x[:MEASUREMENT_DIM, 0]
        return np.array(
            [centre_x - width / 2, centre_y - height / 2, centre_x + width / 2, centre_y + height / 2],
            dtype=np.float32,
        )

    @property
    def velocity_px_per_s(self) -> np.ndarray:
        """Rates of centre x, centre y, width and height, pixels per second (float64, (4,))."""
        return self._filter.x[MEASUREMENT_DIM:, 0].copy()
