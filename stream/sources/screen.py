"""A region of the screen, captured with mss (for watching a video-call window)."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from stream.sources.source import GrabbedImage, SourceError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScreenRegion:
    """A rectangle in screen pixels: left, top, width, height."""

    left: int
    top: int
    width: int
    height: int

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"screen region needs width and height > 0, got {self.width}x{self.height}")
        if self.left < 0 or self.top < 0:
            raise ValueError(f"screen region must start at x, y >= 0, got {self.left},{self.top}")


class ScreenGrabber:
    """Captures ``region`` at up to ``max_fps``; implements ``FrameGrabber``.

    ``open`` raises ``SourceError`` when there is no display or the region lies outside it.
    The mss handle is made on the reader thread, because mss handles must not cross threads.
    """

    live = True

    def __init__(self, region: ScreenRegion, *, max_fps: float = 30.0) -> None:
        if max_fps <= 0:
            raise ValueError(f"max_fps must be > 0, got {max_fps}")
        self.region = region
        self.name = f"screen:{region.left},{region.top},{region.width},{region.height}"
        self._interval_s = 1 / max_fps
        self._grabber: Any = None
        self._next_due_s = 0.0
        self._interrupted = threading.Event()

    def open(self) -> None:
        import mss
        import mss.exception

        try:
            with _new_mss() as probe:
                screen = probe.monitors[0]
        except mss.exception.ScreenShotError as error:
            raise SourceError(
                f"cannot capture the screen for {self.name}: {error} (is DISPLAY set?)"
            ) from error
        right = screen["left"] + screen["width"]
        bottom = screen["top"] + screen["height"]
        if self.region.left + self.region.width > right or self.region.top + self.region.height > bottom:
            raise SourceError(
                f"{self.name} lies outside the screen, which is {screen['width']}x{screen['height']} "
                f"at {screen['left']},{screen['top']}"
            )

    def grab(self) -> GrabbedImage | None:
        if self._grabber is None:
            self._grabber = _new_mss()
        wait_s = self._next_due_s - time.monotonic()
        if wait_s > 0 and self._interrupted.wait(wait_s):
            return None
        if self._interrupted.is_set():
            return None
        self._next_due_s = time.monotonic() + self._interval_s
        shot = self._grabber.grab(
            {
                "left": self.region.left,
                "top": self.region.top,
                "width": self.region.width,
                "height": self.region.height,
            }
        )
        bgra = np.asarray(shot, dtype=np.uint8)
        return GrabbedImage(image=np.ascontiguousarray(bgra[:, :, 2::-1]))

    def close(self) -> None:
        """Close the capture handle; ``FrameReader`` calls this on the reader thread, which made
        it (closing an mss handle from another thread breaks X connections process-wide)."""
        self._interrupted.set()
        if self._grabber is not None:
            self._grabber.close()
            self._grabber = None

    def interrupt(self) -> None:
        self._interrupted.set()


def _new_mss() -> Any:
    import mss

    # mss 10 renamed the factory to MSS and deprecated mss.mss.
    factory = getattr(mss, "MSS", None) or mss.mss
    return factory()
