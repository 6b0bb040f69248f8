"""The offline default input: a real photograph (scikit-image's astronaut) moving and zooming.

Used by ``deepwatch run`` without a source, by tests and by the benchmarks, so that all of them
work without a network or a camera and on known content (one real face per copy).
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from stream.sources.source import GrabbedImage


@lru_cache(maxsize=1)
def _astronaut() -> np.ndarray:
    from skimage import data

    # Head and shoulders only, so the face fills a useful part of each copy.
    return np.ascontiguousarray(data.astronaut()[0:320, 90:380])


@lru_cache(maxsize=4)
def _background(width: int, height: int) -> np.ndarray:
    x = np.linspace(40, 110, width, dtype=np.float32)[None, :]
    y = np.linspace(30, 90, height, dtype=np.float32)[:, None]
    grey = (x + y).astype(np.uint8)
    return np.stack([grey, grey, (grey * 1.3).clip(0, 255).astype(np.uint8)], axis=2)


def render_demo_frame(time_s: float, width: int = 640, height: int = 480, faces: int = 1) -> np.ndarray:
    """One H x W x 3 uint8 RGB frame at ``time_s``: ``faces`` copies of the photo side by side,
    each drifting and zooming slowly (periods of a few seconds), never overlapping."""
    if width < 64 or height < 64:
        raise ValueError(f"demo frame must be at least 64x64, got {width}x{height}")
    if faces < 1:
        raise ValueError(f"faces must be >= 1, got {faces}")
    frame = _background(width, height).copy()
    photo = _astronaut()
    slot_width = width / faces
    base_height = min(height * 0.7, slot_width * 0.6 * photo.shape[0] / photo.shape[1])
    for face in range(faces):
        phase = time_s * 2 * math.pi / 4.0 + face * 1.7
        scale = 1.0 + 0.15 * math.sin(phase * 0.7)
        patch_height = max(16, int(base_height * scale))
        patch_width = max(16, int(patch_height * photo.shape[1] / photo.shape[0]))
        patch = cv2.resize(photo, (patch_width, patch_height), interpolation=cv2.INTER_AREA)
        centre_x = slot_width * (face + 0.5) + 0.1 * slot_width * math.sin(phase)
        centre_y = height * 0.5 + 0.08 * height * math.cos(phase * 0.8)
        left = round(centre_x - patch_width / 2)
        top = round(centre_y - patch_height / 2)
        _paste(frame, patch, left, top)
    return frame


def _paste(frame: np.ndarray, patch: np.ndarray, left: int, top: int) -> None:
    height, width = frame.shape[:2]
    x1, y1 = max(left, 0), max(top, 0)
    x2, y2 = min(left + patch.shape[1], width), min(top + patch.shape[0], height)
    if x2 > x1 and y2 > y1:
        frame[y1:y2, x1:x2] = patch[y1 - top : y2 - top, x1 - left : x2 - left]


def write_demo_video(
    path: str | Path,
    *,
    seconds: float = 2.0,
    fps: int = 15,
    width: int = 320,
    height: int = 240,
    faces: int = 1,
    faststart: bool = False,
) -> int:
    """Write the demo scene as an H.264 MP4 (for tests and benchmarks); returns the frame count.

    ``faststart`` puts the index (moov) first, so a file cut short still opens and plays its
    first part.
    """
    import av

    count = round(seconds * fps)
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), mode="w", options=options) as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "ultrafast", "tune": "zerolatency", "g": str(fps)}
        for index in range(count):
            frame = av.VideoFrame.from_ndarray(
                render_demo_frame(index / fps, width, height, faces), format="rgb24"
            )
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return count


class DemoGrabber:
    """Renders ``seconds`` of the demo at ``fps``; implements ``FrameGrabber`` (file-like: every
    frame is delivered, timestamps are ``index / fps``)."""

    live = False

    def __init__(
        self, *, seconds: float = 8.0, fps: float = 25.0, width: int = 640, height: int = 480, faces: int = 1
    ) -> None:
        if seconds <= 0 or fps <= 0:
            raise ValueError(f"seconds and fps must be > 0, got seconds={seconds}, fps={fps}")
        self.name = "demo"
        self._frame_count = max(1, round(seconds * fps))
        self._fps = fps
        self.fps = fps
        self._size = (width, height)
        self._faces = faces
        self._position = 0
        render_demo_frame(0.0, width, height, faces)  # validates the size now, not on the thread

    def open(self) -> None:
        self._position = 0

    def grab(self) -> GrabbedImage | None:
        if self._position >= self._frame_count:
            return None
        timestamp_s = self._position / self._fps
        self._position += 1
        image = render_demo_frame(timestamp_s, self._size[0], self._size[1], self._faces)
        return GrabbedImage(image=image, timestamp_s=timestamp_s)

    def close(self) -> None:
        self._position = self._frame_count

    def interrupt(self) -> None:
        """Nothing to do: rendering never blocks."""
