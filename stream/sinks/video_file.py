"""An annotated video file (``deepwatch run --out FILE.mp4``)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from stream.contracts import Event, FrameResult

logger = logging.getLogger(__name__)

# Codecs OpenCV's bundled FFmpeg can always write, by container.
_FOURCC_BY_SUFFIX = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}


class VideoFileSink:
    """Writes annotated frames of one source to ``path`` at ``fps``.

    The writer opens on the first frame (its size is the video's size). Frames of other sources
    are ignored; with several sources, make one sink per source. Raises ``ValueError`` for an
    unsupported extension and ``OSError`` when the file cannot be written.
    """

    needs_annotated = True

    def __init__(self, path: str | Path, *, fps: float = 25.0, source_id: str | None = None) -> None:
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in _FOURCC_BY_SUFFIX:
            raise ValueError(
                f"video output must end in one of {sorted(_FOURCC_BY_SUFFIX)}, got {self.path.name!r}"
            )
        if not fps > 0:
            raise ValueError(f"fps must be > 0, got {fps!r}")
        self._fourcc = cv2.VideoWriter.fourcc(*_FOURCC_BY_SUFFIX[suffix])
        self._fps = fps
        self._source_id = source_id
        self._writer: cv2.VideoWriter | None = None
        self._size: tuple[int, int] | None = None
        self.frames_written = 0

    def write(self, result: FrameResult, annotated: np.ndarray | None) -> None:
        if annotated is None:
            return
        if self._source_id is None:
            self._source_id = result.frame.source_id
        elif result.frame.source_id != self._source_id:
            return
        height, width = annotated.shape[:2]
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = cv2.VideoWriter(str(self.path), self._fourcc, self._fps, (width, height))
            if not self._writer.isOpened():
                raise OSError(f"cannot write video file {self.path}")
            self._size = (width, height)
        elif (width, height) != self._size:
            # A source that changes resolution mid-stream (RTSP renegotiation): keep the file valid.
            annotated = cv2.resize(annotated, self._size)
        self._writer.write(cv2.cvtColor(annotated, cv2.COLOR_RGB2BGR))
        self.frames_written += 1

    def write_events(self, events: Sequence[Event]) -> None:
        pass  # events outside a frame have nothing to draw

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None
            logger.info("wrote %d frames to %s", self.frames_written, self.path)
