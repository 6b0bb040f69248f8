"""Enrolling the person who should be on the call, from photos or a short clip (``deepwatch run
--reference``).

Each photo goes through the live chain's own steps: the MTCNN detector, the crop the checkpoint
was made with, and the checkpoint's encoder (inner and outer face in one batch). The largest face
of each photo is enrolled; a photo that cannot be read or shows no face is refused by name, so
nobody is enrolled from the wrong picture. ``engine.reference`` says how faces are compared.

A video file (``CLIP_SUFFIXES``) is a reference clip: its frames are taken at the scorer's rate
(4 a second) from the start, and the first ``CLIP_FRAMES`` that show a face are enrolled, each
counting as one photo (the same face followed from frame to frame, the largest one at first).
Several views of the person enrol better than one: on later windows of the dev videos, enrolling
their first 8 sampled frames instead of the first one raised genuine matches from 86 % to 96 %,
while DeepFaceLive swap windows that passed rose from 25 % to 34 % (README, model card). Frames
without a face are skipped; a clip with no face in its first ``CLIP_SCAN_S``
seconds is refused by name. Frames are decoded from the start and one at a time, so a long or
high-resolution clip costs no more memory than one frame.

``ReferenceFrames`` are a clip's frames already taken (the page takes them from a video file or
from the video it shares, in the browser, and sends them as still images): enrolled as a clip's are.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from engine.reference import Reference, ReferenceError
from stream.contracts import Detector, Encoder
from stream.sources.png import png_chunk_problem
from tracking.config import CropConfig
from tracking.crops import face_crop

logger = logging.getLogger(__name__)

# Reference clips: which files are clips, and how their frames are taken (module docstring).
CLIP_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"})
CLIP_FRAMES = 8
CLIP_RATE_HZ = 4.0
CLIP_SCAN_S = 10.0
# A clip sent to Ray workers travels as bytes: a few seconds of video, not a film.
CLIP_MAX_BYTES = 200 * 1024 * 1024


@dataclass(frozen=True)
class ReferenceClip:
    """A reference video file; ``frames()`` decodes it lazily (see the module docstring)."""

    name: str
    path: Path

    def frames(self) -> Generator[tuple[float, np.ndarray], None, None]:
        """``(time in seconds, H x W x 3 uint8 RGB)`` at ``CLIP_RATE_HZ`` from the start, up to
        ``CLIP_SCAN_S``; ``ReferenceError`` naming the clip when no frame can be decoded."""
        capture = cv2.VideoCapture(str(self.path))
        try:
            if not capture.isOpened():
                raise ReferenceError(_unreadable_clip(self.name))
            fps = capture.get(cv2.CAP_PROP_FPS)
            fps = fps if fps and 0 < fps < 1000 else 25.0
            decoded, due_s = 0, 0.0
            while True:
                ok, bgr = capture.read()
                if not ok or bgr is None:
                    break
                time_s = decoded / fps
                decoded += 1
                if time_s > CLIP_SCAN_S:
                    break
                if time_s + 0.5 / fps >= due_s:
                    due_s += 1.0 / CLIP_RATE_HZ
                    yield time_s, np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            if decoded == 0:
                raise ReferenceError(_unreadable_clip(self.name))
        finally:
            capture.release()


@dataclass(frozen=True)
class ReferenceFrames:
    """Frames of one clip of the person, already decoded and taken at ``CLIP_RATE_HZ`` (H x W x 3
    uint8 RGB each); enrolled like a ``ReferenceClip``: the same face followed from frame to frame."""

    name: str
    images: tuple[np.ndarray, ...]

    def frames(self) -> Iterator[tuple[float, np.ndarray]]:
        for index, image in enumerate(self.images):
            yield index / CLIP_RATE_HZ, image


# What enrolment takes: ``(name, RGB image)`` photos, reference clips and clips' frames.
ReferenceMedia = tuple[str, np.ndarray] | ReferenceClip | ReferenceFrames


def is_reference_clip(name: str | Path) -> bool:
    """Whether a reference file is a clip, by its suffix (``CLIP_SUFFIXES``, any case)."""
    return Path(name).suffix.lower() in CLIP_SUFFIXES


def open_reference_clip(path: Path) -> ReferenceClip:
    """A reference clip, checked to exist, to be at most ``CLIP_MAX_BYTES`` and to decode."""
    try:
        size = path.stat().st_size
    except OSError as error:
        raise ReferenceError(f"reference clip not found or unreadable: {path} ({error.strerror})") from error
    if size > CLIP_MAX_BYTES:
        raise ReferenceError(
            f"reference clip {path.name} is {size / 2**20:.0f} MiB; expected a short clip of at most "
            f"{CLIP_MAX_BYTES / 2**20:.0f} MiB (a few seconds of the person is enough)"
        )
    clip = ReferenceClip(path.name, path)
    with contextlib.closing(clip.frames()) as frames:
        next(frames, None)  # decodes the first frame, or raises naming the clip
    return clip


def _unreadable_clip(name: str) -> str:
    return (
        f"cannot read reference clip {name}: expected a video OpenCV can decode "
        f"({', '.join(sorted(CLIP_SUFFIXES))})"
    )


def decode_reference_photo(data: bytes, name: str) -> np.ndarray:
    """A photo file's bytes (JPEG, PNG, ...) as H x W x 3 uint8 RGB; ``ReferenceError`` naming it
    when they are not an image."""
    check_png_chunks(data, name)
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    if bgr is None:
        raise ReferenceError(f"cannot read reference photo {name}: expected a JPEG or PNG image")
    return np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


def check_png_chunks(data: bytes, name: str) -> None:
    """``ReferenceError`` when ``data`` is a PNG whose chunk declares more bytes than the file holds
    (``stream.sources.png``: OpenCV would allocate the declared length first)."""
    problem = png_chunk_problem(data)
    if problem:
        raise ReferenceError(f"cannot read reference photo {name}: {problem}")


def read_reference_photos(paths: Sequence[str | Path]) -> list[ReferenceMedia]:
    """``(file name, RGB image)`` of each photo file and a ``ReferenceClip`` for each video file;
    ``ReferenceError`` naming a missing or unreadable one."""
    media: list[ReferenceMedia] = []
    for raw in paths:
        path = Path(raw)
        if is_reference_clip(path):
            media.append(open_reference_clip(path))
        else:
            media.append((path.name, decode_reference_photo(photo_bytes(path), path.name)))
    return media


@contextlib.contextmanager
def decode_reference_media(files: Sequence[tuple[str, bytes]]) -> Iterator[list[ReferenceMedia]]:
    """Photos and clips from ``(file name, bytes)`` (a Ray worker gets them so); a clip's bytes sit
    in a temporary file while the context is open (OpenCV decodes video from files)."""
    with tempfile.TemporaryDirectory(prefix="deepwatch-reference-") as folder:
        media: list[ReferenceMedia] = []
        for index, (name, data) in enumerate(files):
            if is_reference_clip(name):
                path = Path(folder) / f"{index}{Path(name).suffix.lower()}"
                path.write_bytes(data)
                media.append(ReferenceClip(name, path))
            else:
                media.append((name, decode_reference_photo(data, name)))
        yield media


def photo_bytes(path: Path) -> bytes:
    """A photo file's bytes; ``ReferenceError`` naming it when it is missing or unreadable."""
    try:
        return path.read_bytes()
    except OSError as error:
        raise ReferenceError(f"reference photo not found or unreadable: {path} ({error.strerror})") from error


