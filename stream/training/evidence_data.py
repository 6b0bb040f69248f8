"""Training data for the identity evidence, made from real faces only.

- ``photo_evidence``: real face photos (``faces/manifest.csv``: many people, one or two photos
  each) -> for every usable photo, the evidence features of the real aligned crop and of a
  cross-person blend of another person's face onto it (``stream.training.blends``), each through
  its own draw of compression.
- ``clip_evidence``: real videos -> per clip, the real track and pseudo-fakes of it (cross-person
  swaps and a self-blend, one parameter set per clip), each compressed as one H.264 clip. Faces
  come from the live per-frame step (``stream.training.extract``: detect -> track -> aligned crop).

Photos are processed in chunks cached under ``cache_dir`` (keyed by the settings), so a long run
resumes where it stopped. Unreadable images and photos without a usable face are skipped and
counted in the returned report.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np
from tqdm.auto import tqdm

from stream.training import blends
from stream.training.datasets import MediaItem
from stream.training.extract import FaceCache
from tracking.config import CropConfig, DetectorConfig
from tracking.crops import aligned_transform, warp_crop

logger = logging.getLogger(__name__)

# A face needs this MTCNN confidence and eye distance (pixels) to be used: smaller or doubtful
# faces give blends that teach nothing.
MIN_FACE_CONFIDENCE = 0.95
MIN_EYE_DISTANCE_PX = 20.0
# Other people a cross-person blend may draw its source face from (most recent photos).
SOURCE_POOL_SIZE = 300
CHUNK_FORMAT = 1


class EvidenceEncoder(Protocol):
    """What the data builders need from ``engine.evidence.EvidenceEncoder``."""

    weights_id: str

    def encode(self, crops: np.ndarray) -> np.ndarray: ...


class FaceFinder(Protocol):
    """What the data builders need from ``tracking.FaceDetector``."""

    def detect(self, image: np.ndarray) -> list[Any]: ...


@dataclass(frozen=True)
class PhotoSettings:
    """How photo pseudo-fakes are made.

    Attributes:
        limit: photos to use at most (in a seeded random order), 0 = all.
        chunk_size: photos per cached chunk.
        tight_crop_sources: ``source`` values whose photos are cut tight around the face; they
            are padded with black by a third of their side, as a frame edge would be.
        seed: seed of the order, the pairing and every blend.
        crop: the live aligned crop (size, margin).
    """

    limit: int = 0
    chunk_size: int = 200
    tight_crop_sources: tuple[str, ...] = ("Mohanish-5744/Major_Ensemble_Gender",)
    seed: int = 0
    crop: CropConfig = field(default_factory=CropConfig)

    def __post_init__(self) -> None:
        if not isinstance(self.limit, int) or self.limit < 0:
            raise ValueError(f"limit must be an integer >= 0, got {self.limit!r}")
        if not isinstance(self.chunk_size, int) or self.chunk_size < 1:
            raise ValueError(f"chunk_size must be an integer >= 1, got {self.chunk_size!r}")

    def key(self, weights_id: str) -> str:
        text = json.dumps(
            {"format": CHUNK_FORMAT, "weights": weights_id, **asdict(self)}, sort_keys=True, default=str
        )
        return hashlib.sha1(text.encode()).hexdigest()[:12]


@dataclass
class PhotoEvidence:
    """Features of real photos and of cross-person blends onto them (row i: the same photo).

    Attributes:
        real, fake: N x 1024 evidence features.
        groups: (N,) person of each photo.
        report: counts: photos seen, used, unreadable, without a usable face.
    """

    real: np.ndarray
    fake: np.ndarray
    groups: np.ndarray
    report: dict[str, int]


def largest_face(
    detector: FaceFinder,
    image: np.ndarray,
    min_confidence: float = MIN_FACE_CONFIDENCE,
    min_eye_distance_px: float = MIN_EYE_DISTANCE_PX,
) -> np.ndarray | None:
    """5 x 2 landmarks of the largest face in ``image``; None when none is sure and big enough."""
    faces = detector.detect(image)
    if not faces:
        return None
    best = max(faces, key=lambda f: float((f.box_xyxy[2] - f.box_xyxy[0]) * (f.box_xyxy[3] - f.box_xyxy[1])))
    marks = np.asarray(best.landmarks_5x2, np.float64)
    if best.confidence < min_confidence or blends.eye_distance_px(marks) < min_eye_distance_px:
        return None
    return marks


def read_photo(item: MediaItem, settings: PhotoSettings) -> np.ndarray | None:
    """The photo as RGB (tight crops padded with black), or None when it cannot be read."""
    bgr = cv2.imread(str(item.path))
    if bgr is None:
        return None
    image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    if item.source in settings.tight_crop_sources:
        pad = image.shape[0] // 3
        image = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(0, 0, 0))
    return image


def aligned_crop(image: np.ndarray, landmarks: np.ndarray, crop: CropConfig) -> np.ndarray:
    """The live pipeline's aligned crop of the face with these landmarks."""
    matrix = aligned_transform(landmarks, crop.size_px, crop.margin)
    if matrix is None:
        raise ValueError("degenerate landmarks")
    return warp_crop(image, matrix, crop.size_px)


