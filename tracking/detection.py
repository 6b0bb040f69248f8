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
        landmarks_5x2: float32 array of shape (5, 2), in image order as MTCNN gives them: the eye
            on the image's left (the subject's right eye), the other eye, nose, the mouth corner on
            the image's left, the other mouth corner.
    """

    box_xyxy: np.ndarray
    confidence: float
    landmarks_5x2: np.ndarray
