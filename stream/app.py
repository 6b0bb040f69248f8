"""Building the real pipeline (MTCNN, Kalman tracker, encoder, trained scorer) from an AppConfig.

The heavy parts (detector, encoder, checkpoint) load once into ``PipelineComponents``; each
``new_pipeline()`` is then cheap, so a server can give every session its own pipeline (its own
trackers and scorer state) while sharing the models. Nothing loads at import time.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

import engine
from engine.checkpoint import CheckpointError, CropSettings, ScorerCheckpoint, load_checkpoint, open_encoder
from stream.alerts import AlertMonitor
from stream.config import AppConfig
from stream.pipeline import Pipeline
from tracking import FaceDetector, FaceTracker, Track, crop_faces

logger = logging.getLogger(__name__)


class SetupError(RuntimeError):
    """The models could not be loaded (missing or mismatched checkpoint, unavailable backend)."""


@dataclass
class PipelineComponents:
    """The loaded models and config shared by every pipeline built from them.

    Call ``close()`` at the end (it releases the encoder backend).
    """

    config: AppConfig
    detector: FaceDetector
    encoder: engine.FaceEncoder
    checkpoint: ScorerCheckpoint

    @property
    def threshold(self) -> float:
        """The FAKE threshold in use: the config's, else the checkpoint's (calibrated: 5 % per track)."""
        configured = self.config.pipeline.threshold
        return configured if configured is not None else self.checkpoint.threshold

    @property
    def real_threshold(self) -> float | None:
        """The calibrated REAL bound (5 % per window); None with a configured threshold or none."""
        calibration = self.checkpoint.calibration
        if self.config.pipeline.threshold is not None or calibration is None:
            return None
        return calibration.verdict_thresholds()[0]

    @property
    def alert_threshold(self) -> float:
        """The config's, else the calibrated 1 % per-track threshold, else the FAKE threshold."""
        calibration = self.checkpoint.calibration
        if self.config.alerts.threshold is not None:
            return self.config.alerts.threshold
        if self.config.pipeline.threshold is None and calibration is not None:
            # AlertMonitor needs a threshold strictly inside (0, 1).
            return min(max(calibration.alert_threshold, 1e-6), 1.0 - 1e-6)
        return self.threshold

    def new_pipeline(self) -> Pipeline:
        """A fresh pipeline (no tracks, no scorer state) over the shared models."""
        config = self.config
        scorer_config = self.checkpoint.scorer_config(**config.scorer_overrides)
        alerts = (
            AlertMonitor(self.alert_threshold, config.alerts.hysteresis, config.alerts.sustain_s)
            if config.alerts.enabled
            else None
        )
        return Pipeline(
            detector=self.detector,
            tracker_factory=lambda source_id: FaceTracker(config.tracker, source_id=source_id),
            crop=functools.partial(_crop, config=config),
            encoder=self.encoder,
            scorer_factory=lambda: self.checkpoint.build_scorer(scorer_config),
            detect_every_n_frames=config.tracker.detect_every_n_frames,
            config=config.pipeline,
            threshold=self.threshold,
            alerts=alerts,
            real_threshold=self.real_threshold,
        )

    def describe(self) -> dict[str, Any]:
        """What ran, for the run summary."""
        return {
            "checkpoint": str(self.checkpoint.path) if self.checkpoint.path else None,
            "encoder_weights": self.encoder.weights_id,
            "encoder_backend": self.encoder.backend_name,
            "window_size": self.checkpoint.window_size,
            "sample_rate_hz": self.checkpoint.sample_rate_hz,
            "threshold": self.threshold,
            "real_threshold": self.real_threshold,
            "calibrated": self.checkpoint.calibration is not None,
        }

    def close(self) -> None:
        self.encoder.close()


def _crop(image: np.ndarray, tracks: Sequence[Track], *, config: AppConfig) -> np.ndarray:
    return crop_faces(image, list(tracks), config.crop)


def load_components(config: AppConfig) -> PipelineComponents:
    """Load the scorer checkpoint, the encoder it was trained with, and the detector.

    Raises:
        SetupError: the checkpoint is missing, unreadable, trained on other encoder weights or on
            crops cut otherwise than ``config.crop`` (the message names both settings), or the
            encoder cannot be built; the message is one line for the user.
    """
    if config.pipeline.torch_threads is not None:
        import torch

        torch.set_num_threads(config.pipeline.torch_threads)
    try:
        checkpoint = load_checkpoint(config.model.checkpoint)
        checkpoint.check_crop(CropSettings(config.crop.mode, config.crop.margin, config.crop.size_px))
        encoder = open_encoder(checkpoint, config.encoder)
    except CheckpointError as error:
        raise SetupError(str(error)) from error
    except (engine.BackendUnavailableError, engine.WeightsError, ValueError) as error:
        raise SetupError(f"cannot build the face encoder: {error}") from error
    detector = FaceDetector(config.detector)
    logger.info(
        "model: %s (window %d at %.1f Hz, threshold %.3f), encoder %s on %s",
        checkpoint.path,
        checkpoint.window_size,
        checkpoint.sample_rate_hz,
        config.pipeline.threshold if config.pipeline.threshold is not None else checkpoint.threshold,
        encoder.weights_id,
        encoder.backend_name,
    )
    return PipelineComponents(config=config, detector=detector, encoder=encoder, checkpoint=checkpoint)
