"""The video track the server sends back: the newest annotated frame, stamped on a 90 kHz clock."""

from __future__ import annotations

import asyncio
import fractions
import time

from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import VideoFrame

# RTP video clock rate (RFC 3551); aiortc's encoders expect pts in this time base.
VIDEO_CLOCK_RATE_HZ = 90_000
VIDEO_TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK_RATE_HZ)


class AnnotatedVideoTrack(MediaStreamTrack):
    """A video track fed with ``publish``; ``recv`` (called by aiortc's sender) returns the newest
    published frame once, so a slow encoder skips frames instead of queueing them."""

    kind = "video"

    def __init__(self) -> None:
        super().__init__()
        self._latest: VideoFrame | None = None
        self._published = asyncio.Event()
        self._origin_s = time.monotonic()
        self._last_pts = -1
        self.frames_published = 0
        self.frames_skipped = 0

    def publish(self, frame: VideoFrame) -> None:
        """Make ``frame`` the next one sent. Call on the event loop."""
        if self._latest is not None:
            self.frames_skipped += 1
        self._latest = frame
        self.frames_published += 1
        self._published.set()

    async def recv(self) -> VideoFrame:
        while self._latest is None:
            if self.readyState != "live":
                raise MediaStreamError
            await self._published.wait()
            self._published.clear()
        if self.readyState != "live":
            raise MediaStreamError
        frame, self._latest = self._latest, None
        # pts from the wall clock, strictly increasing, so the receiver plays frames as they come.
        pts = max(int((time.monotonic() - self._origin_s) * VIDEO_CLOCK_RATE_HZ), self._last_pts + 1)
        self._last_pts = pts
        frame.pts = pts
        frame.time_base = VIDEO_TIME_BASE
        return frame

    def stop(self) -> None:
        super().stop()
        # Wake a recv() waiting for a frame so the sender sees the track ended.
        self._published.set()
