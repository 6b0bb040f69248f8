"""Typed, validated settings of the tracking stage: detector, tracker and crops.

Each is a frozen dataclass that checks its values in ``__post_init__`` and raises a ``ValueError``
naming the field, the expected range and the value it got. ``stream`` combines them into the app
config; the constructors here take only their own section.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

CropMode = Literal["box", "aligned"]
CROP_MODES: tuple[CropMode, ...] = ("box", "aligned")


def _check_number(owner: str, name: str, value: object, low: float, high: float, *, integer: bool) -> None:
    kind = "an int" if integer else "a number"
    ok_type = isinstance(value, int) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not ok_type:
        raise ValueError(f"{owner}.{name} must be {kind} in [{low}, {high}], got {value!r}")
    number = float(value)  # type: ignore[arg-type]
    if not (math.isfinite(number) and low <= number <= high):
        raise ValueError(f"{owner}.{name} must be in [{low}, {high}], got {value!r}")


@dataclass(frozen=True)
class DetectorConfig:
    """MTCNN settings.

    Attributes:
        min_face_size_px: smallest face to look for, in pixels of the frame given to the detector.
            P-Net's window is 12 px, so after downscaling (``max_side_px``) the smallest findable
            face is 12 px at detection scale; raise ``max_side_px`` to find smaller faces.
        thresholds: P-Net, R-Net and O-Net probability thresholds, each in (0, 1); the last one is
            the minimum confidence of a returned detection.
        pyramid_factor: ratio between successive image-pyramid scales; smaller means fewer P-Net
            passes (faster) and coarser size steps. 0.6 (MTCNN's paper uses 0.709) costs about 30%
            less CPU with the same box jitter on the talking-head clips (benchmarks/face_tracking.py).
        max_side_px: frames whose longer side exceeds this are downscaled to it before detection
            and the boxes and landmarks mapped back; None detects at full resolution. P-Net's
            first (costliest) pyramid level is the frame scaled by 12 / min_face_size_px, so this
            saves time once it is below that, and it bounds the cost of large frames.
        photo_max_side_px: ``max_side_px`` for still photos (``deepwatch run PHOTO``), which have no
            frame budget: at the live 320 a face had to be 500 px wide in a 4000 px photo to be
            found, at 2048 about 80 px. None detects photos at full resolution.
        num_threads: torch intra-op threads while MTCNN runs (the previous setting is restored
            after each call). MTCNN's many small convolutions gain little from more threads, and
            on a busy CPU extra threads spin-waiting for each other make it many times slower.
            None leaves torch's setting alone.
    """

    min_face_size_px: float = 40.0
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)
    pyramid_factor: float = 0.6
    max_side_px: int | None = 320
    photo_max_side_px: int | None = 2048
    num_threads: int | None = 1

    def __post_init__(self) -> None:
        _check_number("DetectorConfig", "min_face_size_px", self.min_face_size_px, 1.0, 1e5, integer=False)
        thresholds = self.thresholds
        if not isinstance(thresholds, tuple | list) or len(thresholds) != 3:
            raise ValueError(f"DetectorConfig.thresholds must be 3 numbers in (0, 1), got {thresholds!r}")
        for stage, value in enumerate(thresholds):
            _check_number("DetectorConfig", f"thresholds[{stage}]", value, 1e-6, 1 - 1e-6, integer=False)
        # A list from YAML is accepted but stored as a tuple so the config stays hashable.
        object.__setattr__(self, "thresholds", tuple(float(v) for v in thresholds))
        _check_number("DetectorConfig", "pyramid_factor", self.pyramid_factor, 0.1, 0.95, integer=False)
        for name in ("max_side_px", "photo_max_side_px"):
            value = getattr(self, name)
            if value is not None:
                _check_number("DetectorConfig", name, value, 24, 100_000, integer=True)
        if self.num_threads is not None:
            _check_number("DetectorConfig", "num_threads", self.num_threads, 1, 1024, integer=True)


@dataclass(frozen=True)
class TrackerConfig:
    """Kalman tracker and track-lifecycle settings.

    Attributes:
        min_hits: matched detections (on consecutive detection runs) before a TENTATIVE track is
            CONFIRMED; 1 confirms at birth.
        max_age_frames: frames a track may go without a matched detection before it ENDS. Must be
            at least ``detect_every_n_frames``, or every track would end between two detections.
        detect_every_n_frames: how often the pipeline runs the detector; the tracker predicts on
            the frames in between (the tracker itself is told by ``detections=None``).
        iou_threshold: minimum IoU of a predicted track box and a detection for an IoU match.
        max_centre_distance: fallback for small fast faces whose boxes no longer overlap: a pair
            below ``iou_threshold`` still matches if the centre distance is at most this many box
            sizes (box size = sqrt(w * h), averaged over the pair). 0 disables the fallback.
        measurement_noise: standard deviation of a detection's box coordinates, as a fraction of
            the box size. Larger means smoother, slower-reacting boxes.
        process_noise: standard deviation of the box's acceleration, in box sizes per second
            squared. Larger means boxes follow sudden motion faster but jitter more.
        landmark_smoothing: weight of the previous landmark layout (relative to the box) when a
            new detection arrives, in [0, 1); 0 takes each detection's layout as it is (with
            ``blend_corrections`` the change still shows gradually). 0.5 and 0.8 measured no
            steadier aligned crops than 0 on the talking-head clips.
        blend_corrections: when detection runs every few frames, the box a detection corrects
            would jump on that frame after drifting on prediction in between. With this on, the
            reported box closes the jump evenly over the frames until the next detection (the
            Kalman state itself, used for matching, is corrected at once). No effect at N = 1.

    The noise defaults were tuned on the talking-head clips (benchmarks/face_tracking.py): at N = 1
    they make the tracked box at least 2x steadier than MTCNN's on every clip while the box
    stays within a few percent of the face's size of the raw detections.
    """

    min_hits: int = 3
    max_age_frames: int = 30
    detect_every_n_frames: int = 3
    iou_threshold: float = 0.3
    max_centre_distance: float = 1.0
    measurement_noise: float = 0.05
    process_noise: float = 1.0
    landmark_smoothing: float = 0.0
    blend_corrections: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.blend_corrections, bool):
            raise ValueError(
                f"TrackerConfig.blend_corrections must be true or false, got {self.blend_corrections!r}"
            )
        _check_number("TrackerConfig", "min_hits", self.min_hits, 1, 1000, integer=True)
        _check_number("TrackerConfig", "max_age_frames", self.max_age_frames, 1, 100_000, integer=True)
        _check_number(
            "TrackerConfig", "detect_every_n_frames", self.detect_every_n_frames, 1, 1000, integer=True
        )
        if self.max_age_frames < self.detect_every_n_frames:
            raise ValueError(
                "TrackerConfig.max_age_frames must be >= detect_every_n_frames "
                f"({self.detect_every_n_frames}), got {self.max_age_frames}"
            )
        _check_number("TrackerConfig", "iou_threshold", self.iou_threshold, 0.01, 0.99, integer=False)
        _check_number(
            "TrackerConfig", "max_centre_distance", self.max_centre_distance, 0.0, 10.0, integer=False
        )
        _check_number("TrackerConfig", "measurement_noise", self.measurement_noise, 1e-4, 10.0, integer=False)
        _check_number("TrackerConfig", "process_noise", self.process_noise, 1e-4, 1000.0, integer=False)
        _check_number(
            "TrackerConfig", "landmark_smoothing", self.landmark_smoothing, 0.0, 0.99, integer=False
        )


@dataclass(frozen=True)
class CropConfig:
    """How face crops for the encoder are cut.

    Attributes:
        mode: "aligned" maps the track's 5 landmarks onto a fixed template with a similarity
            transform (rotation, scale, shift); "box" cuts a square around the box centre.
            Tracks without landmarks fall back to "box". "aligned" is the default because it
            gives the steadier encoder input: on the 23 talking-head clips (benchmarks/face_tracking.py,
            casia-webface encoder) the mean cosine distance between consecutive frames'
            embeddings is 0.0173 aligned versus 0.0182 box (lower on 16 of 23 clips), and the
            spread around each clip's mean embedding 0.0414 versus 0.0428.
        size_px: side of the square output crop, pixels (the encoder expects 160).
        margin: context around the face: the crop side is (1 + margin) times the box's longer
            side. 0.25 is the framing facenet (whose casia-webface weights the encoder uses)
            evaluates on LFW with: a 32 px margin around the MTCNN box in a 160 px crop.
    """

    mode: CropMode = "aligned"
    size_px: int = 160
    margin: float = 0.25

    def __post_init__(self) -> None:
        if self.mode not in CROP_MODES:
            raise ValueError(f"CropConfig.mode must be one of {CROP_MODES}, got {self.mode!r}")
        _check_number("CropConfig", "size_px", self.size_px, 16, 1024, integer=True)
        _check_number("CropConfig", "margin", self.margin, 0.0, 3.0, integer=False)