def photo_evidence(
    items: Sequence[MediaItem],
    encoder: EvidenceEncoder,
    cache_dir: Path,
    settings: PhotoSettings | None = None,
    detector_factory: Callable[[], FaceFinder] | None = None,
    progress: bool = True,
) -> PhotoEvidence:
    """Make (or load from ``cache_dir``) real and cross-person-blend features of real photos.

    Only real image rows are used. Raises ``ValueError`` when none is given or none has a face.
    """
    settings = settings or PhotoSettings()
    photos = [item for item in items if item.kind == "image" and item.label == 0]
    if not photos:
        raise ValueError(f"no real photos among {len(items)} rows (need kind=image, label=real)")
    rng = np.random.default_rng(settings.seed)
    order = rng.permutation(len(photos))
    if settings.limit:
        order = order[: settings.limit]
    folder = cache_dir / f"photos-{settings.key(encoder.weights_id)}"
    folder.mkdir(parents=True, exist_ok=True)
    chunks = [
        order[start : start + settings.chunk_size] for start in range(0, len(order), settings.chunk_size)
    ]
    detector: FaceFinder | None = None
    pool: list[tuple[np.ndarray, np.ndarray, str]] = []
    real, fake, groups = [], [], []
    report = {"photos": len(order), "used": 0, "unreadable": 0, "no_face": 0}
    bar = tqdm(chunks, desc="photos", unit="chunk", disable=not progress)
    for number, chunk in enumerate(bar):
        path = folder / f"chunk-{number:04d}.npz"
        if path.is_file():
            cached = np.load(path)
            counts = json.loads(str(cached["report"]))
        else:
            if detector is None:
                detector = detector_factory() if detector_factory else default_detector()
            chunk_rng = np.random.default_rng([settings.seed, number])
            made = _make_chunk([photos[i] for i in chunk], detector, encoder, pool, chunk_rng, settings)
            cached, counts = made
            temporary = path.with_name(path.stem + ".partial.npz")
            arrays: dict[str, Any] = {**cached, "report": np.asarray(json.dumps(counts))}
            np.savez(temporary, **arrays)
            os.replace(temporary, path)
        for name in ("unreadable", "no_face", "used"):
            report[name] += int(counts[name])
        if len(cached["real"]):
            real.append(cached["real"])
            fake.append(cached["fake"])
            groups.append(cached["groups"])
    if not real:
        raise ValueError(f"none of {len(order)} photos gave a usable face ({report})")
    logger.info("photo pseudo-fakes: %s", report)
    return PhotoEvidence(np.concatenate(real), np.concatenate(fake), np.concatenate(groups), report)


def default_detector() -> FaceFinder:
    from tracking.detector import FaceDetector

    return FaceDetector(DetectorConfig(max_side_px=None, min_face_size_px=30.0))


