"""A folder of still images, read in name order as the frames of a video."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

from stream.sources.png import png_chunk_problem
from stream.sources.source import GrabbedImage, SourceError

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})


def _read_image(path: Path) -> np.ndarray | None:
    """The image at ``path`` (BGR), or None after a warning that says why it cannot be read."""
    try:
        data = path.read_bytes()
    except OSError as error:
        logger.warning("skipping unreadable image %s (%s)", path, error.strerror)
        return None
    problem = png_chunk_problem(data)
    if problem:
        # Before OpenCV allocates what the damaged chunk declares (``stream.sources.png``).
        logger.warning("skipping unreadable image %s: %s", path, problem)
        return None
    # The bytes already read (imdecode applies a JPEG's EXIF orientation, as imread does).
    image_bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    if image_bgr is None:
        logger.warning("skipping unreadable image %s", path)
    return image_bgr


class ImageFolderGrabber:
    """Reads every image in ``folder`` (not recursive), sorted by name; implements ``FrameGrabber``.

    Image i gets timestamp ``i / fps`` seconds. ``open`` raises ``SourceError`` for a missing
    folder or one without images; an unreadable or damaged image is skipped with a warning that
    says why, and named in ``skipped``.
    """

    live = False

    def __init__(self, folder: str | Path, *, fps: float = 1.0) -> None:
        if fps <= 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        self.folder = Path(folder)
        self.name = self.folder.name or str(self.folder)
        self._fps = fps
        self._paths: list[Path] = []
        self._position = 0
        self.skipped: list[str] = []

    def open(self) -> None:
        if not self.folder.is_dir():
            raise SourceError(f"image folder not found: {self.folder}")
        self._paths = sorted(p for p in self.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self._paths:
            raise SourceError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {self.folder}")
        self._position = 0

    def grab(self) -> GrabbedImage | None:
        while self._position < len(self._paths):
            path = self._paths[self._position]
            index = self._position
            self._position += 1
            image_bgr = _read_image(path)
            if image_bgr is None:
                self.skipped.append(path.name)
                continue
            return GrabbedImage(
                image=cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB), timestamp_s=index / self._fps
            )
        return None

    def close(self) -> None:
        self._paths = []

    def interrupt(self) -> None:
        """Nothing to do: reading one image never blocks for long."""
