"""Still images: a folder of them read in name order as the frames of a video, and the helpers
that list and read photos for ``deepwatch run``'s photo mode (``stream.live.stills``)."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

from stream.sources.image_header import TooManyPixels, declared_size
from stream.sources.png import png_chunk_problem
from stream.sources.source import GrabbedImage, SourceError

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})


def is_image_file(path: Path) -> bool:
    """Whether ``path`` names an image by its suffix (``IMAGE_SUFFIXES``, any case)."""
    return path.suffix.lower() in IMAGE_SUFFIXES


def list_images(folder: Path) -> list[Path]:
    """The images directly in ``folder`` (not recursive), sorted by name.

    Raises:
        SourceError: the folder does not exist or holds no image.
    """
    if not folder.is_dir():
        raise SourceError(f"image folder not found: {folder}")
    paths = sorted(p for p in folder.iterdir() if is_image_file(p) and not p.is_dir())
    if not paths:
        raise SourceError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {folder}")
    return paths


def read_image(path: Path) -> np.ndarray:
    """The image at ``path`` as H x W x 3 uint8 RGB.

    Raises:
        SourceError: the file cannot be read or decoded; the message names it and says why.
    """
    try:
        data = path.read_bytes()
    except OSError as error:
        raise SourceError(f"cannot read image {path} ({error.strerror})") from error
    # Before OpenCV allocates what the file declares (``stream.sources.png``, ``.image_header``).
    problem = png_chunk_problem(data)
    if problem:
        raise SourceError(f"cannot read image {path}: {problem}")
    try:
        declared_size(data)
    except TooManyPixels as error:
        problem = f"it declares too many pixels for a photo ({error})"
        raise SourceError(f"cannot read image {path}: {problem}") from error
    # The bytes already read (imdecode applies a JPEG's EXIF orientation, as imread does).
    image_bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    if image_bgr is None:
        raise SourceError(f"cannot read image {path}: not an image OpenCV can decode ({len(data)} bytes)")
    return cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)


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
        self._paths = list_images(self.folder)
        self._position = 0

    def grab(self) -> GrabbedImage | None:
        while self._position < len(self._paths):
            path = self._paths[self._position]
            index = self._position
            self._position += 1
            try:
                image = read_image(path)
            except SourceError as error:
                logger.warning("%s; skipped", error)
                self.skipped.append(path.name)
                continue
            return GrabbedImage(image=image, timestamp_s=index / self._fps)
        return None

    def close(self) -> None:
        self._paths = []

    def interrupt(self) -> None:
        """Nothing to do: reading one image never blocks for long."""
