"""Turning a source string from the command line into a running-ready ``FrameReader``."""

from __future__ import annotations

import re
from pathlib import Path

from stream.sources.config import SourceConfig
from stream.sources.demo import DemoGrabber
from stream.sources.image_folder import ImageFolderGrabber, is_image_file, list_images
from stream.sources.network import NETWORK_SCHEMES, NetworkStreamGrabber, ReconnectPolicy
from stream.sources.reader import FrameReader
from stream.sources.redact import redact
from stream.sources.screen import ScreenGrabber, ScreenRegion
from stream.sources.source import FrameGrabber, SourceError
from stream.sources.video_file import VideoFileGrabber
from stream.sources.webcam import WebcamGrabber

DEMO_SPEC = "demo"

_WEBCAM = re.compile(r"^(?:webcam:)?(\d+)$")
_SCREEN = re.compile(r"^screen:(\d+),(\d+),(\d+),(\d+)$")
_DEMO = re.compile(r"^demo(?::(\d+(?:\.\d+)?))?$")
_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")

SPEC_HELP = (
    "a webcam index ('0' or 'webcam:0'), an rtsp:// or http(s):// URL, a video file, "
    "'screen:LEFT,TOP,WIDTH,HEIGHT', an image file or a folder of images, or 'demo[:SECONDS]'"
)


def open_source(
    spec: str,
    config: SourceConfig | None = None,
    *,
    realtime: bool = False,
    loop: bool = False,
    source_id: str | None = None,
) -> FrameReader:
    """Make the source that ``spec`` names (not started yet: call ``start()``).

    Args:
        spec: see ``SPEC_HELP``.
        config: timeouts, reconnection and buffering.
        realtime: play files (and the demo) at their own frame rate, like a camera: the newest
            frame wins and late frames are dropped and counted. Otherwise files are read as fast
            as the pipeline takes them and no frame is lost.
        loop: restart a video file at its end (soak tests).
        source_id: name for frames and logs; defaults to the spec with credentials removed.

    Raises:
        SourceError: unsupported scheme, a file or folder that does not exist, a bad screen spec.
    """
    config = config or SourceConfig()
    grabber = make_grabber(spec, config, loop=loop)
    return FrameReader(
        grabber,
        source_id=source_id if source_id is not None else grabber.name,
        pace_realtime=realtime and not grabber.live,
        queue_size=config.file_queue_frames,
    )


def make_grabber(spec: str, config: SourceConfig, *, loop: bool = False) -> FrameGrabber:
    """The ``FrameGrabber`` for ``spec`` (see ``open_source``)."""
    spec = spec.strip()
    reconnect = ReconnectPolicy(
        initial_backoff_s=config.reconnect_initial_backoff_s,
        max_backoff_s=config.reconnect_max_backoff_s,
        max_attempts=config.reconnect_max_attempts,
    )
    if not spec:
        raise SourceError(f"empty source, expected {SPEC_HELP}")
    if match := _DEMO.match(spec):
        return DemoGrabber(seconds=float(match.group(1) or 8.0))
    if match := _WEBCAM.match(spec):
        return WebcamGrabber(int(match.group(1)), reconnect=reconnect)
    if spec.startswith("screen:"):
        match = _SCREEN.match(spec)
        if match is None:
            raise SourceError(
                f"bad screen source {spec!r}, expected 'screen:LEFT,TOP,WIDTH,HEIGHT' in pixels"
            )
        try:
            region = ScreenRegion(*(int(group) for group in match.groups()))
        except ValueError as error:
            raise SourceError(f"bad screen source {spec!r}: {error}") from error
        return ScreenGrabber(region, max_fps=config.screen_max_fps)
    if match := _SCHEME.match(spec):
        scheme = match.group(1).lower()
        if scheme in NETWORK_SCHEMES:
            return NetworkStreamGrabber(
                spec,
                open_timeout_s=config.open_timeout_s,
                read_timeout_s=config.read_timeout_s,
                reconnect=reconnect,
            )
        if scheme == "file":
            return _local_path_grabber(Path(spec[len("file://") :]), config, loop=loop)
        raise SourceError(
            f"unsupported URL scheme {scheme!r} in {redact(spec)}, expected one of "
            f"{', '.join(NETWORK_SCHEMES)} or file"
        )
    return _local_path_grabber(Path(spec).expanduser(), config, loop=loop)


def photos_in(spec: str, config: SourceConfig | None = None) -> list[Path]:
    """The photos ``spec`` names for ``deepwatch run``'s photo mode, in name order: an image file
    (by suffix, whether or not it exists: reading it says why it cannot be read), or the images
    of a folder when ``config.image_folders`` is ``photos``; an empty list for every other source.

    Raises:
        SourceError: a folder read as photos that holds no image.
    """
    config = config or SourceConfig()
    text = spec.strip()
    if text.startswith("file://"):
        text = text[len("file://") :]
    elif _SCHEME.match(text) or _WEBCAM.match(text) or _DEMO.match(text) or text.startswith("screen:"):
        return []
    if not text:
        return []  # open_source says what a source may be
    path = Path(text).expanduser()
    if path.is_dir():
        return list_images(path) if config.image_folders == "photos" else []
    return [path] if is_image_file(path) else []


def _local_path_grabber(path: Path, config: SourceConfig, *, loop: bool) -> FrameGrabber:
    if path.is_dir():
        return ImageFolderGrabber(path, fps=config.image_folder_fps)
    if not path.exists():
        raise SourceError(f"no such file or folder: {path} (expected {SPEC_HELP})")
    return VideoFileGrabber(path, loop=loop)