def _make_chunk(
    photos: Sequence[MediaItem],
    detector: FaceFinder,
    encoder: EvidenceEncoder,
    pool: list[tuple[np.ndarray, np.ndarray, str]],
    rng: np.random.Generator,
    settings: PhotoSettings,
) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    counts = {"unreadable": 0, "no_face": 0, "used": 0}
    real_crops, fake_crops, groups = [], [], []
    for item in photos:
        image = read_photo(item, settings)
        if image is None:
            counts["unreadable"] += 1
            logger.warning("skipping unreadable image %s", item.path)
            continue
        marks = largest_face(detector, image)
        if marks is None:
            counts["no_face"] += 1
            continue
        others = [entry for entry in pool if entry[2] != item.group]
        pool.append((image, marks, item.group))
        if len(pool) > SOURCE_POOL_SIZE:
            pool.pop(int(rng.integers(len(pool) - 1)))
        if not others:
            # The first photo has nobody to swap in yet; it only joins the pool.
            continue
        source, source_marks, _ = others[int(rng.integers(len(others)))]
        swapped, _ = blends.cross_person_blend(
            image, marks, source, source_marks, blends.sample_cross_parameters(rng)
        )
        pair = []
        for frame in (image, swapped):
            compressed = blends.compress_frames([frame], blends.sample_compression(rng, video=False))[0]
            pair.append(aligned_crop(compressed, marks, settings.crop))
        real_crops.append(pair[0])
        fake_crops.append(pair[1])
        groups.append(item.group)
        counts["used"] += 1
    if not real_crops:
        empty = np.zeros((0, 1024), np.float32)
        return {"real": empty, "fake": empty, "groups": np.zeros(0, str)}, counts
    features = encoder.encode(np.stack(real_crops + fake_crops))
    count = len(real_crops)
    return {"real": features[:count], "fake": features[count:], "groups": np.asarray(groups)}, counts


@dataclass
class ClipEvidence:
    """Per-clip feature sequences: ``features[i]`` is T_i x 1024, ``labels[i]`` 0 real / 1 fake.

    ``names[i]`` says which clip and version ("real", "cross0", "sbi", ...); all versions of a
    clip share its ``groups[i]``.
    """

    features: list[np.ndarray]
    labels: np.ndarray
    names: list[str]
    groups: list[str]


def decode_frames(path: Path, timestamps_s: np.ndarray) -> dict[int, np.ndarray]:
    """The RGB frames of ``path`` nearest to the given timestamps, decoded from the start."""
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise ValueError(f"cannot open video {path}")
    try:
        fps = capture.get(cv2.CAP_PROP_FPS)
        fps = fps if fps and np.isfinite(fps) and 0 < fps <= 1000 else 25.0
        wanted: dict[int, list[int]] = {}
        for position, timestamp in enumerate(timestamps_s):
            wanted.setdefault(round(float(timestamp) * fps), []).append(position)
        frames: dict[int, np.ndarray] = {}
        index = 0
        last = max(wanted) if wanted else -1
        while index <= last and capture.grab():
            if index in wanted:
                ok, bgr = capture.retrieve()
                if ok:
                    for position in wanted[index]:
                        frames[position] = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            index += 1
    finally:
        capture.release()
    return frames


def clip_versions(
    frames: Sequence[np.ndarray],
    landmarks: np.ndarray,
    sources: Sequence[tuple[np.ndarray, np.ndarray]],
    rng: np.random.Generator,
    crosses: int = 2,
    crop: CropConfig | None = None,
) -> dict[str, np.ndarray]:
    """Aligned crops (T x 160 x 160 x 3) of a real clip and of its per-clip pseudo-fakes.

    ``landmarks`` is T x 5 x 2 (frame pixels). Each version ("real", "cross<k>", "sbi") uses one
    parameter set, one source person and one compression for all its frames.
    """
    crop = crop or CropConfig()
    landmarks = np.asarray(landmarks, np.float64)
    if len(frames) == 0 or landmarks.shape != (len(frames), 5, 2):
        raise ValueError(f"need T frames and T x 5 x 2 landmarks, got {len(frames)} and {landmarks.shape}")
    versions: dict[str, list[np.ndarray]] = {"real": list(frames)}
    for number in range(crosses):
        parameters = blends.sample_cross_parameters(rng)
        source, source_marks = sources[int(rng.integers(len(sources)))]
        versions[f"cross{number}"] = [
            blends.cross_person_blend(frame, marks, source, source_marks, parameters)[0]
            for frame, marks in zip(frames, landmarks, strict=True)
        ]
    self_parameters = blends.sample_self_blend_parameters(rng, landmarks[0])
    versions["sbi"] = [
        blends.self_blend_frame(frame, marks, self_parameters)[0]
        for frame, marks in zip(frames, landmarks, strict=True)
    ]
    crops = {}
    for name, clip in versions.items():
        compressed = blends.compress_frames(clip, blends.sample_compression(rng, video=True))
        crops[name] = np.stack(
            [aligned_crop(frame, marks, crop) for frame, marks in zip(compressed, landmarks, strict=True)]
        )
    return crops


