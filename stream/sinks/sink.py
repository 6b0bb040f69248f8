"""What every output is: it receives each processed frame, and is closed once at the end."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from stream.contracts import Event, FrameResult

logger = logging.getLogger(__name__)


class Sink(Protocol):
    """An output of the run loop.

    ``write`` gets every ``FrameResult`` in order with the annotated image (H x W x 3 uint8 RGB),
    or None when no sink needs one (``needs_annotated`` False for all). ``write_events`` gets the
    events made outside any frame (the track_end events of a source that ended, or of the run's
    end); a sink that has no use for them ignores them. ``close`` flushes and releases; it is
    called once, also after errors.
    """

    needs_annotated: bool

    def write(self, result: FrameResult, annotated: np.ndarray | None) -> None: ...

    def write_events(self, events: Sequence[Event]) -> None: ...

    def close(self) -> None: ...


def close_sinks(sinks: Sequence[Sink]) -> None:
    """Close every sink; one that fails to close is logged and the others are still closed."""
    for sink in sinks:
        try:
            sink.close()
        except OSError as error:
            logger.error("closing an output failed: %s", error)
