"""Face detection (MTCNN), Kalman-filter tracking and face crops.

Never imports ``engine`` or ``stream``. Importing is cheap: torch and facenet-pytorch load when
the first ``FaceDetector`` is built.
"""

from tracking.config import CropConfig, DetectorConfig, TrackerConfig
from tracking.crops import crop_faces
from tracking.detection import Detection
from tracking.detector import FaceDetector
from tracking.track import Track, TrackState
from tracking.tracker import FaceTracker

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
