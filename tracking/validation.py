"""Checks on what crosses into the tracking stage: frames, detections and timestamps."""

from __future__ import annotations

import math

import numpy as np

from tracking.detection import Detection


def check_frame(image: object, name: str = "image") -> np.ndarray:
    """Return ``image`` if it is an H x W x 3 uint8 RGB array with H, W > 0, else raise.

    Raises:
        TypeError: not a numpy array.
        ValueError: wrong shape or dtype, saying expected versus got.
    """
    if not isinstance(image, np.ndarray):
        raise TypeError(f"{name} must be a numpy array HxWx3 uint8 RGB, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or 0 in image.shape:
        raise ValueError(f"{name} must be HxWx3 uint8 RGB, got {image.shape} {image.dtype}")
    return image


def check_detections(detections: object) -> list[Detection]:
    """Return ``detections`` as a list if every item is a well-formed ``Detection``, else raise.

    Well-formed: a finite (4,) box with x2 > x1 and y2 > y1, and finite (5, 2) landmarks.

    Raises:
        TypeError: not a list or tuple of ``Detection``.
        ValueError: a malformed box or landmarks, saying expected versus got.
    """
    if not isinstance(detections, list | tuple):
        raise TypeError(f"detections must be a list of Detection or None, got {type(detections).__name__}")
    for index, detection in enumerate(detections):
        if not isinstance(detection, Detection):
            raise TypeError(f"detections[{index}] must be a Detection, got {type(detection).__name__}")
        box = np.asarray(detection.box_xyxy)
        if box.shape != (4,) or not np.all(np.isfinite(box)) or box[2] <= box[0] or box[3] <= box[1]:
            raise ValueError(
                f"detections[{index}].box_xyxy must be finite (4,) x1, y1, x2, y2 with x2 > x1 and "
                f"y2 > y1, got {box!r}"
            )
        landmarks = np.asarray(detection.landmarks_5x2)
        if landmarks.shape != (5, 2) or not np.all(np.isfinite(landmarks)):
            raise ValueError(
                f"detections[{index}].landmarks_5x2 must be finite (5, 2), got shape {landmarks.shape}"
            )
    return list(detections)


def check_timestamp(timestamp_s: object, previous_s: float | None) -> float:
    """Return ``timestamp_s`` as a float if it is finite and not before ``previous_s``, else raise."""
    if isinstance(timestamp_s, bool) or not isinstance(timestamp_s, int | float | np.floating | np.integer):
        raise TypeError(f"timestamp_s must be a number of seconds, got {type(timestamp_s).__name__}")
    value = float(timestamp_s)
    if not math.isfinite(value):
        raise ValueError(f"timestamp_s must be finite, got {timestamp_s!r}")
    if previous_s is not None and value < previous_s:
        raise ValueError(f"timestamp_s must not decrease: expected >= {previous_s}, got {value}")
    return value