def clip_evidence(
    videos: Sequence[tuple[MediaItem, FaceCache]],
    sources: Sequence[tuple[np.ndarray, np.ndarray]],
    encoder: EvidenceEncoder,
    every_nth_sample: int = 2,
    seed: int = 0,
    progress: bool = True,
    cache_dir: Path | None = None,
) -> ClipEvidence:
    """Evidence sequences of real clips and their pseudo-fakes.

    ``videos`` pairs each real clip with its extraction cache (``stream.training.extract``); its primary
    track is used, every ``every_nth_sample``-th sample (extraction samples at 8 Hz, so 2 gives
    4 Hz). ``sources`` are (photo, landmarks) of other people to swap in. With ``cache_dir``
    each clip's features are kept there (keyed by clip, seed, sources and encoder), so a rerun
    only encodes what is new.
    """
    if not sources:
        raise ValueError("clip pseudo-fakes need at least one source face")
    features, labels, names, groups = [], [], [], []
    for number, (item, faces) in enumerate(tqdm(videos, desc="clips", unit="clip", disable=not progress)):
        if item.label != 0:
            raise ValueError(f"clip pseudo-fakes are made from real clips only, got fake {item.name}")
        indices = faces.primary_track()[::every_nth_sample]
        indices = np.asarray([i for i in indices if np.isfinite(faces.landmarks_5x2[i]).all()], np.int64)
        if len(indices) == 0:
            logger.warning("%s: no face with landmarks; skipped", item.name)
            continue
        key = hashlib.sha1(
            json.dumps(
                [CHUNK_FORMAT, item.name, seed, number, every_nth_sample, encoder.weights_id, len(sources)]
            ).encode()
        ).hexdigest()[:16]
        cached_path = None if cache_dir is None else cache_dir / f"clip-{key}.npz"
        if cached_path is not None and cached_path.is_file():
            versions = dict(np.load(cached_path))
        else:
            made = _encoded_versions(
                item, faces, indices, sources, encoder, np.random.default_rng([seed, number])
            )
            if made is None:
                continue
            versions = made
            if cached_path is not None:
                cached_path.parent.mkdir(parents=True, exist_ok=True)
                temporary = cached_path.with_name(cached_path.stem + ".partial.npz")
                arrays: dict[str, Any] = versions
                np.savez(temporary, **arrays)
                os.replace(temporary, cached_path)
        for name, version in versions.items():
            features.append(version)
            labels.append(0 if name == "real" else 1)
            names.append(f"{item.name}#{name}")
            groups.append(item.group)
    return ClipEvidence(features, np.asarray(labels, np.int64), names, groups)


def _encoded_versions(
    item: MediaItem,
    faces: FaceCache,
    indices: np.ndarray,
    sources: Sequence[tuple[np.ndarray, np.ndarray]],
    encoder: EvidenceEncoder,
    rng: np.random.Generator,
) -> dict[str, np.ndarray] | None:
    """Decode the clip's sampled frames again, make its versions and encode them (None: undecodable)."""
    frames = decode_frames(item.path, faces.timestamps_s[indices])
    kept = [position for position in range(len(indices)) if position in frames]
    if not kept:
        logger.warning("%s: frames could not be decoded again; skipped", item.name)
        return None
    crops = clip_versions(
        [frames[position] for position in kept], faces.landmarks_5x2[indices[kept]], sources, rng
    )
    return {name: np.asarray(encoder.encode(version), np.float32) for name, version in crops.items()}


def source_faces(
    items: Sequence[MediaItem],
    count: int,
    seed: int = 0,
    detector_factory: Callable[[], FaceFinder] | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Up to ``count`` (photo, landmarks) of different people, to swap into clips.

    Photos from ``PhotoSettings.tight_crop_sources`` are skipped: a swap needs the whole face.
    """
    settings = PhotoSettings()
    photos = [
        item
        for item in items
        if item.kind == "image" and item.label == 0 and item.source not in settings.tight_crop_sources
    ]
    detector = detector_factory() if detector_factory else default_detector()
    faces: list[tuple[np.ndarray, np.ndarray]] = []
    seen: set[str] = set()
    for index in np.random.default_rng(seed).permutation(len(photos)):
        item = photos[int(index)]
        if item.group in seen:
            continue
        image = read_photo(item, settings)
        marks = None if image is None else largest_face(detector, image)
        if image is not None and marks is not None:
            faces.append((image, marks))
            seen.add(item.group)
        if len(faces) >= count:
            break
    return faces
