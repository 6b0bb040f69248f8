"""Enrolling the person who should be on the call, from photos (``deepwatch run --reference``).

Each photo goes through the live chain's own steps: the MTCNN detector, the crop the checkpoint
was made with, and the checkpoint's encoder (inner and outer face in one batch). The largest face
of each photo is enrolled; a photo that cannot be read or shows no face is refused by name, so
nobody is enrolled from the wrong picture. ``engine.reference`` says how faces are compared.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from engine.reference import Reference, ReferenceError
from stream.contracts import Detector, Encoder
from stream.sources.png import png_chunk_problem
from tracking.config import CropConfig
from tracking.crops import face_crop

logger = logging.getLogger(__name__)


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


def read_reference_photos(paths: Sequence[str | Path]) -> list[tuple[str, np.ndarray]]:
    """``(file name, RGB image)`` of each photo file; ``ReferenceError`` naming a missing or
    unreadable one."""
    return [(Path(raw).name, decode_reference_photo(photo_bytes(Path(raw)), Path(raw).name)) for raw in paths]


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
    face = max(faces, key=lambda f: float((f.box_xyxy[2] - f.box_xyxy[0]) * (f.box_xyxy[3] - f.box_xyxy[1])))
    return face_crop(image, face.box_xyxy, face.landmarks_5x2, crop)


def enrol(
    photos: Sequence[tuple[str, np.ndarray]], detector: Detector, encoder: Encoder, crop: CropConfig
) -> Reference:
    """The reference person from ``(name, RGB image)`` photos of them (their embeddings averaged).

    Raises:
        ReferenceError: no photo given, a photo without a face, or an encoder that does not give
            inner/outer evidence.
    """
    if not photos:
        raise ReferenceError("enrolment needs at least one photo of the person")
    crops = np.stack([reference_crop(image, detector, crop, name) for name, image in photos])
    features = np.asarray(encoder.encode(crops), np.float32)
    reference = Reference.from_features(", ".join(name for name, _ in photos), features)
    logger.info("enrolled %s from %d photo(s)", reference.name, reference.photos)
    return reference
