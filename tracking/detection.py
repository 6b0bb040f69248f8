"""Face detections: the data a detector hands to the tracker."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class Detection:
    """One face found in one frame.

    Coordinates are pixels of the frame the detector was given (x to the right, y down).

    Attributes:
        box_xyxy: float32 array of shape (4,): x1, y1, x2, y2.
        confidence: detector probability in [0, 1].
        landmarks_5x2: float32 array of shape (5, 2): left eye, right eye, nose,
            left mouth corner, right mouth corner (the subject's left is the image right).
    """

    box_xyxy: np.ndarray
    confidence: float
    landmarks_5x2: np.ndarray
