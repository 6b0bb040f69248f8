"""The reader thread behind every source: live sources keep the newest frame, files queue.

Live inputs (cameras, streams, screens, and files paced to real time) must never make the
pipeline fall behind the present, so the reader keeps only the newest frame and counts the frames
the pipeline never saw. Files read as fast as possible go through a bounded queue instead: the
reader blocks when the pipeline is slower (back-pressure), so no frame is lost and memory stays
bounded.
"""

from __future__ import annotations

import logging
import queue
import threading
import time

from stream.contracts import Frame
from stream.sources.source import FrameGrabber, SourceError

logger = logging.getLogger(__name__)

# How often a blocked put re-checks the stop flag; bounds how long stop() waits on a full queue.
_STOP_POLL_S = 0.05
# How long stop() waits for the reader thread before giving up on it (it is a daemon thread).
_JOIN_TIMEOUT_S = 5.0


class FrameReader:
    """Runs a ``FrameGrabber`` on its own thread and implements ``stream.sources.Source``.

    Args:
        grabber: the input-specific part.
        source_id: the name put on every frame (must be safe to log).
        keep_latest: keep only the newest frame and count drops (live sources); False queues every
            frame with back-pressure (files).
        pace_realtime: sleep so frames come out at their media timestamps (a file played like a
            camera); implies ``keep_latest``.
        queue_size: frames buffered when ``keep_latest`` is False.
    """

    def __init__(
        self,
        grabber: FrameGrabber,
        *,
        source_id: str | None = None,
        keep_latest: bool | None = None,
        pace_realtime: bool = False,
        queue_size: int = 8,
    ) -> None:
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        self._grabber = grabber
        self.source_id = source_id if source_id is not None else grabber.name
        self._pace = pace_realtime
        self._keep_latest = grabber.live or pace_realtime if keep_latest is None else keep_latest
        self.live = self._keep_latest
        self._queue: queue.Queue[Frame | None] = queue.Queue(maxsize=queue_size)
        self._latest: Frame | None = None
        self._condition = threading.Condition()
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        self._finished = False
        self._error: SourceError | None = None
        self._frames_read = 0
        self._frames_dropped = 0
        self._clock_origin_s = time.monotonic()

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Open the input (raising ``SourceError`` here if it cannot be opened) and start reading."""
        if self._thread is not None:
            raise RuntimeError(f"source {self.source_id} already started")
        self._grabber.open()
        self._clock_origin_s = time.monotonic()
        self._thread = threading.Thread(target=self._run, name=f"source-{self.source_id}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the reader thread and close the input. Safe to call more than once."""
        self._stop_event.set()
        self._grabber.interrupt()
        with self._condition:
            self._condition.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=_JOIN_TIMEOUT_S)
            if self._thread.is_alive():
                # Still inside a read: closing the input under it from this thread could hang
                # or crash the decoder. The thread closes it itself when the read returns.
                logger.warning(
                    "reader thread of %s did not stop within %.0f s; it closes the input after its read",
                    self.source_id,
                    _JOIN_TIMEOUT_S,
                )
                return
        self._grabber.close()

    def __enter__(self) -> FrameReader:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- reading ---------------------------------------------------------------------------

    def read(self, timeout_s: float | None = None) -> Frame | None:
        """Next frame; None on timeout or at the end (see ``ended``). Raises the reader's error."""
        if self._keep_latest:
            return self._read_latest(timeout_s)
        return self._read_queued(timeout_s)

    def _read_latest(self, timeout_s: float | None) -> Frame | None:
        with self._condition:
            deadline = None if timeout_s is None else time.monotonic() + timeout_s
            while self._latest is None and not self._finished and not self._stop_event.is_set():
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._condition.wait(remaining)
            frame, self._latest = self._latest, None
            if frame is None and self._error is not None:
                error, self._error = self._error, None
                raise error
            return frame

    def _read_queued(self, timeout_s: float | None) -> Frame | None:
        if self._finished and self._queue.empty():
            self._raise_pending_error()
            return None
        try:
            frame = self._queue.get(timeout=timeout_s) if timeout_s != 0 else self._queue.get_nowait()
        except queue.Empty:
            return None
        if frame is None:
            # The end marker: keep it visible to later reads.
            self._finished = True
            self._raise_pending_error()
        return frame

    def _raise_pending_error(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    @property
    def ended(self) -> bool:
        if self._keep_latest:
            with self._condition:
                return (self._finished or self._stop_event.is_set()) and self._latest is None
        return (self._finished or self._stop_event.is_set()) and self._queue.empty()

    @property
    def frames_dropped(self) -> int:
        return self._frames_dropped

    @property
    def frames_read(self) -> int:
        return self._frames_read

    @property
    def clock_origin_s(self) -> float:
        return self._clock_origin_s

    @property
    def nominal_fps(self) -> float | None:
        """The input's own frame rate when it has one (video files), else None."""
        fps = getattr(self._grabber, "fps", None)
        return float(fps) if fps else None

    # -- the reader thread -----------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._read_loop()
        except SourceError as error:
            logger.error("%s", error)
            self._error = error
        except Exception as error:  # the thread must report, not die silently
            logger.exception("reader thread of %s failed", self.source_id)
            self._error = SourceError(f"{self.source_id}: reading failed: {error}")
            self._error.__cause__ = error
        finally:
            try:
                self._grabber.close()
            finally:
                self._finish()

    def _read_loop(self) -> None:
        while not self._stop_event.is_set():
            grabbed = self._grabber.grab()
            if grabbed is None:
                return
            now = time.monotonic()
            if grabbed.timestamp_s is None:
                timestamp_s = now - self._clock_origin_s
            else:
                timestamp_s = grabbed.timestamp_s
                if self._pace:
                    delay = self._clock_origin_s + timestamp_s - now
                    if delay > 0 and self._stop_event.wait(delay):
                        return
            frame = Frame(
                image=grabbed.image,
                index=self._frames_read,
                timestamp_s=timestamp_s,
                source_id=self.source_id,
            )
            self._frames_read += 1
            if self._keep_latest:
                self._publish_latest(frame)
            else:
                self._put_queued(frame)

    def _publish_latest(self, frame: Frame) -> None:
        with self._condition:
            if self._latest is not None:
                self._frames_dropped += 1
            self._latest = frame
            self._condition.notify_all()

    def _put_queued(self, frame: Frame) -> None:
        while not self._stop_event.is_set():
            try:
                self._queue.put(frame, timeout=_STOP_POLL_S)
                return
            except queue.Full:
                continue

    def _finish(self) -> None:
        if self._keep_latest:
            with self._condition:
                self._finished = True
                self._condition.notify_all()
            return
        while not self._stop_event.is_set():
            try:
                self._queue.put(None, timeout=_STOP_POLL_S)
                return
            except queue.Full:
                continue
        self._finished = True
