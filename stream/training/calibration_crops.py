"""Real face crops to calibrate the int8 encoder on, made from real face videos.

The crops are the live pipeline's: MTCNN detections, the Kalman tracker and the 5-landmark
alignment, through the training extraction (``stream.training.extract``, whose cache they reuse).
They are saved once in deepwatch's cache (``engine.backends.int8.default_calibration_path``),
where the live app (``stream.calibration.with_calibration``) and the encoder find them; an int8
model is then built once per weights from them.

Made by ``deepwatch weights calibrate`` and the encoder benchmark, from the real videos of the
data folder (``$DEEPWATCH_DATA``, else ``../shared/data`` beside the repository: its
``manifest.csv`` rows of set ``real``). Without them an int8 build is refused with a
``CalibrationError`` saying what is needed: calibration ranges from random input fit noise, not
faces.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from engine.backends.int8 import (
    CalibrationError,
    CalibrationSet,
    default_calibration_path,
    load_calibration_file,
    save_calibration_file,
)
from engine.weights import cache_dir

logger = logging.getLogger(__name__)

DATA_ENV = "DEEPWATCH_DATA"
# Crops kept per video, spread over its main face track: enough distinct poses per person while
# no single clip dominates the activation ranges.
CROPS_PER_VIDEO = 16


def default_data_dir() -> Path | None:
    """``$DEEPWATCH_DATA``, else ``../shared/data`` beside a source checkout; None when absent."""
    override = os.environ.get(DATA_ENV)
    candidate = (
        Path(override).expanduser() if override else Path(__file__).resolve().parents[3] / "shared" / "data"
    )
    return candidate if (candidate / "manifest.csv").is_file() else None


def make_calibration_set(data_dir: Path, crops_per_video: int = CROPS_PER_VIDEO) -> CalibrationSet:
    """Aligned face crops of the real videos listed in ``data_dir/manifest.csv`` (set ``real``,
    or every real video when no row has that set), one identity group per crop.

    Raises:
        CalibrationError: no manifest, no real video, or no face found in them.
    """
    from stream.training.datasets import load_manifest
    from stream.training.extract import extract_media

    manifest = data_dir / "manifest.csv"
    if not manifest.is_file():
        raise CalibrationError(f"expected a manifest.csv of face videos in {data_dir}, found none")
    try:
        items = load_manifest(manifest)
    except ValueError as error:
        raise CalibrationError(f"cannot read {manifest}: {error}") from error
    real = [item for item in items if item.label == 0 and item.kind == "video"]
    talking_heads = [item for item in real if item.split == "real"]
    chosen = talking_heads or real
    if not chosen:
        raise CalibrationError(f"{manifest} lists no real face video to calibrate on")
    logger.info("making int8 calibration crops from %d real videos in %s", len(chosen), data_dir)
    crops: list[np.ndarray] = []
    groups: list[str] = []
    for extracted in extract_media(chosen, progress=False):
        track = extracted.faces.primary_track()
        if len(track) == 0:
            continue
        keep = track[np.linspace(0, len(track) - 1, min(crops_per_video, len(track))).round().astype(int)]
        crops.append(extracted.faces.crops[np.unique(keep)])
        groups.extend([extracted.item.group] * len(np.unique(keep)))
    if not crops:
        raise CalibrationError(f"no face was found in the {len(chosen)} real videos of {manifest}")
    return CalibrationSet(
        np.concatenate(crops),
        tuple(groups),
        f"{len(groups)} aligned crops of {len(set(groups))} people from {len(crops)} real videos "
        f"in {data_dir}",
    )


def calibration_source(data_dir: Path | None = None) -> Callable[[], CalibrationSet]:
    """The calibration provider ``stream`` gives the encoder (called only when int8 is built).

    It reads the cached crops, else makes them from ``data_dir`` (default ``default_data_dir()``)
    and caches them, else raises ``CalibrationError`` naming what is needed.
    """

    def provide() -> CalibrationSet:
        cached = default_calibration_path(cache_dir())
        if cached.is_file():
            return load_calibration_file(cached)
        folder = data_dir or default_data_dir()
        if folder is None:
            raise CalibrationError(
                "an int8 encoder is calibrated on real face crops and none are available: point "
                f"${DATA_ENV} at a folder with a manifest.csv of real face videos (as ../shared/data), "
                "run `deepwatch weights calibrate --data DIR`, or set encoder.calibration to a .npz of "
                "N x 160 x 160 x 3 uint8 aligned face crops"
            )
        made = make_calibration_set(folder)
        save_calibration_file(cached, made)
        logger.info("int8 calibration crops saved at %s (%s)", cached, made.description)
        return made

    return provide
