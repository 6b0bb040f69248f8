"""Face detection (MTCNN), Kalman-filter tracking and face crops.

Never imports ``engine`` or ``stream``. Importing is cheap: the exports load on first use, and
torch and facenet-pytorch only when the first ``FaceDetector`` is built.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tracking.config import CropConfig, DetectorConfig, TrackerConfig
    from tracking.crops import crop_faces
    from tracking.detection import Detection
    from tracking.detector import FaceDetector
    from tracking.track import Track, TrackState
    from tracking.tracker import FaceTracker

# Exported name -> the module that defines it.
_EXPORTS = {
    "CropConfig": "tracking.config",
    "Detection": "tracking.detection",
    "DetectorConfig": "tracking.config",
    "FaceDetector": "tracking.detector",
    "FaceTracker": "tracking.tracker",
    "Track": "tracking.track",
    "TrackState": "tracking.track",
    "TrackerConfig": "tracking.config",
    "crop_faces": "tracking.crops",
}

__all__ = [
    "CropConfig",
    "Detection",
    "DetectorConfig",
    "FaceDetector",
    "FaceTracker",
    "Track",
    "TrackState",
    "TrackerConfig",
    "crop_faces",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tracking' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
