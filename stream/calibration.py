"""Real face crops to calibrate the int8 encoder on, made from real face videos.

The crops are the live pipeline's: MTCNN detections, the Kalman tracker and the 5-landmark
alignment, through the training extraction (``stream.extract``, whose cache they reuse). They are
saved once in deepwatch's cache (``engine.backends.int8.default_calibration_path``), where the
encoder looks for them; an int8 model is then built once per weights from them.

Where they come from, in order: the file ``encoder.calibration`` names; the cached crops; the
real videos of the data folder (``$DEEPWATCH_DATA``, else ``../shared/data`` beside the
repository: its ``manifest.csv`` rows of set ``real``), made on first need. With none of these the
int8 build is refused with a ``CalibrationError`` saying what is needed: calibration ranges from
random input fit noise, not faces.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from engine.backends.int8 import (
    CalibrationError,
    CalibrationSet,
    cpu_flags,
    default_calibration_path,
    has_fast_int8,
    load_calibration_file,
    save_calibration_file,
)
from engine.config import EncoderConfig
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
        Path(override).expanduser() if override else Path(__file__).resolve().parents[2] / "shared" / "data"
    )
    return candidate if (candidate / "manifest.csv").is_file() else None


def make_calibration_set(data_dir: Path, crops_per_video: int = CROPS_PER_VIDEO) -> CalibrationSet:
    """Aligned face crops of the real videos listed in ``data_dir/manifest.csv`` (set ``real``,
    or every real video when no row has that set), one identity group per crop.

    Raises:
        CalibrationError: no manifest, no real video, or no face found in them.
    """
    from stream.datasets import load_manifest
    from stream.extract import extract_media

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


def with_calibration(config: EncoderConfig) -> EncoderConfig:
    """``config`` with ``calibration`` set to the cached real face crops when int8 may be built.

    Only for ``precision: int8``, or ``auto`` on a CPU with VNNI or AMX, and only when no file is
    configured: the crops are made first (once) from the data folder when it is there. Otherwise
    ``config`` is returned unchanged, and an int8 build says what is missing.

    Raises:
        CalibrationError: the data folder holds no usable real face video.
    """
    if config.calibration is not None or config.precision == "fp32":
        return config
    if config.precision == "auto" and not has_fast_int8(cpu_flags()):
        return config
    cached = default_calibration_path(cache_dir())
    if not cached.is_file():
        folder = default_data_dir()
        if folder is None:
            return config
        made = make_calibration_set(folder)
        save_calibration_file(cached, made)
        logger.info("int8 calibration crops saved at %s (%s)", cached, made.description)
    return dataclasses.replace(config, calibration=str(cached))
