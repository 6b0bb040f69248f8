"""What every output is: it receives each processed frame, and is closed once at the end."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from stream.results import FrameResult


class Sink(Protocol):
    """An output of the run loop.

    ``write`` gets every ``FrameResult`` in order with the annotated image (H x W x 3 uint8 RGB),
    or None when no sink needs one (``needs_annotated`` False for all). ``close`` flushes and
    releases; it is called once, also after errors.
    """

    needs_annotated: bool

    def write(self, result: FrameResult, annotated: np.ndarray | None) -> None: ...

    def close(self) -> None: ...
