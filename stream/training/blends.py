"""Pseudo-fakes made on the full frame: cross-person swaps and self-blends, then compression.

A live swapper (DeepFaceLive, GHOST, ...) aligns the camera face, renders the other person's
inner face at its own resolution (96-256 px), warps it back by the landmarks, matches its colour
and pastes it through a soft mask; then the call or stream encodes the whole frame. These
generators do the same on a real photo or clip frame, so that training never needs a real fake:

- ``cross_person_blend``: person B's face onto person A's head (identity evidence: the inner
  face no longer matches the outer face).
- ``self_blend_frame``: A's own face, re-coloured and re-scaled, onto A (SBI; artefact evidence
  without any identity change).
- ``compress_frames``: the same JPEG or H.264 round trip for reals and fakes alike, from light
  to c40-like, so compression is never the cue.

Every function takes and returns H x W x 3 uint8 RGB frames in frame pixels and 5 x 2 MTCNN
landmarks (eye, eye, nose, mouth corner, mouth corner). For video, draw one parameter set per
clip (``sample_cross_parameters``) and pass it for every frame, so a clip is one coherent fake.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, replace

import cv2
import numpy as np

from stream.training.pseudo_fakes import BlendParameters, landmark_mask, sample_parameters, self_blend
from tracking.crops import landmark_template, similarity_transform

# The face template a swapper renders into: landmarks placed as in a crop with this margin.
SWAP_TEMPLATE_MARGIN = 0.6
# Inter-ocular distance of the 160 px crop the SBI ranges were tuned on (eyes ~43 px apart).
SBI_REFERENCE_EYE_DISTANCE_PX = 43.0


@dataclass(frozen=True)
class CrossBlendParameters:
    """One fake's (or one clip's) swap recipe, drawn by ``sample_cross_parameters``.

    Attributes:
        swap_resolution_px: side of the square the swapper renders the face at, pixels.
        colour_transfer: 0..1, how far the source face's Lab mean/std move to the target's.
        mask_grow: dilation (> 0) or erosion (< 0) of the landmark hull, in eye distances.
        mask_blur: Gaussian feathering of the mask edge, in eye distances.
        deform: amplitude of the smooth random deformation of the mask, in eye distances.
        deform_seed: seed of that deformation field (fixed per clip).
        poisson: paste with Poisson (seamless) cloning instead of alpha blending.
        blend_ratio: peak opacity of the pasted face, in (0, 1].
        sharpen: > 0 sharpens the rendered face, < 0 blurs it (unsharp-mask amount).
    """

    swap_resolution_px: int
    colour_transfer: float
    mask_grow: float
    mask_blur: float
    deform: float
    deform_seed: int
    poisson: bool
    blend_ratio: float
    sharpen: float


# A plainly visible swap for demonstrations and tests: the other face rendered at 160 px,
# colour-matched, pasted through a soft mask (the README's screenshots, the enrolment tests).
VISIBLE_SWAP = CrossBlendParameters(
    swap_resolution_px=160,
    colour_transfer=0.9,
    mask_grow=0.0,
    mask_blur=0.15,
    deform=0.0,
    deform_seed=0,
    poisson=False,
    blend_ratio=1.0,
    sharpen=0.5,
)


def sample_cross_parameters(rng: np.random.Generator) -> CrossBlendParameters:
    """Draw one swap recipe; ranges span what live swappers are run with."""
    return CrossBlendParameters(
        swap_resolution_px=int(rng.choice([96, 128, 160, 192, 224, 256])),
        colour_transfer=float(rng.uniform(0.6, 1.0)),
        mask_grow=float(rng.uniform(-0.12, 0.08)),
        mask_blur=float(rng.uniform(0.06, 0.3)),
        deform=float(rng.uniform(0.0, 0.08)),
        deform_seed=int(rng.integers(0, 2**31 - 1)),
        poisson=bool(rng.random() < 0.25),
        blend_ratio=float(rng.choice([0.85, 1.0, 1.0, 1.0])),
        # Swappers sharpen their output: on the 23 DeepFaceLive dev pairs the swapped inner face
        # is crisper relative to its surroundings than the real one in 15 (docs/artifact_study.md),
        # while resampling alone leaves it softer. Spanning both keeps sharpness from being a cue.
        sharpen=float(rng.uniform(-0.4, 1.6)),
    )


def _check_frame(image: np.ndarray, name: str) -> None:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"{name} must be H x W x 3 uint8 RGB, got {image.shape} {image.dtype}")


def _check_landmarks(landmarks_5x2: np.ndarray, name: str) -> np.ndarray:
    landmarks = np.asarray(landmarks_5x2, np.float64)
    if landmarks.shape != (5, 2) or not np.isfinite(landmarks).all():
        raise ValueError(f"{name} must be 5 x 2 finite pixels, got {landmarks.shape}")
    return landmarks


def eye_distance_px(landmarks_5x2: np.ndarray) -> float:
    """Distance between the two eye landmarks, pixels (at least 1)."""
    return max(float(np.hypot(*(landmarks_5x2[1] - landmarks_5x2[0]))), 1.0)


def hull_mask(
    landmarks_5x2: np.ndarray,
    size_hw: tuple[int, int],
    grow_px: int,
    blur_px: int,
    deform_px: float = 0.0,
    deform_seed: int = 0,
) -> np.ndarray:
    """Soft face mask (H x W float32 in [0, 1]): the landmark hull, grown, deformed and feathered.

    The deformation is a smooth random displacement field (fixed by ``deform_seed``), so a
    clip keeps one mask shape that still follows the face as the landmarks move.
    """
    blur_px = max(3, int(blur_px) | 1)
    neutral = BlendParameters(
        scale=1.0,
        shift_px=(0.0, 0.0),
        hue_shift=0.0,
        saturation_gain=1.0,
        value_gain=1.0,
        channel_shift=(0.0, 0.0, 0.0),
        sharpen=0.0,
        mask_grow_px=int(grow_px),
        mask_blur_px=3,
        blend_ratio=1.0,
    )
    mask = landmark_mask(landmarks_5x2, size_hw, neutral)
    if deform_px > 0:
        field_rng = np.random.default_rng(deform_seed)
        height, width = size_hw
        coarse = field_rng.normal(0.0, 1.0, (2, 4, 4)).astype(np.float32)
        flow = [cv2.resize(c, (width, height), interpolation=cv2.INTER_CUBIC) * deform_px for c in coarse]
        grid_x, grid_y = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
        mask = cv2.remap(mask, grid_x + flow[0], grid_y + flow[1], cv2.INTER_LINEAR)
    return cv2.GaussianBlur(mask, (blur_px, blur_px), 0)


def render_swap_face(source: np.ndarray, source_landmarks: np.ndarray, resolution_px: int) -> np.ndarray:
    """The source face as a swapper renders it: aligned to the template at ``resolution_px``."""
    target = landmark_template(resolution_px, SWAP_TEMPLATE_MARGIN)
    matrix = similarity_transform(source_landmarks, target)
    return cv2.warpAffine(
        source, matrix, (resolution_px, resolution_px), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REFLECT
    )


def colour_transfer(
    face: np.ndarray, reference: np.ndarray, weights: np.ndarray, amount: float
) -> np.ndarray:
    """Move ``face``'s Lab mean and std (weighted by ``weights``) towards ``reference``'s by ``amount``."""
    weights = weights[..., None].astype(np.float32)
    total = float(weights.sum())
    if total < 1.0 or amount <= 0:
        return face
    face_lab = cv2.cvtColor(face, cv2.COLOR_RGB2LAB).astype(np.float32)
    reference_lab = cv2.cvtColor(reference, cv2.COLOR_RGB2LAB).astype(np.float32)

    def stats(lab: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mean = (lab * weights).sum(axis=(0, 1)) / total
        std = np.sqrt((((lab - mean) ** 2) * weights).sum(axis=(0, 1)) / total) + 1.0
        return mean, std

    face_mean, face_std = stats(face_lab)
    reference_mean, reference_std = stats(reference_lab)
    matched = (face_lab - face_mean) * (reference_std / face_std) + reference_mean
    mixed = amount * matched + (1.0 - amount) * face_lab
    return cv2.cvtColor(np.clip(mixed, 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)


def _unsharp(image: np.ndarray, amount: float) -> np.ndarray:
    if amount == 0:
        return image
    as_float = image.astype(np.float32)
    blurred = cv2.GaussianBlur(as_float, (5, 5), 0)
    return np.clip(as_float + amount * (as_float - blurred), 0, 255).astype(np.uint8)


def cross_person_blend(
    target: np.ndarray,
    target_landmarks: np.ndarray,
    source: np.ndarray,
    source_landmarks: np.ndarray,
    parameters: CrossBlendParameters,
) -> tuple[np.ndarray, np.ndarray]:
    """Paste the source person's face onto the target's head, as a live swapper does.

    Returns ``(frame, mask)``: the H x W x 3 uint8 fake (the target's size) and the H x W
    float32 mask in [0, 1] it was pasted through (zero wherever the frame is unchanged).
    """
    _check_frame(target, "target")
    _check_frame(source, "source")
    target_marks = _check_landmarks(target_landmarks, "target_landmarks")
    source_marks = _check_landmarks(source_landmarks, "source_landmarks")
    height, width = target.shape[:2]
    resolution = parameters.swap_resolution_px
    rendered = _unsharp(render_swap_face(source, source_marks, resolution), parameters.sharpen)
    back = similarity_transform(landmark_template(resolution, SWAP_TEMPLATE_MARGIN), target_marks)
    warped = cv2.warpAffine(rendered, back, (width, height), flags=cv2.INTER_LINEAR)
    covered = cv2.warpAffine(np.ones((resolution, resolution), np.float32), back, (width, height))
    eyes = eye_distance_px(target_marks)
    mask = hull_mask(
        target_marks,
        (height, width),
        grow_px=round(parameters.mask_grow * eyes),
        blur_px=round(parameters.mask_blur * eyes),
        deform_px=parameters.deform * eyes,
        deform_seed=parameters.deform_seed,
    )
    mask *= cv2.erode(covered, np.ones((3, 3), np.uint8))
    warped = colour_transfer(warped, target, mask, parameters.colour_transfer)
    if parameters.poisson and mask.max() > 0.5:
        binary = (mask > 0.5).astype(np.uint8) * 255
        ys, xs = np.nonzero(binary)
        centre = (int((xs.min() + xs.max() + 1) // 2), int((ys.min() + ys.max() + 1) // 2))
        try:
            # seamlessClone writes into the mask it is given: hand it a copy.
            cloned = cv2.seamlessClone(warped, target, binary.copy(), centre, cv2.NORMAL_CLONE)
        except cv2.error:
            cloned = None
        if cloned is not None:
            # Cloning also changes pixels up to ~15 px beyond the mask's edge: report them too.
            changed = np.any(cloned != target, axis=2) | (binary > 0)
            return cloned, changed.astype(np.float32)
    alpha = (mask * parameters.blend_ratio)[..., None]
    fake = alpha * warped.astype(np.float32) + (1.0 - alpha) * target.astype(np.float32)
    return np.clip(np.round(fake), 0, 255).astype(np.uint8), mask * parameters.blend_ratio


def sample_self_blend_parameters(rng: np.random.Generator, landmarks_5x2: np.ndarray) -> BlendParameters:
    """SBI parameters scaled to the face's size in the frame (the SBI ranges are for 160 px crops)."""
    eyes = eye_distance_px(_check_landmarks(landmarks_5x2, "landmarks"))
    parameters = sample_parameters(
        rng, crop_size_px=max(16, round(160 * eyes / SBI_REFERENCE_EYE_DISTANCE_PX))
    )
    # SBI's own +-(0.3..1) leaves the blended face softer than its ring in 3 of 4 photos (the
    # re-scaling and the soft mask blur it): lean towards sharpening, as swappers do.
    return replace(parameters, sharpen=float(rng.uniform(-0.5, 1.5)))


def self_blend_frame(
    image: np.ndarray, landmarks_5x2: np.ndarray, parameters: BlendParameters
) -> tuple[np.ndarray, np.ndarray]:
    """A self-blended frame and its mask (see ``stream.training.pseudo_fakes``), on the full frame."""
    _check_frame(image, "image")
    landmarks = _check_landmarks(landmarks_5x2, "landmarks")
    mask = landmark_mask(landmarks, image.shape[:2], parameters)
    return self_blend(image, landmarks, parameters), mask


@dataclass(frozen=True)
class Compression:
    """One compression round trip: ``codec`` "none", "jpeg" (``quality`` 1..100) or "h264" (``crf``)."""

    codec: str
    quality: int = 90
    crf: int = 23


def sample_compression(rng: np.random.Generator, video: bool) -> Compression:
    """Light to c40-like: none, JPEG quality 30..95, or H.264 CRF 18..40 (video only)."""
    roll = rng.random()
    if roll < 0.15:
        return Compression("none")
    if video or roll < 0.55:
        return Compression("h264", crf=int(rng.integers(18, 41)))
    return Compression("jpeg", quality=int(rng.integers(30, 96)))


def compress_frames(frames: list[np.ndarray], compression: Compression) -> list[np.ndarray]:
    """Round-trip H x W x 3 uint8 RGB frames (one clip, same size) through the codec."""
    if not frames:
        return []
    for frame in frames:
        _check_frame(frame, "frame")
    if compression.codec == "none":
        return [frame.copy() for frame in frames]
    if compression.codec == "jpeg":
        out = []
        for frame in frames:
            ok, data = cv2.imencode(
                ".jpg",
                cv2.cvtColor(frame, cv2.COLOR_RGB2BGR),
                [cv2.IMWRITE_JPEG_QUALITY, compression.quality],
            )
            decoded = cv2.imdecode(data, cv2.IMREAD_COLOR) if ok else None
            if decoded is None:
                raise ValueError(f"JPEG round trip failed for a {frame.shape} frame")
            out.append(cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB))
        return out
    if compression.codec == "h264":
        return _h264_round_trip(frames, compression.crf)
    raise ValueError(f"codec must be none, jpeg or h264, got {compression.codec!r}")


def _h264_round_trip(frames: list[np.ndarray], crf: int) -> list[np.ndarray]:
    import av

    height, width = frames[0].shape[:2]
    # yuv420p needs even sides: pad by edge replication, cut back after decoding.
    padded_h, padded_w = height + height % 2, width + width % 2
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height = padded_w, padded_h
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf), "preset": "veryfast"}
        for frame in frames:
            if frame.shape[:2] != (height, width):
                raise ValueError(
                    f"frames of one clip must share a size, got {frame.shape} after {height}x{width}"
                )
            even = np.ascontiguousarray(
                cv2.copyMakeBorder(frame, 0, padded_h - height, 0, padded_w - width, cv2.BORDER_REPLICATE),
                dtype=np.uint8,
            )
            for packet in stream.encode(av.VideoFrame.from_ndarray(even, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    buffer.seek(0)
    decoded = []
    with av.open(buffer, mode="r") as container:
        for picture in container.decode(video=0):
            decoded.append(picture.to_ndarray(format="rgb24")[:height, :width])
    if len(decoded) != len(frames):
        raise ValueError(f"H.264 round trip returned {len(decoded)} frames for {len(frames)}")
    return decoded
