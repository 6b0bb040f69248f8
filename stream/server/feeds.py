"""Where a session's frames come from: the browser's video track, or a server-side source.

Both keep only the newest frame: the pipeline always works on the present and every frame it
could not take in time is counted as dropped. Converting a decoded WebRTC frame to a numpy image
costs milliseconds, so a feed hands out a ``PendingFrame`` whose conversion runs on the session's
executor thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import VideoFrame

from stream.contracts import Frame
from stream.sources.source import Source, SourceError

logger = logging.getLogger(__name__)

# How long one blocking read of a server-side source waits, so that closing never waits longer.
_SOURCE_READ_TIMEOUT_S = 0.5


@dataclass(frozen=True)
class PendingFrame:
    """A frame that arrived and has not been converted yet.

    Attributes:
        arrival_monotonic_s: ``time.monotonic()`` when the frame reached the server (for a
            server-side source: its capture time); latency is measured from here.
        to_frame: builds the ``Frame``; blocking work, call it off the event loop.
    """

    arrival_monotonic_s: float
    to_frame: Callable[[], Frame]


class FrameFeed(Protocol):
    """The frames of one session. ``next`` returns the newest frame not yet handed out, waiting up
    to ``timeout_s``; None means nothing arrived in time. It raises ``FeedEnded`` when the input
    has ended for good."""

    @property
    def frames_dropped(self) -> int: ...

    async def next(self, timeout_s: float) -> PendingFrame | None: ...

    async def close(self) -> None: ...


class FeedEnded(Exception):
    """The input is gone: the remote track ended or the server-side source stopped."""


class TrackFeed:
    """Reads a remote WebRTC video track as fast as aiortc decodes it, keeping only the newest frame.

    aiortc queues decoded frames without bound; reading continuously is what keeps that queue (and
    the latency) from growing while the pipeline is busy.
    """

    def __init__(self, track: MediaStreamTrack, source_id: str) -> None:
        self._track = track
        self._source_id = source_id
        self._latest: tuple[float, VideoFrame, int] | None = None
        self._arrived = asyncio.Event()
        self._ended = False
        self._frames_received = 0
        self._frames_dropped = 0
        self._origin_s = time.monotonic()
        self._reader = asyncio.create_task(self._read_track(), name=f"track-reader-{source_id}")

    @property
    def frames_dropped(self) -> int:
        return self._frames_dropped

    @property
    def frames_received(self) -> int:
        return self._frames_received

    async def _read_track(self) -> None:
        try:
            while True:
                video_frame = await self._track.recv()
                if not isinstance(video_frame, VideoFrame):
                    continue
                if self._latest is not None:
                    self._frames_dropped += 1
                self._latest = (time.monotonic(), video_frame, self._frames_received)
                self._frames_received += 1
                self._arrived.set()
        except MediaStreamError:
            logger.info("remote track of %s ended", self._source_id)
        finally:
            self._ended = True
            self._arrived.set()

    async def next(self, timeout_s: float) -> PendingFrame | None:
        if self._latest is None and not self._ended:
            try:
                await asyncio.wait_for(self._arrived.wait(), timeout_s)
            except asyncio.TimeoutError:
                return None
        self._arrived.clear()
        if self._latest is None:
            raise FeedEnded(f"remote track of {self._source_id} ended")
        arrival_s, video_frame, index = self._latest
        self._latest = None
        timestamp_s = arrival_s - self._origin_s
        source_id = self._source_id

        def to_frame() -> Frame:
            image = video_frame.to_ndarray(format="rgb24")
            return Frame(image=image, index=index, timestamp_s=timestamp_s, source_id=source_id)

        return PendingFrame(arrival_monotonic_s=arrival_s, to_frame=to_frame)

    async def close(self) -> None:
        self._reader.cancel()
        try:
            await self._reader
        except asyncio.CancelledError:
            pass
        self._track.stop()


def _same(frame: Frame) -> Frame:
    return frame


class SourceFeed:
    """Reads a started server-side ``Source`` (an RTSP camera, a screen, a paced file).

    The source's own reader thread already keeps only the newest frame; blocking reads run on a
    one-thread executor of this feed.
    """

    def __init__(self, source: Source) -> None:
        self._source = source
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"feed-{source.source_id}")

    @property
    def frames_dropped(self) -> int:
        return self._source.frames_dropped

    async def next(self, timeout_s: float) -> PendingFrame | None:
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + timeout_s
        while True:
            wait_s = max(0.0, min(_SOURCE_READ_TIMEOUT_S, deadline - time.monotonic()))
            try:
                frame = await loop.run_in_executor(self._executor, self._source.read, wait_s)
            except SourceError as error:
                raise FeedEnded(str(error)) from error
            if frame is not None:
                captured_s = self._source.clock_origin_s + frame.timestamp_s
                return PendingFrame(
                    arrival_monotonic_s=min(captured_s, time.monotonic()),
                    to_frame=functools.partial(_same, frame),
                )
            if self._source.ended:
                raise FeedEnded(f"source {self._source.source_id} ended")
            if time.monotonic() >= deadline:
                return None

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        # stop() joins the reader thread (bounded by the source), so keep it off the event loop.
        await loop.run_in_executor(None, self._source.stop)
        self._executor.shutdown(wait=False, cancel_futures=True)
