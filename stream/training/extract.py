"""Videos -> face caches: detect, track, crop and encode the faces of a video at the scorer's rate.

Per video the cache holds two files under ``<cache>/extract/<video key>/``:

- ``faces.npz``: the sampled crops (N x 160 x 160 x 3 uint8), their timestamps, track ids, boxes
  and landmarks (frame pixels), the frame size, and ``reason`` (why it is empty, if it is). It
  depends only on the video and the extraction settings, so fine-tuning reuses it.
- ``emb-<encoder key>.npy``: N x 512 embeddings of those crops by one encoder (base weights plus
  fine-tuned overrides), so trying another encoder re-encodes crops but never re-detects.

The cache lives outside the repository (the user cache dir, ``$DEEPWATCH_CACHE_DIR`` overrides),
files are written atomically, and finished videos are skipped: extraction is resumable.
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
import torch
from tqdm.auto import tqdm

from engine.checkpoint import CropSettings
from engine.scorer import SampleClock
from stream.training.datasets import MediaItem
from tracking.config import CropConfig, DetectorConfig, TrackerConfig
from tracking.face_step import FaceStep

logger = logging.getLogger(__name__)

CACHE_FORMAT = 1
CROP_SIZE_PX = 160


class Encoder(Protocol):
    """What extraction needs from ``engine.FaceEncoder``."""

    weights_id: str

    def encode(self, crops: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class ExtractConfig:
    """How faces are sampled from a video for training and evaluation.

    Attributes:
        sample_rate_hz: face samples per second per track (the scorer's rate).
        max_samples: stop reading a video after this many sampled frames.
        detect_every_n_samples: run the detector on every n-th sampled frame and let the tracker
            predict the boxes in between, as the live pipeline does (MTCNN dominates the cost).
        detector: detector settings (the live pipeline's defaults, so training finds the faces
            the live pipeline finds).
        crop: crop settings (must match the live pipeline's, so training sees live-like crops).
    """

    sample_rate_hz: float = 8.0
    max_samples: int = 32
    detect_every_n_samples: int = 3
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    crop: CropConfig = field(default_factory=CropConfig)

    def __post_init__(self) -> None:
        if not 0.1 <= self.sample_rate_hz <= 60:
            raise ValueError(f"sample_rate_hz must be in [0.1, 60], got {self.sample_rate_hz!r}")
        for name in ("max_samples", "detect_every_n_samples"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")

    def key(self) -> str:
        """Digest of everything that changes the crops."""
        text = json.dumps({"format": CACHE_FORMAT, **asdict(self)}, sort_keys=True, default=str)
        return hashlib.sha1(text.encode()).hexdigest()[:12]


@dataclass(frozen=True, eq=False)
class FaceCache:
    """The sampled faces of one video (all tracks), as stored in ``faces.npz``.

    Attributes:
        crops: N x 160 x 160 x 3 uint8 RGB.
        timestamps_s: (N,) seconds from the start of the video.
        track_ids: (N,) tracker ids.
        boxes_xyxy: N x 4 float32 frame pixels.
        landmarks_5x2: N x 5 x 2 float32 frame pixels (NaN where unknown).
        crop_landmarks_5x2: N x 5 x 2 float32 landmarks in crop pixels (NaN where unknown); the
            pseudo-fake masks are drawn from them.
        frame_size_wh: (width, height) of the video.
        reason: why the cache is empty ("" when it is not).
    """

    crops: np.ndarray
    timestamps_s: np.ndarray
    track_ids: np.ndarray
    boxes_xyxy: np.ndarray
    landmarks_5x2: np.ndarray
    crop_landmarks_5x2: np.ndarray
    frame_size_wh: tuple[int, int]
    reason: str = ""

    @property
    def empty(self) -> bool:
        return len(self.crops) == 0

    def primary_track(self) -> np.ndarray:
        """Indices (time order) of the track with the most samples; ties go to the larger face."""
        if self.empty:
            return np.zeros(0, dtype=np.int64)
        ids, counts = np.unique(self.track_ids, return_counts=True)
        areas = [
            float(
                np.mean(
                    np.prod(
                        self.boxes_xyxy[self.track_ids == i, 2:] - self.boxes_xyxy[self.track_ids == i, :2], 1
                    )
                )
            )
            for i in ids
        ]
        best = ids[np.lexsort((-np.asarray(areas), -counts))[0]]
        return np.nonzero(self.track_ids == best)[0]

    def save(self, path: Path) -> None:
        temporary = path.with_name(path.name + ".partial.npz")
        np.savez(
            temporary,
            crops=self.crops,
            timestamps_s=self.timestamps_s,
            track_ids=self.track_ids,
            boxes_xyxy=self.boxes_xyxy,
            landmarks_5x2=self.landmarks_5x2,
            crop_landmarks_5x2=self.crop_landmarks_5x2,
            frame_size_wh=np.asarray(self.frame_size_wh),
            reason=np.asarray(self.reason),
        )
        os.replace(temporary, path)

    @classmethod
    def load(cls, path: Path) -> FaceCache:
        with np.load(path) as data:
            return cls(
                crops=data["crops"],
                timestamps_s=data["timestamps_s"],
                track_ids=data["track_ids"],
                boxes_xyxy=data["boxes_xyxy"],
                landmarks_5x2=data["landmarks_5x2"],
                crop_landmarks_5x2=data["crop_landmarks_5x2"],
                frame_size_wh=(int(data["frame_size_wh"][0]), int(data["frame_size_wh"][1])),
                reason=str(data["reason"]),
            )

    @classmethod
    def empty_cache(cls, reason: str, frame_size_wh: tuple[int, int] = (0, 0)) -> FaceCache:
        return cls(
            crops=np.zeros((0, CROP_SIZE_PX, CROP_SIZE_PX, 3), np.uint8),
            timestamps_s=np.zeros(0),
            track_ids=np.zeros(0, np.int64),
            boxes_xyxy=np.zeros((0, 4), np.float32),
            landmarks_5x2=np.zeros((0, 5, 2), np.float32),
            crop_landmarks_5x2=np.zeros((0, 5, 2), np.float32),
            frame_size_wh=frame_size_wh,
            reason=reason,
        )


@dataclass(frozen=True, eq=False)
class ExtractedVideo:
    """A media item with its face cache and (when an encoder was given) embeddings.

    ``embeddings`` is None when the item was not encoded; it has one row per crop otherwise.
    ``unreadable`` items (the file could not be decoded) have an empty cache whose ``reason``
    says why; they are never cached, so a repaired file is read next time.
    """

    item: MediaItem
    faces: FaceCache
    embeddings: np.ndarray | None
    unreadable: bool = False


def crop_settings(crop: CropConfig) -> CropSettings:
    """The checkpoint's record of ``crop`` (``engine`` keeps plain values, never a tracking type)."""
    return CropSettings(mode=crop.mode, margin=crop.margin, size_px=crop.size_px)


def crop_config(settings: CropSettings) -> CropConfig:
    """The crop config that cuts crops as a checkpoint's training crops were cut."""
    return CropConfig(mode=settings.mode, margin=settings.margin, size_px=settings.size_px)  # type: ignore[arg-type]


def cache_root() -> Path:
    """``$DEEPWATCH_CACHE_DIR/extract`` or the user cache dir's ``extract`` folder."""
    override = os.environ.get("DEEPWATCH_CACHE_DIR")
    if override:
        return Path(override).expanduser() / "extract"
    import platformdirs

    return Path(platformdirs.user_cache_dir("deepwatch")) / "extract"


def video_key(path: Path, config: ExtractConfig) -> str:
    """Cache folder name: the file's name, size and mtime plus the extraction settings."""
    stat = path.stat()
    identity = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{config.key()}"
    return f"{path.stem[:40]}-{hashlib.sha1(identity.encode()).hexdigest()[:16]}"


def encoder_key(weights_id: str, overrides: dict[str, torch.Tensor] | None) -> str:
    """Digest naming one encoder: base weights plus fine-tuned overrides."""
    digest = hashlib.sha1(weights_id.encode())
    for name in sorted(overrides or {}):
        digest.update(name.encode())
        digest.update(overrides[name].detach().to(torch.float16).cpu().numpy().tobytes())  # type: ignore[index]
    return digest.hexdigest()[:16]


class FaceExtractor:
    """Turns one video into a ``FaceCache`` with the tracking stage (MTCNN, Kalman tracker, crops).

    Detection and tracking go through ``tracking.FaceStep``, the live pipeline's per-frame step,
    and the crops through ``tracking.crop_faces`` with the crop settings the checkpoint records.
    The tracker is updated on every sampled frame (``sample_rate_hz``), the detector runs on every
    ``detect_every_n_samples``-th of them, and a crop is kept for every track matched by the
    latest detection run.
    """

    def __init__(self, config: ExtractConfig | None = None) -> None:
        import tracking

        self.config = config or ExtractConfig()
        self._tracking = tracking
        self._detector = tracking.FaceDetector(self.config.detector)
        # The tracker sees only sampled frames; a track survives one second without a match.
        every = self.config.detect_every_n_samples
        max_age = max(every, round(self.config.sample_rate_hz))
        self._tracker_config = TrackerConfig(min_hits=2, max_age_frames=max_age, detect_every_n_frames=every)

    def extract(self, path: Path) -> FaceCache:
        """Sample, detect, track and crop; an unreadable video raises ``ValueError`` with the reason."""
        capture = cv2.VideoCapture(str(path))
        if not capture.isOpened():
            raise ValueError(f"cannot open video {path}")
        try:
            fps = capture.get(cv2.CAP_PROP_FPS)
            if not fps or not np.isfinite(fps) or fps <= 0 or fps > 1000:
                logger.warning("%s reports %r fps; assuming 25", path, fps)
                fps = 25.0
            step = FaceStep(
                self._detector,
                self._tracking.FaceTracker(self._tracker_config, source_id=str(path)),
                self.config.detect_every_n_samples,
            )
            clock = SampleClock(self.config.sample_rate_hz)
            crops, times, ids, boxes, landmarks, crop_landmarks = [], [], [], [], [], []
            frame_size = (0, 0)
            index = sampled = 0
            decoded_any = False
            # Decode from the start: seeking in some H.264 4:4:4 files returns corrupt frames.
            while sampled < self.config.max_samples:
                if not capture.grab():
                    break
                decoded_any = True
                timestamp_s = index / fps
                index += 1
                if not clock.is_due(timestamp_s):
                    continue
                ok, bgr = capture.retrieve()
                if not ok:
                    break
                clock.mark(timestamp_s)
                sampled += 1
                image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                frame_size = (image.shape[1], image.shape[0])
                # The live per-frame step, fed the sampled frames only (MTCNN dominates the cost).
                matched = [
                    track
                    for track in step.track(image, timestamp_s).tracks
                    if track.frames_since_update < self.config.detect_every_n_samples
                ]
                if not matched:
                    continue
                crops.append(self._tracking.crop_faces(image, matched, self.config.crop))
                for track in matched:
                    times.append(timestamp_s)
                    ids.append(track.track_id)
                    boxes.append(np.asarray(track.box_xyxy, np.float32))
                    marks = (
                        np.full((5, 2), np.nan, np.float32)
                        if track.landmarks_5x2 is None
                        else np.asarray(track.landmarks_5x2, np.float32)
                    )
                    landmarks.append(marks)
                    crop_landmarks.append(self._to_crop(marks, track.box_xyxy))
        finally:
            capture.release()
        if not decoded_any:
            raise ValueError(f"no frame could be decoded from {path}")
        if not crops:
            return FaceCache.empty_cache(f"no face found in {sampled} sampled frames", frame_size)
        return FaceCache(
            crops=np.concatenate(crops),
            timestamps_s=np.asarray(times, np.float64),
            track_ids=np.asarray(ids, np.int64),
            boxes_xyxy=np.stack(boxes),
            landmarks_5x2=np.stack(landmarks),
            crop_landmarks_5x2=np.stack(crop_landmarks),
            frame_size_wh=frame_size,
        )

    def extract_image(self, path: Path) -> FaceCache:
        """Detect and crop the faces of one still image (one sample per face, timestamp 0).

        The same step as a video's first frame: an unreadable image raises ``ValueError``.
        """
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"cannot read image {path}")
        image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        frame_size = (image.shape[1], image.shape[0])
        step = FaceStep(self._detector, self._tracking.FaceTracker(self._tracker_config, source_id=str(path)))
        tracks = step.track(image, 0.0).tracks
        if not tracks:
            return FaceCache.empty_cache("no face found in the image", frame_size)
        landmarks = [
            np.full((5, 2), np.nan, np.float32)
            if track.landmarks_5x2 is None
            else np.asarray(track.landmarks_5x2, np.float32)
            for track in tracks
        ]
        return FaceCache(
            crops=self._tracking.crop_faces(image, tracks, self.config.crop),
            timestamps_s=np.zeros(len(tracks)),
            track_ids=np.asarray([track.track_id for track in tracks], np.int64),
            boxes_xyxy=np.stack([np.asarray(track.box_xyxy, np.float32) for track in tracks]),
            landmarks_5x2=np.stack(landmarks),
            crop_landmarks_5x2=np.stack(
                [self._to_crop(marks, track.box_xyxy) for marks, track in zip(landmarks, tracks, strict=True)]
            ),
            frame_size_wh=frame_size,
        )

    def _to_crop(self, landmarks_5x2: np.ndarray, box_xyxy: np.ndarray) -> np.ndarray:
        """The landmarks in crop pixels, through the same transform ``crop_faces`` used."""
        from tracking.crops import aligned_transform, box_transform

        crop = self.config.crop
        matrix = None
        if crop.mode == "aligned" and np.isfinite(landmarks_5x2).all():
            matrix = aligned_transform(landmarks_5x2, crop.size_px, crop.margin)
        if matrix is None:
            matrix = box_transform(box_xyxy, crop.size_px, crop.margin)
        return (landmarks_5x2.astype(np.float64) @ matrix[:, :2].T + matrix[:, 2]).astype(np.float32)


def extract_media(
    items: Sequence[MediaItem],
    config: ExtractConfig | None = None,
    encoder: Encoder | None = None,
    encoder_overrides: dict[str, torch.Tensor] | None = None,
    progress: bool = True,
    cache_dir: Path | None = None,
    extractor_factory: Callable[[ExtractConfig], FaceExtractor] = FaceExtractor,
    include_images: bool = False,
) -> list[ExtractedVideo]:
    """Extract (or load from the cache) every video item; encode the crops when ``encoder`` is given.

    Image items are skipped (logged) unless ``include_images``; an image then gives one sample
    per face. A file that cannot be read is logged, kept in the result with ``unreadable`` set
    and an empty cache saying why (``describe`` counts them); an item without faces gives an
    empty cache with its reason. ``encoder_overrides`` only names the encoder in the cache key
    (the encoder must already carry them).
    """
    config = config or ExtractConfig()
    root = cache_dir or cache_root()
    images = [item for item in items if item.kind != "video"]
    if images and not include_images:
        logger.info("skipping %d image rows (video-level evaluation only)", len(images))
    videos = [item for item in items if item.kind == "video" or include_images]
    embedding_name = None
    if encoder is not None:
        embedding_name = f"emb-{encoder_key(encoder.weights_id, encoder_overrides)}.npy"
    extractor: FaceExtractor | None = None
    results = []
    bar = tqdm(videos, desc="extract", unit="video", disable=not progress)
    for item in bar:
        bar.set_postfix_str(item.path.name[:30])
        folder = root / video_key(item.path, config)
        faces_path = folder / "faces.npz"
        if faces_path.is_file():
            faces = FaceCache.load(faces_path)
        else:
            if extractor is None:
                extractor = extractor_factory(config)
            try:
                faces = (extractor.extract if item.kind == "video" else extractor.extract_image)(item.path)
            except (ValueError, cv2.error) as error:
                logger.warning("skipping %s: %s", item.name, error)
                unreadable = FaceCache.empty_cache(f"unreadable: {error}")
                results.append(ExtractedVideo(item=item, faces=unreadable, embeddings=None, unreadable=True))
                continue
            if faces.empty:
                logger.warning("%s: empty cache: %s", item.name, faces.reason)
            folder.mkdir(parents=True, exist_ok=True)
            faces.save(faces_path)
            (folder / "meta.json").write_text(
                json.dumps({"path": str(item.path), "name": item.name, "config": config.key()}, indent=1)
            )
        embeddings = None
        if encoder is not None and embedding_name is not None:
            embeddings = _embeddings(folder / embedding_name, faces, encoder)
        results.append(ExtractedVideo(item=item, faces=faces, embeddings=embeddings))
    return results


def _embeddings(path: Path, faces: FaceCache, encoder: Encoder) -> np.ndarray:
    if path.is_file():
        embeddings = np.load(path)
        if len(embeddings) == len(faces.crops):
            return embeddings
        logger.warning("%s has %d rows for %d crops; re-encoding", path, len(embeddings), len(faces.crops))
    embeddings = np.zeros((0, 512), np.float32)
    if not faces.empty:
        embeddings = np.concatenate(
            [encoder.encode(faces.crops[start : start + 64]) for start in range(0, len(faces.crops), 64)]
        ).astype(np.float32)
    temporary = path.with_name(path.name + ".partial.npy")
    np.save(temporary, embeddings)
    os.replace(temporary, path)
    return embeddings


def describe(results: Sequence[ExtractedVideo]) -> dict[str, Any]:
    """Counts for logs and reports: videos, images, unreadable files, empty caches (readable, no
    face), crops, per label and method."""
    summary: dict[str, Any] = {
        "videos": sum(result.item.kind == "video" for result in results),
        "images": sum(result.item.kind == "image" for result in results),
        "unreadable": sum(result.unreadable for result in results),
        "empty": sum(result.faces.empty and not result.unreadable for result in results),
        "crops": int(sum(len(result.faces.crops) for result in results)),
        "real": sum(result.item.label == 0 for result in results),
        "fake": sum(result.item.label == 1 for result in results),
    }
    methods: dict[str, int] = {}
    for result in results:
        methods[result.item.method] = methods.get(result.item.method, 0) + 1
    summary["methods"] = methods
    return summary
