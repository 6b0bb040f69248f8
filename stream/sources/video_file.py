"""A video file decoded with PyAV (FFmpeg): every frame, in order, with its media timestamp."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import av
import av.error

from stream.sources.source import GrabbedImage, SourceError

logger = logging.getLogger(__name__)

# A file whose container announces a frame count but decodes to fewer than this fraction of it is
# reported as truncated; container counts are often off by a frame or two, never by a tenth.
_TRUNCATED_FRACTION = 0.9


class VideoFileGrabber:
    """Decodes a video file frame by frame; implements ``FrameGrabber``.

    Timestamps are media time in seconds from the first frame. With ``loop`` the file restarts at
    its end and timestamps keep increasing (for soak tests and demos).

    Raises ``SourceError`` on open when the file is missing, unreadable or has no video stream, and
    from ``grab`` when decoding fails or the file ends well before its announced length.
    """

    live = False

    def __init__(self, path: str | Path, *, loop: bool = False) -> None:
        self.path = Path(path)
        self.name = self.path.name
        self._loop = loop
        self._container: av.container.InputContainer | None = None
        self._frames: Iterator[av.VideoFrame] | None = None
        self._expected_frames = 0
        self._decoded_in_pass = 0
        self._time_offset_s = 0.0
        self._last_timestamp_s = 0.0
        self._frame_interval_s = 1 / 25
        self._first_time_s: float | None = None
        self.fps = 25.0

    def open(self) -> None:
        if not self.path.exists():
            raise SourceError(f"video file not found: {self.path}")
        if not self.path.is_file():
            raise SourceError(f"not a video file: {self.path}")
        try:
            container = av.open(str(self.path), mode="r")
        # ValueError: PyAV decodes container metadata as UTF-8 (UnicodeDecodeError on a damaged tag).
        except (av.error.FFmpegError, OSError, ValueError) as error:
            raise SourceError(
                f"cannot open video file {self.path}: {_reason(error)} (corrupt, truncated or not a video?)"
            ) from error
        if not container.streams.video:
            container.close()
            raise SourceError(f"no video stream in {self.path}")
        stream = container.streams.video[0]
        # Frame-level threads decode ahead; fine for files, whose latency does not matter.
        stream.thread_type = "AUTO"
        self._expected_frames = int(stream.frames or 0)
        if stream.average_rate:
            self.fps = float(stream.average_rate)
            self._frame_interval_s = 1 / self.fps
        self._container = container
        self._frames = container.decode(stream)
        self._decoded_in_pass = 0
        self._first_time_s = None

    def grab(self) -> GrabbedImage | None:
        if self._frames is None:
            raise RuntimeError("VideoFileGrabber.grab called before open")
        try:
            frame = next(self._frames, None)
        except (av.error.FFmpegError, OSError) as error:
            raise SourceError(
                f"{self.path}: decoding failed after {self._decoded_in_pass} frames: "
                f"{_reason(error)} (corrupt file?)"
            ) from error
        if frame is None:
            self._check_complete()
            if not self._loop or self._decoded_in_pass == 0:
                return None
            self._time_offset_s = self._last_timestamp_s + self._frame_interval_s
            self.close()
            self.open()
            return self.grab()
        self._decoded_in_pass += 1
        time_s = frame.time if frame.time is not None else self._decoded_in_pass * self._frame_interval_s
        if self._first_time_s is None:
            self._first_time_s = time_s
        timestamp_s = self._time_offset_s + time_s - self._first_time_s
        self._last_timestamp_s = timestamp_s
        return GrabbedImage(image=frame.to_ndarray(format="rgb24"), timestamp_s=timestamp_s)

    def _check_complete(self) -> None:
        if self._decoded_in_pass == 0:
            raise SourceError(f"{self.path}: no frame could be decoded (corrupt or truncated file?)")
        if self._expected_frames and self._decoded_in_pass < _TRUNCATED_FRACTION * self._expected_frames:
            raise SourceError(
                f"{self.path}: truncated: decoded {self._decoded_in_pass} of the "
                f"{self._expected_frames} frames its header announces"
            )

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None
            self._frames = None

    def interrupt(self) -> None:
        """Nothing to do: decoding a file never blocks for long."""


def _reason(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
