"""Self-blended pseudo-fakes (Shiohara and Yamasaki, CVPR 2022) made from real face crops.

A real face is blended with a slightly colour- and geometry-transformed copy of itself through a
soft mask around its landmarks. The result carries the blending boundary and the colour and
scale mismatch that face swaps leave, without any identity change, so a detector trained on it
learns the artefacts rather than who is in the picture. One set of blend parameters is drawn per
clip and applied to every frame, so a temporal model sees one coherent fake, as with a real swap.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# How far the mask reaches beyond the 5 landmarks, in inter-ocular distances: MTCNN gives eyes,
# nose and mouth corners only, so the forehead, cheeks and chin are extrapolated from them.
_BROW_RISE = 0.55
_CHEEK_SPREAD = 0.45
_CHIN_DROP = 0.65


@dataclass(frozen=True)
class BlendParameters:
    """One clip's pseudo-fake recipe (drawn by ``sample_parameters``).

    Attributes:
        scale: scale of the transformed copy about the face centre.
        shift_px: (dx, dy) shift of the copy, pixels.
        hue_shift: hue offset of the copy, OpenCV hue units (0..180 wraps).
        saturation_gain, value_gain: multiplicative HSV gains of the copy.
        channel_shift: per-channel RGB offset of the copy, 0..255 units.
        sharpen: > 0 sharpens the copy by that amount, < 0 blurs it.
        mask_grow_px: dilation (> 0) or erosion (< 0) of the landmark hull, pixels.
        mask_blur_px: Gaussian blur kernel (odd) softening the mask edge, pixels.
        blend_ratio: maximum opacity of the copy inside the mask, in (0, 1].
    """

    scale: float
    shift_px: tuple[float, float]
    hue_shift: float
    saturation_gain: float
    value_gain: float
    channel_shift: tuple[float, float, float]
    sharpen: float
    mask_grow_px: int
    mask_blur_px: int
    blend_ratio: float


def sample_parameters(rng: np.random.Generator, crop_size_px: int = 160) -> BlendParameters:
    """Draw one clip's blend parameters (ranges follow the SBI paper, scaled to face crops)."""
    unit = crop_size_px / 160.0
    blur = int(rng.integers(2, 9) * unit) * 2 + 1
    return BlendParameters(
        scale=float(rng.uniform(0.94, 1.06)),
        shift_px=(float(rng.uniform(-3, 3) * unit), float(rng.uniform(-3, 3) * unit)),
        hue_shift=float(rng.uniform(-6, 6)),
        saturation_gain=float(rng.uniform(0.85, 1.15)),
        value_gain=float(rng.uniform(0.88, 1.12)),
        channel_shift=tuple(float(v) for v in rng.uniform(-12, 12, 3)),  # type: ignore[arg-type]
        sharpen=float(rng.choice([-1.0, 1.0]) * rng.uniform(0.3, 1.0)),
        mask_grow_px=int(rng.integers(-4, 5) * unit),
        mask_blur_px=blur,
        blend_ratio=float(rng.choice([0.5, 0.75, 1.0, 1.0])),
    )


def landmark_mask(
    landmarks_5x2: np.ndarray, size_hw: tuple[int, int], parameters: BlendParameters
) -> np.ndarray:
    """Soft face mask (H x W float32 in [0, 1]) from the convex hull of extrapolated landmarks."""
    landmarks = np.asarray(landmarks_5x2, np.float64)
    if landmarks.shape != (5, 2) or not np.isfinite(landmarks).all():
        raise ValueError(f"landmarks must be 5 x 2 finite pixels, got {landmarks.shape}")
    left_eye, right_eye, nose, mouth_left, mouth_right = landmarks
    eye_axis = right_eye - left_eye
    eye_distance = max(float(np.hypot(*eye_axis)), 1.0)
    across = eye_axis / eye_distance
    down = np.array([-across[1], across[0]])
    if np.dot(down, (mouth_left + mouth_right) / 2 - (left_eye + right_eye) / 2) < 0:
        down = -down
    mouth_centre = (mouth_left + mouth_right) / 2
    points = [
        left_eye - _BROW_RISE * eye_distance * down - 0.2 * eye_distance * across,
        right_eye - _BROW_RISE * eye_distance * down + 0.2 * eye_distance * across,
        left_eye - _CHEEK_SPREAD * eye_distance * across,
        right_eye + _CHEEK_SPREAD * eye_distance * across,
        mouth_left - 0.35 * eye_distance * across + 0.15 * eye_distance * down,
        mouth_right + 0.35 * eye_distance * across + 0.15 * eye_distance * down,
        mouth_centre + _CHIN_DROP * eye_distance * down,
        nose,
    ]
    hull = cv2.convexHull(np.round(np.stack(points)).astype(np.int32))
    hull_mask = np.zeros(size_hw, np.uint8)
    cv2.fillConvexPoly(hull_mask, hull, 255)
    mask: np.ndarray = hull_mask
    if parameters.mask_grow_px:
        kernel = np.ones((abs(parameters.mask_grow_px) * 2 + 1,) * 2, np.uint8)
        mask = cv2.dilate(mask, kernel) if parameters.mask_grow_px > 0 else cv2.erode(mask, kernel)
    soft = cv2.GaussianBlur(mask.astype(np.float32) / 255.0, (parameters.mask_blur_px,) * 2, 0)
    # Keep the inside fully opaque after blurring, so only the boundary is soft (as in SBI).
    soft = np.clip(soft * 1.3, 0.0, 1.0)
    return soft * parameters.blend_ratio


