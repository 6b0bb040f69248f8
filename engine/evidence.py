"""Identity-consistency evidence: the inner face and the outer face of one crop, embedded together.

A live face swapper replaces the inner face (eyes, nose, mouth) and keeps the head: hair, ears,
jaw line, neck and background. A face-recognition encoder that looks at the two parts separately
sees one person in a real face and two in a swap. ``EvidenceEncoder`` turns each aligned crop
into the embeddings of its inner and outer parts, both in one encoder batch, and the evidence
heads (``engine.heads``) score how far the two disagree over the sliding window.

Calling contract: ``EvidenceEncoder.encode`` takes the same N x 160 x 160 x 3 uint8 aligned crops
as ``FaceEncoder.encode`` and returns N x ``2 * 512`` float32 (inner embedding, then outer), each
half L2-normalised. The crop geometry below assumes the live pipeline's aligned crop (5-landmark
template, 160 px, margin 0.25), which the scorer checkpoint records and the app checks.
"""

from __future__ import annotations

import functools
import threading
from types import TracebackType
from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    from engine.encoder import FaceEncoder

EMBEDDING_DIM = 512
# What ``EvidenceEncoder`` produces, as heads name it (``engine.heads.head_features``).
FEATURES = "inner_outer"
CROP_SIZE_PX = 160

# The inner face in a 160 px aligned crop with margin 0.25: from above the brows to below the
# mouth, cheek to cheek (rows 44..140, columns 44..116), where the template puts the eyes at
# rows ~66, the mouth corners at ~113. Resized to the encoder's 160 px square.
INNER_ROWS = (44, 140)
INNER_COLS = (44, 116)

# The region blurred away for the outer face: an ellipse over eyes, nose and mouth, centre and
# half-axes in crop pixels, feathered over this many pixels so no sharp edge is left for the
# encoder to key on.
OUTER_ELLIPSE_CENTRE_XY = (79.5, 90.0)
OUTER_ELLIPSE_AXES_XY = (38.0, 50.0)
OUTER_FEATHER_PX = 9
# What replaces the inner face: the crop area-averaged down to this side and scaled back up,
# which keeps the skin colour and lighting and removes every facial feature.
OUTER_FILL_SIDE_PX = 6


@functools.cache
def _outer_mask() -> np.ndarray:
    """The feathered ellipse (160 x 160 x 1 float32), made on first use."""
    mask = np.zeros((CROP_SIZE_PX, CROP_SIZE_PX), np.float32)
    centre = tuple(round(v) for v in OUTER_ELLIPSE_CENTRE_XY)
    axes = tuple(round(v) for v in OUTER_ELLIPSE_AXES_XY)
    cv2.ellipse(mask, centre, axes, 0.0, 0.0, 360.0, 1.0, thickness=-1)
    kernel = OUTER_FEATHER_PX * 2 + 1
    return cv2.GaussianBlur(mask, (kernel, kernel), 0)[..., None]


def check_crops(crops: np.ndarray) -> None:
    """Raise ``ValueError`` unless ``crops`` is N x 160 x 160 x 3 uint8."""
    if crops.ndim != 4 or crops.shape[1:] != (CROP_SIZE_PX, CROP_SIZE_PX, 3) or crops.dtype != np.uint8:
        raise ValueError(
            f"crops must be N x {CROP_SIZE_PX} x {CROP_SIZE_PX} x 3 uint8 RGB aligned crops, "
            f"got {crops.shape} {crops.dtype}"
        )


def inner_crops(crops: np.ndarray) -> np.ndarray:
    """The inner face of each aligned crop, resized to 160 x 160 (N x 160 x 160 x 3 uint8)."""
    check_crops(crops)
    (top, bottom), (left, right) = INNER_ROWS, INNER_COLS
    out = np.empty_like(crops)
    for index, crop in enumerate(crops):
        out[index] = cv2.resize(
            crop[top:bottom, left:right], (CROP_SIZE_PX, CROP_SIZE_PX), interpolation=cv2.INTER_LINEAR
        )
    return out


def outer_crops(crops: np.ndarray) -> np.ndarray:
    """Each crop with eyes, nose and mouth blurred away (N x 160 x 160 x 3 uint8)."""
    check_crops(crops)
    out = np.empty_like(crops)
    side = OUTER_FILL_SIDE_PX
    mask = _outer_mask()
    for index, crop in enumerate(crops):
        small = cv2.resize(crop, (side, side), interpolation=cv2.INTER_AREA)
        fill = cv2.resize(small, (CROP_SIZE_PX, CROP_SIZE_PX), interpolation=cv2.INTER_CUBIC)
        mixed = mask * fill.astype(np.float32) + (1.0 - mask) * crop.astype(np.float32)
        out[index] = np.clip(np.round(mixed), 0, 255).astype(np.uint8)
    return out


class EvidenceEncoder:
    """Wraps a ``FaceEncoder``: crops in, [inner embedding | outer embedding] per crop out.

    Both parts of all crops go through the wrapped encoder in one batch (2N crops), so the
    backend sees one call per pipeline batch as before. ``backend_name`` is the wrapped encoder's,
    ``weights_id`` its id with ``+inner_outer``; closing this closes it.

    Calls are serialised by a lock: a page enrolling a person (``stream.server``) encodes its
    photo from another thread than the live encode worker, and a backend such as a TensorRT
    execution context must never run two batches at once.
    """

    output_dim = 2 * EMBEDDING_DIM

    def __init__(self, encoder: FaceEncoder) -> None:
        self.encoder = encoder
        self.backend_name = encoder.backend_name
        self.precision = encoder.precision
        # A suffix after "+" keeps the base weights comparable (``ScorerCheckpoint.check_encoder``)
        # and gives caches of these features their own key.
        self.weights_id = f"{encoder.weights_id}+{FEATURES}"
        self._lock = threading.Lock()

    def encode(self, crops: np.ndarray) -> np.ndarray:
        """N x 160 x 160 x 3 uint8 aligned crops -> N x 1024 float32 (inner, outer)."""
        check_crops(crops)
        count = len(crops)
        if count == 0:
            return np.zeros((0, self.output_dim), np.float32)
        parts = np.concatenate([inner_crops(crops), outer_crops(crops)])
        with self._lock:
            embeddings = np.asarray(self.encoder.encode(parts), np.float32)
        return np.concatenate([embeddings[:count], embeddings[count:]], axis=1)

    def close(self) -> None:
        self.encoder.close()

    def __enter__(self) -> EvidenceEncoder:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def identity_disagreement(features: np.ndarray) -> np.ndarray:
    """The training-free identity score of each row of N x 1024 evidence: -cos(inner, outer)."""
    features = np.asarray(features, np.float32)
    if features.ndim != 2 or features.shape[1] != 2 * EMBEDDING_DIM:
        raise ValueError(f"features must be N x {2 * EMBEDDING_DIM}, got {features.shape}")
    inner, outer = features[:, :EMBEDDING_DIM], features[:, EMBEDDING_DIM:]
    return -np.sum(inner * outer, axis=1)
