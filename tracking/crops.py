"""Face crops for the encoder: a square box crop, or a landmark-aligned crop."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from tracking.config import CropConfig
from tracking.track import Track
from tracking.validation import check_frame

# Where the 5 landmarks (eye, eye, nose, mouth corner, mouth corner, in MTCNN's image-left to
# image-right order) sit in a square box crop without margin, as offsets from the centre in units
# of the crop side: the mean MTCNN landmarks of 434 frames of the talking-head clips in
# ../shared/data/real, mirrored to be left-right symmetric. Aligning to this template frames a
# face as a box crop does on average (the encoder's training crops were box crops), minus the
# frame-to-frame roll, scale and shift jitter of the box.
LANDMARK_TEMPLATE_IN_BOX = np.array(
    [[-0.167, -0.106], [0.167, -0.106], [0.0, 0.081], [-0.135, 0.265], [0.135, 0.265]],
    dtype=np.float64,
)

# Bilinear warping aliases when it shrinks by more than 2x (fine texture flickers from frame to
# frame); below this scale the source region is first area-averaged down.
MIN_DIRECT_WARP_SCALE = 0.5

# Landmarks spread less than this (pixels, root mean square about their centre) cannot define a
# rotation and scale; such tracks are cut as box crops.
MIN_LANDMARK_SPREAD_PX = 1.0


def crop_faces(image: np.ndarray, tracks: Sequence[Track], config: CropConfig | None = None) -> np.ndarray:
    """Cut one square face crop per track out of ``image``.

    Args:
        image: the frame the tracks' boxes refer to, H x W x 3 uint8 RGB.
        tracks: the tracks to crop, in the order the crops are returned.
        config: crop settings; defaults to ``CropConfig()``. In "aligned" mode a track without
            usable landmarks is cut as a box crop.

    Returns:
        uint8 array (len(tracks), size_px, size_px, 3), RGB; parts outside the frame are black.

    Raises:
        ValueError: ``image`` is not H x W x 3 uint8.
    """
    config = config if config is not None else CropConfig()
    check_frame(image)
    size = config.size_px
    crops = np.zeros((len(tracks), size, size, 3), dtype=np.uint8)
    for index, track in enumerate(tracks):
        crops[index] = face_crop(image, track.box_xyxy, track.landmarks_5x2, config)
    return crops


def face_crop(
    image: np.ndarray, box_xyxy: np.ndarray, landmarks_5x2: np.ndarray | None, config: CropConfig
) -> np.ndarray:
    """One face's crop (size_px x size_px x 3 uint8): aligned on its landmarks in "aligned" mode
    when they are usable, else a box crop (``crop_faces``' rule for each track)."""
    matrix = None
    if config.mode == "aligned" and landmarks_5x2 is not None:
        matrix = aligned_transform(landmarks_5x2, config.size_px, config.margin)
    if matrix is None:
        matrix = box_transform(box_xyxy, config.size_px, config.margin)
    return warp_crop(image, matrix, config.size_px)


def box_transform(box_xyxy: np.ndarray, size_px: int, margin: float) -> np.ndarray:
    """2 x 3 affine map from frame pixels to a square crop centred on the box.

    The crop side covers the box's longer side times ``1 + margin``.
    """
    x1, y1, x2, y2 = (float(v) for v in box_xyxy)
    side = max(x2 - x1, y2 - y1, 1.0) * (1.0 + margin)
    scale = size_px / side
    # Pixel centres sit at integer coordinates (OpenCV's convention), so the crop centre is (n-1)/2.
    centre_out = (size_px - 1) / 2
    return np.array(
        [
            [scale, 0.0, centre_out - scale * (x1 + x2) / 2],
            [0.0, scale, centre_out - scale * (y1 + y2) / 2],
        ]
    )


def landmark_template(size_px: int, margin: float) -> np.ndarray:
    """The 5 template landmark positions (5, 2) in a ``size_px`` crop with ``margin``."""
    return (size_px - 1) / 2 + LANDMARK_TEMPLATE_IN_BOX * size_px / (1.0 + margin)


def aligned_transform(landmarks_5x2: np.ndarray, size_px: int, margin: float) -> np.ndarray | None:
    """2 x 3 similarity map taking the landmarks onto ``landmark_template``; None if degenerate."""
    source = np.asarray(landmarks_5x2, dtype=np.float64)
    if source.shape != (5, 2) or not np.all(np.isfinite(source)):
        return None
    if np.sqrt(((source - source.mean(axis=0)) ** 2).sum(axis=1).mean()) < MIN_LANDMARK_SPREAD_PX:
        return None
    return similarity_transform(source, landmark_template(size_px, margin))


def similarity_transform(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Least-squares rotation + uniform scale + shift taking ``source`` (N, 2) onto ``target`` (N, 2).

    Umeyama's method (1991); reflections are excluded. Returns the 2 x 3 matrix [s R | t].
    """
    source_mean, target_mean = source.mean(axis=0), target.mean(axis=0)
    source_centred, target_centred = source - source_mean, target - target_mean
    covariance = target_centred.T @ source_centred / len(source)
    u, singular, vt = np.linalg.svd(covariance)
    sign = np.diag([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])
    rotation = u @ sign @ vt
    source_variance = (source_centred**2).sum() / len(source)
    scale = float(np.trace(np.diag(singular) @ sign)) / source_variance
    shift = target_mean - scale * rotation @ source_mean
    return np.hstack([scale * rotation, shift[:, None]])


def warp_crop(image: np.ndarray, matrix: np.ndarray, size_px: int) -> np.ndarray:
    """Apply the frame-to-crop affine ``matrix`` (2 x 3), area-averaging first when it shrinks a lot."""
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    if scale >= MIN_DIRECT_WARP_SCALE:
        return _warp(image, matrix, size_px)
    # The part of the frame the crop covers: the crop's corners mapped back, plus a pixel.
    inverse = cv2.invertAffineTransform(matrix)
    corners = np.array([[0, 0, 1], [size_px, 0, 1], [0, size_px, 1], [size_px, size_px, 1]], float)
    mapped = corners @ inverse.T
    height, width = image.shape[:2]
    x0, y0 = np.clip(np.floor(mapped.min(axis=0)).astype(int) - 1, 0, [width, height])
    x1, y1 = np.clip(np.ceil(mapped.max(axis=0)).astype(int) + 2, 0, [width, height])
    if x1 <= x0 or y1 <= y0:
        return np.zeros((size_px, size_px, 3), dtype=np.uint8)
    region = image[y0:y1, x0:x1]
    shrunk_size = (max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale)))
    shrunk = cv2.resize(region, shrunk_size, interpolation=cv2.INTER_AREA)
    factor_x, factor_y = shrunk_size[0] / (x1 - x0), shrunk_size[1] / (y1 - y0)
    # Frame pixel x maps to shrunk pixel factor * (x - x0 + 0.5) - 0.5 (pixel-centre convention).
    frame_to_shrunk = np.array(
        [
            [factor_x, 0.0, factor_x * (0.5 - x0) - 0.5],
            [0.0, factor_y, factor_y * (0.5 - y0) - 0.5],
            [0, 0, 1],
        ]
    )
    return _warp(shrunk, matrix @ np.linalg.inv(frame_to_shrunk), size_px)


def _warp(image: np.ndarray, matrix: np.ndarray, size_px: int) -> np.ndarray:
    return cv2.warpAffine(
        image,
        matrix.astype(np.float64),
        (size_px, size_px),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(0, 0, 0),
    )
