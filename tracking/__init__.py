"""Face detection (MTCNN), Kalman-filter tracking and face crops.

Never imports ``engine`` or ``stream``.
"""

from tracking.detection import Detection
from tracking.track import Track, TrackState

__all__ = ["Detection", "Track", "TrackState"]
