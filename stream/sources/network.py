"""RTSP and HTTP(S) streams through PyAV (FFmpeg) with low-latency options and reconnection."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import av
import av.error

from stream.sources.redact import redact
from stream.sources.source import GrabbedImage, SourceError

logger = logging.getLogger(__name__)

NETWORK_SCHEMES = ("rtsp", "rtsps", "http", "https")

# FFmpeg options that keep a live stream near the present: no demuxer buffering, decode frames as
# they arrive, and RTSP over TCP (UDP loses packets under load and smears H.264 frames).
_LOW_LATENCY_OPTIONS = {"fflags": "nobuffer", "flags": "low_delay", "max_delay": "500000"}
_RTSP_OPTIONS = {"rtsp_transport": "tcp"}


@dataclass(frozen=True)
class ReconnectPolicy:
    """How a lost live stream is retried.

    Attributes:
        initial_backoff_s: wait before the first retry, seconds.
        max_backoff_s: the wait doubles per failed retry up to this, seconds.
        max_attempts: consecutive failed retries before giving up; 0 retries forever.
    """

    initial_backoff_s: float = 0.5
    max_backoff_s: float = 10.0
    max_attempts: int = 0

    def __post_init__(self) -> None:
        if self.initial_backoff_s <= 0:
            raise ValueError(f"initial_backoff_s must be > 0, got {self.initial_backoff_s}")
        if self.max_backoff_s < self.initial_backoff_s:
            raise ValueError(
                f"max_backoff_s must be >= initial_backoff_s ({self.initial_backoff_s}), "
                f"got {self.max_backoff_s}"
            )
        if self.max_attempts < 0:
            raise ValueError(f"max_attempts must be >= 0, got {self.max_attempts}")

    def delays_s(self) -> Iterator[float]:
        """The successive waits: initial, doubled each time, capped at max; finite if max_attempts."""
        delay = self.initial_backoff_s
        attempt = 0
        while self.max_attempts == 0 or attempt < self.max_attempts:
            yield delay
            attempt += 1
            delay = min(delay * 2, self.max_backoff_s)


class NetworkStreamGrabber:
    """Reads an RTSP or HTTP(S) video stream; implements ``FrameGrabber``.

    The first connection fails fast (``SourceError`` from ``open``): a wrong URL should be reported,
    not retried. Once connected, a stream that stalls past ``read_timeout_s``, ends or errors is
    reopened with exponential backoff per ``reconnect``; every log line and error carries the URL
    with its password removed.
    """

    live = True

    def __init__(
        self,
        url: str,
        *,
        open_timeout_s: float = 5.0,
        read_timeout_s: float = 5.0,
        reconnect: ReconnectPolicy | None = None,
    ) -> None:
        scheme = url.split("://", 1)[0].lower() if "://" in url else ""
        if scheme not in NETWORK_SCHEMES:
            raise SourceError(
                f"unsupported stream scheme {scheme!r} in {redact(url)}, expected one of {NETWORK_SCHEMES}"
            )
        if open_timeout_s <= 0 or read_timeout_s <= 0:
            raise ValueError(
                f"timeouts must be > 0 s, got open_timeout_s={open_timeout_s}, "
                f"read_timeout_s={read_timeout_s}"
            )
        self._url = url
        self._scheme = scheme
        self.name = redact(url)
        self._open_timeout_s = open_timeout_s
        self._read_timeout_s = read_timeout_s
        self._reconnect = reconnect or ReconnectPolicy()
        self._container: av.container.InputContainer | None = None
        self._frames: Iterator[av.VideoFrame] | None = None
        self._interrupted = threading.Event()
        self.reconnects = 0

    def open(self) -> None:
        self._connect()
        logger.info("connected to %s", self.name)

    def _connect(self) -> None:
        options = dict(_LOW_LATENCY_OPTIONS)
        if self._scheme.startswith("rtsp"):
            options.update(_RTSP_OPTIONS)
        try:
            container = av.open(
                self._url, mode="r", options=options, timeout=(self._open_timeout_s, self._read_timeout_s)
            )
        except (av.error.FFmpegError, OSError) as error:
            raise SourceError(f"cannot open stream {self.name}: {redact(_reason(error))}") from error
        if not container.streams.video:
            container.close()
            raise SourceError(f"no video stream in {self.name}")
        self._container = container
        self._frames = container.decode(container.streams.video[0])

    def grab(self) -> GrabbedImage | None:
        while not self._interrupted.is_set():
            if self._frames is not None:
                try:
                    frame = next(self._frames, None)
                except (av.error.FFmpegError, OSError) as error:
                    reason = redact(_reason(error))
                else:
                    if frame is not None:
                        return GrabbedImage(image=frame.to_ndarray(format="rgb24"))
                    reason = "stream ended"
                logger.warning("lost %s: %s", self.name, reason)
                self._close_container()
            if not self._reconnect_with_backoff():
                return None
        return None

    def _reconnect_with_backoff(self) -> bool:
        """Reopen the stream; False when interrupted. Raises ``SourceError`` after max_attempts."""
        for attempt, delay_s in enumerate(self._reconnect.delays_s(), start=1):
            logger.warning("reconnecting to %s in %.1f s (attempt %d)", self.name, delay_s, attempt)
            if self._interrupted.wait(delay_s):
                return False
            try:
                self._connect()
            except SourceError as error:
                logger.warning("%s", error)
                continue
            self.reconnects += 1
            logger.info("reconnected to %s", self.name)
            return True
        raise SourceError(
            f"gave up on {self.name} after {self._reconnect.max_attempts} reconnection attempts"
        )

    def _close_container(self) -> None:
        if self._container is not None:
            try:
                self._container.close()
            except (av.error.FFmpegError, OSError) as error:
                logger.debug("closing %s: %s", self.name, redact(_reason(error)))
            self._container = None
            self._frames = None

    def close(self) -> None:
        self._interrupted.set()
        self._close_container()

    def interrupt(self) -> None:
        self._interrupted.set()


def _reason(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