def transformed_copy(image: np.ndarray, centre_xy: np.ndarray, parameters: BlendParameters) -> np.ndarray:
    """The source face: the image re-coloured, sharpened or blurred, and slightly moved and scaled."""
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + parameters.hue_shift) % 180.0
    hsv[..., 1] *= parameters.saturation_gain
    hsv[..., 2] *= parameters.value_gain
    copy = cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32)
    copy += np.asarray(parameters.channel_shift, np.float32)
    blurred = cv2.GaussianBlur(copy, (5, 5), 0)
    # Unsharp masking: a positive amount sharpens, a negative one moves towards the blur.
    copy = copy + parameters.sharpen * (copy - blurred)
    matrix = cv2.getRotationMatrix2D((float(centre_xy[0]), float(centre_xy[1])), 0.0, parameters.scale)
    matrix[:, 2] += np.asarray(parameters.shift_px, np.float64)
    moved = cv2.warpAffine(
        np.clip(copy, 0, 255), matrix, (image.shape[1], image.shape[0]), borderMode=cv2.BORDER_REFLECT
    )
    return moved


def self_blend(image: np.ndarray, landmarks_5x2: np.ndarray, parameters: BlendParameters) -> np.ndarray:
    """One self-blended frame: H x W x 3 uint8 RGB in, same out."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be H x W x 3 uint8 RGB, got {image.shape} {image.dtype}")
    landmarks = np.asarray(landmarks_5x2, np.float64)
    mask = landmark_mask(landmarks, image.shape[:2], parameters)[..., None]
    source = transformed_copy(image, landmarks.mean(axis=0), parameters)
    blended = mask * source + (1.0 - mask) * image.astype(np.float32)
    return np.clip(np.round(blended), 0, 255).astype(np.uint8)


def self_blend_clip(
    crops: np.ndarray,
    landmarks: np.ndarray,
    rng: np.random.Generator,
    parameters: BlendParameters | None = None,
) -> tuple[np.ndarray, BlendParameters]:
    """Pseudo-fake a clip: T x H x W x 3 uint8 crops, landmarks T x 5 x 2 (or one 5 x 2 for all).

    One parameter set (drawn from ``rng`` unless given) is used for every frame, so the clip is
    one coherent fake. Returns the blended crops and the parameters used.
    """
    if crops.ndim != 4 or crops.shape[3] != 3 or crops.dtype != np.uint8:
        raise ValueError(f"crops must be T x H x W x 3 uint8, got {crops.shape} {crops.dtype}")
    landmarks = np.asarray(landmarks, np.float64)
    if landmarks.shape == (5, 2):
        landmarks = np.broadcast_to(landmarks, (len(crops), 5, 2))
    if landmarks.shape != (len(crops), 5, 2):
        raise ValueError(f"landmarks must be 5 x 2 or {len(crops)} x 5 x 2, got {landmarks.shape}")
    parameters = parameters or sample_parameters(rng, crops.shape[1])
    blended = np.stack(
        [self_blend(crop, marks, parameters) for crop, marks in zip(crops, landmarks, strict=True)]
    )
    return blended, parameters
