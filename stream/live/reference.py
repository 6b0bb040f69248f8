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
from tracking.config import CropConfig
from tracking.crops import aligned_transform, box_transform, warp_crop

logger = logging.getLogger(__name__)


def read_reference_photo(path: Path) -> np.ndarray:
    """The photo as H x W x 3 uint8 RGB; ``ReferenceError`` naming the file when it is not one."""
    if not path.is_file():
        raise ReferenceError(f"reference photo not found: {path}")
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ReferenceError(f"cannot read reference photo {path}: expected a JPEG, PNG or other image file")
    return np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


def reference_crop(image: np.ndarray, detector: Detector, crop: CropConfig, name: str) -> np.ndarray:
    """The aligned crop (size x size x 3 uint8) of the largest face in ``image``."""
    faces = detector.detect_batch([image])[0]
    if not faces:
        raise ReferenceError(f"no face found in reference photo {name}: enrol a photo that shows the face")
    face = max(faces, key=lambda f: float((f.box_xyxy[2] - f.box_xyxy[0]) * (f.box_xyxy[3] - f.box_xyxy[1])))
    matrix = None
    if crop.mode == "aligned" and face.landmarks_5x2 is not None:
        matrix = aligned_transform(face.landmarks_5x2, crop.size_px, crop.margin)
    if matrix is None:
        matrix = box_transform(face.box_xyxy, crop.size_px, crop.margin)
    return warp_crop(image, matrix, crop.size_px)


def decode_reference_photo(data: bytes, name: str) -> np.ndarray:
    """An uploaded photo (JPEG or PNG bytes) as H x W x 3 uint8 RGB; ``ReferenceError`` if it is not one."""
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    if bgr is None:
        raise ReferenceError(f"cannot read reference photo {name}: expected a JPEG or PNG image")
    return np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


def enrol_images(
    photos: Sequence[tuple[str, np.ndarray]], detector: Detector, encoder: Encoder, crop: CropConfig
) -> Reference:
    """The reference person from ``(name, RGB image)`` photos of them (embeddings averaged)."""
    if not photos:
        raise ReferenceError("enrolment needs at least one photo of the person")
    crops = np.stack([reference_crop(image, detector, crop, name) for name, image in photos])
    features = np.asarray(encoder.encode(crops), np.float32)
    reference = Reference.from_features(", ".join(name for name, _ in photos), features)
    logger.info("enrolled %s from %d photo(s)", reference.name, reference.photos)
    return reference


def enrol(paths: Sequence[str | Path], detector: Detector, encoder: Encoder, crop: CropConfig) -> Reference:
    """The reference person from one or more photo files of them (their embeddings are averaged).

    Raises:
        ReferenceError: no photo given, a photo unreadable or without a face, or an encoder that
            does not give inner/outer evidence (the message names the photo or the model).
    """
    photos = [(Path(raw).name, read_reference_photo(Path(raw))) for raw in paths]
    return enrol_images(photos, detector, encoder, crop)
