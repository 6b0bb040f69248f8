"""A local camera by index, read with OpenCV; reopened with backoff if it disappears."""

from __future__ import annotations

import logging
import threading

import cv2

from stream.sources.network import ReconnectPolicy
from stream.sources.source import GrabbedImage, SourceError

logger = logging.getLogger(__name__)


class WebcamGrabber:
    """Reads camera ``index`` (``/dev/video<index>`` on Linux); implements ``FrameGrabber``.

    ``open`` raises ``SourceError`` when no camera answers at that index. A camera that stops
    delivering frames is reopened with the backoff of ``reconnect``.
    """

    live = True

    def __init__(self, index: int, *, reconnect: ReconnectPolicy | None = None) -> None:
        if index < 0:
            raise ValueError(f"webcam index must be >= 0, got {index}")
        self.index = index
        self.name = f"webcam{index}"
        self._reconnect = reconnect or ReconnectPolicy()
        self._capture: cv2.VideoCapture | None = None
        self._interrupted = threading.Event()

    def open(self) -> None:
        capture = cv2.VideoCapture(self.index)
        if not capture.isOpened():
            capture.release()
            raise SourceError(f"cannot open webcam {self.index}: no camera at that index (or it is in use)")
        self._capture = capture

    def grab(self) -> GrabbedImage | None:
        while not self._interrupted.is_set():
            if self._capture is not None:
                ok, image_bgr = self._capture.read()
                if ok and image_bgr is not None:
                    return GrabbedImage(image=cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB))
                logger.warning("webcam %d stopped delivering frames", self.index)
                self._capture.release()
                self._capture = None
            if not self._reopen():
                return None
        return None

    def _reopen(self) -> bool:
        for attempt, delay_s in enumerate(self._reconnect.delays_s(), start=1):
            logger.warning("reopening webcam %d in %.1f s (attempt %d)", self.index, delay_s, attempt)
            if self._interrupted.wait(delay_s):
                return False
            try:
                self.open()
            except SourceError as error:
                logger.warning("%s", error)
                continue
            return True
        raise SourceError(f"gave up on webcam {self.index} after {self._reconnect.max_attempts} attempts")

    def close(self) -> None:
        self._interrupted.set()
        if self._capture is not None:
            self._capture.release()
            self._capture = None

    def interrupt(self) -> None:
        self._interrupted.set()
