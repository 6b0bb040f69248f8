"""What every source is: a started reader thread handing out ``Frame``s, and its errors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from stream.contracts import Frame


class SourceError(RuntimeError):
    """A source cannot be opened or read: unreachable, unsupported, missing or corrupt.

    The message is one line meant for the user, with credentials already removed.
    """


@dataclass(frozen=True)
class GrabbedImage:
    """One decoded image from a grabber.

    Attributes:
        image: H x W x 3 uint8 RGB.
        timestamp_s: media time for files, or None to let the reader stamp capture time.
    """

    image: np.ndarray
    timestamp_s: float | None = None


class FrameGrabber(Protocol):
    """The device- or format-specific part of a source; a ``FrameReader`` calls it from its thread.

    ``open`` raises ``SourceError`` when the input cannot be opened. ``grab`` blocks until the next
    image and returns None at the end of the input; it raises ``SourceError`` when the input breaks
    in a way the grabber cannot recover from. ``close`` is idempotent.
    """

    name: str
    """Safe-to-log name (credentials removed)."""

    live: bool
    """True for cameras, streams and screens: only the newest frame matters."""

    def open(self) -> None: ...

    def grab(self) -> GrabbedImage | None: ...

    def close(self) -> None: ...

    def interrupt(self) -> None:
        """Called from another thread on stop, to wake a ``grab`` blocked on I/O or backoff."""
        ...


class Source(Protocol):
    """A running input: what the pipeline loop reads frames from.

    ``read`` returns the next frame, or None when no frame arrived within ``timeout_s`` or the
    source has ended (check ``ended``). After the reader thread failed, ``read`` raises the
    ``SourceError`` once the frames read before the failure have been handed out.
    """

    source_id: str
    live: bool

    def start(self) -> None: ...

    def read(self, timeout_s: float | None = None) -> Frame | None: ...

    def stop(self) -> None: ...

    @property
    def ended(self) -> bool: ...

    @property
    def frames_dropped(self) -> int: ...

    @property
    def frames_read(self) -> int: ...

    @property
    def clock_origin_s(self) -> float:
        """``time.monotonic()`` at stream time 0, so ``clock_origin_s + frame.timestamp_s`` is
        the monotonic capture time of a live frame (or its due time for a paced file)."""
        ...
