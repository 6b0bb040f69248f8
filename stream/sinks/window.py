"""An OpenCV window showing the annotated video (``deepwatch run --show``)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import cv2
import numpy as np

from stream.contracts import Event, FrameResult

logger = logging.getLogger(__name__)

_QUIT_KEYS = (ord("q"), 27)  # q and Esc


class WindowSink:
    """Shows frames in a window per source; ``closed`` turns True when the user presses q or Esc
    or closes the window, which the run loop treats as a request to stop.

    Must be used from one thread (OpenCV's GUI calls are not thread-safe).
    """

    needs_annotated = True

    def __init__(self, title: str = "deepwatch") -> None:
        self._title = title
        self._windows: dict[str, str] = {}
        self.closed = False

    def write(self, result: FrameResult, annotated: np.ndarray | None) -> None:
        if self.closed or annotated is None:
            return
        source_id = result.frame.source_id
        name = self._windows.get(source_id)
        if name is None:
            name = self._title if not self._windows else f"{self._title} - {source_id}"
            # Autosize shows pixels 1:1; GUI_NORMAL leaves out Qt's toolbar and status bar.
            cv2.namedWindow(name, cv2.WINDOW_AUTOSIZE | cv2.WINDOW_GUI_NORMAL)
            self._windows[source_id] = name
        cv2.imshow(name, cv2.cvtColor(annotated, cv2.COLOR_RGB2BGR))
        key = cv2.waitKey(1) & 0xFF
        if key in _QUIT_KEYS:
            logger.info("window: quit key pressed")
            self.closed = True
        elif cv2.getWindowProperty(name, cv2.WND_PROP_VISIBLE) < 1:
            logger.info("window closed")
            self.closed = True

    def write_events(self, events: Sequence[Event]) -> None:
        pass  # events outside a frame have nothing to show

    def close(self) -> None:
        for name in self._windows.values():
            try:
                cv2.destroyWindow(name)
            except cv2.error as error:
                logger.debug("destroying window %s: %s", name, error)
        self._windows.clear()
        cv2.waitKey(1)