def reference_crop(image: np.ndarray, detector: Detector, crop: CropConfig, name: str) -> np.ndarray:
    """The crop of the largest face in ``image``, cut as the live chain cuts a track's."""
    faces = detector.detect_batch([image])[0]
    if not faces:
        raise ReferenceError(f"no face found in reference photo {name}: enrol a photo that shows the face")
    face = max(faces, key=lambda f: _area(f.box_xyxy))
    return face_crop(image, face.box_xyxy, face.landmarks_5x2, crop)


def clip_crops(
    clip: ReferenceClip | ReferenceFrames, detector: Detector, crop: CropConfig
) -> list[np.ndarray]:
    """Crops of the person in the first ``CLIP_FRAMES`` frames of ``clip`` that show a face: the
    largest face of the first such frame, then in each later frame the face nearest the last one."""
    crops: list[np.ndarray] = []
    last: np.ndarray | None = None
    for _, image in clip.frames():
        faces = detector.detect_batch([image])[0]
        if not faces:
            continue
        if last is None:
            face = max(faces, key=lambda f: _area(f.box_xyxy))
        else:
            anchor = last
            face = min(faces, key=lambda f: float(np.abs(np.asarray(f.box_xyxy) - anchor).sum()))
        last = np.asarray(face.box_xyxy, np.float64)
        crops.append(face_crop(image, face.box_xyxy, face.landmarks_5x2, crop))
        if len(crops) == CLIP_FRAMES:
            break
    if not crops:
        scanned = (
            f"its first {CLIP_SCAN_S:g} s, {CLIP_RATE_HZ:g} frames a second"
            if isinstance(clip, ReferenceClip)
            else f"{len(clip.images)} frames"
        )
        raise ReferenceError(
            f"no face found in reference clip {clip.name} ({scanned}): enrol a clip that shows the face"
        )
    return crops


def enrol(
    media: Sequence[ReferenceMedia], detector: Detector, encoder: Encoder, crop: CropConfig
) -> Reference:
    """The reference person from ``(name, RGB image)`` photos and reference clips of them (every
    photo and clip frame one embedding; all averaged).

    Raises:
        ReferenceError: nothing given, a photo or clip without a face, or an encoder that does not
            give inner/outer evidence.
    """
    if not media:
        raise ReferenceError("enrolment needs at least one photo of the person")
    crops: list[np.ndarray] = []
    names: list[str] = []
    for item in media:
        if isinstance(item, (ReferenceClip, ReferenceFrames)):
            frames = clip_crops(item, detector, crop)
            crops.extend(frames)
            names.append(f"{item.name} ({len(frames)} frames)")
        else:
            name, image = item
            crops.append(reference_crop(image, detector, crop, name))
            names.append(name)
    features = np.asarray(encoder.encode(np.stack(crops)), np.float32)
    reference = Reference.from_features(", ".join(names), features)
    logger.info("enrolled %s from %d photo(s) or clip frame(s)", reference.name, reference.photos)
    return reference


def _area(box: Sequence[float] | np.ndarray) -> float:
    return float((box[2] - box[0]) * (box[3] - box[1]))
