"""Building the real pipeline (MTCNN, Kalman tracker, encoder, trained scorer) from the app config.

The heavy parts (detector, encoder, checkpoint) load once into ``PipelineComponents``; each
``new_pipeline()`` is then cheap, so a server can give every session its own pipeline (its own
trackers and scorer state) while sharing the models. Nothing loads at import time.

The app config (``stream.config.AppConfig``) sits above the live chain, so this module reads it
through ``LiveSettings``, the sections it needs, declared as a Protocol.
"""

from __future__ import annotations

import functools
import logging
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

import engine
from engine.calibration import Calibration, precision_mismatch
from engine.checkpoint import CheckpointError, CropSettings, ScorerCheckpoint, load_checkpoint, open_encoder
from engine.config import EncoderConfig
from engine.evidence import FEATURES
from engine.heads import head_features
from engine.reference import VERDICT_RATE, Reference, ReferenceError, ReferenceScorer
from engine.scorer import SequenceScorer
from engine.scorer_config import ScorerConfig
from stream.calibration import with_calibration
from stream.live.alerts import AlertConfig, AlertMonitor, ReferenceAlertMonitor
from stream.live.batching import SharedStages
from stream.live.pipeline import Pipeline, PipelineConfig
from stream.live.reference import ReferenceMedia, enrol, read_reference_photos
from stream.live.shedding import shed_levels
from stream.live.verdict import resolve_threshold
from tracking import FaceDetector, FaceTracker, Track, crop_faces
from tracking.config import CropConfig, DetectorConfig, TrackerConfig

logger = logging.getLogger(__name__)


class ModelSettings(Protocol):
    @property
    def checkpoint(self) -> str | None: ...
    @property
    def reference(self) -> tuple[str, ...]: ...


class LiveSettings(Protocol):
    """The sections of the app config the live chain is built from (``AppConfig`` has them)."""

    @property
    def detector(self) -> DetectorConfig: ...
    @property
    def tracker(self) -> TrackerConfig: ...
    @property
    def crop(self) -> CropConfig: ...
    @property
    def encoder(self) -> EncoderConfig: ...
    @property
    def model(self) -> ModelSettings: ...
    @property
    def scorer_overrides(self) -> dict[str, Any]: ...
    @property
    def pipeline(self) -> PipelineConfig: ...
    @property
    def alerts(self) -> AlertConfig: ...


class SetupError(RuntimeError):
    """The models could not be loaded (missing or mismatched checkpoint, unavailable backend)."""


@dataclass
class PipelineComponents:
    """The loaded models and config shared by every pipeline built from them.

    Call ``close()`` at the end (it stops the shared workers and releases the encoder backend).
    """

    config: LiveSettings
    detector: FaceDetector
    encoder: engine.FaceEncoder
    checkpoint: ScorerCheckpoint
    reference: Reference | None = None
    _shared: SharedStages | None = field(default=None, init=False, repr=False)
    # Every scorer that compares with the enrolled person, so a new enrolment reaches them all.
    _reference_scorers: weakref.WeakSet[ReferenceScorer] = field(
        default_factory=weakref.WeakSet, init=False, repr=False
    )
    # The enrolment alert rule of every pipeline made, re-armed when someone else is enrolled.
    _reference_alerts: weakref.WeakSet[ReferenceAlertMonitor] = field(
        default_factory=weakref.WeakSet, init=False, repr=False
    )
    # Held while a scorer is made or a person enrolled: a scorer made during an enrolment (a page
    # session starting) gets the new person, never the old one.
    _reference_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @property
    def precision(self) -> str:
        """The precision the encoder runs at (fp32 when it does not say)."""
        return str(getattr(self.encoder, "precision", "fp32"))

    @property
    def calibration(self) -> Calibration | None:
        """The checkpoint's calibration for the encoder's precision (its int8 one when it has it)."""
        return self.checkpoint.calibration_for(self.precision)

    @property
    def threshold(self) -> float:
        """The FAKE threshold in use: the config's, else the checkpoint's (calibrated: 5 % per track,
        at the encoder's precision when the checkpoint was calibrated at it)."""
        return resolve_threshold(
            self.config.pipeline.threshold, self.checkpoint.threshold_for(self.precision)
        )

    @property
    def real_threshold(self) -> float | None:
        """The calibrated REAL bound (5 % per window); None with a configured threshold or none."""
        calibration = self.calibration
        if self.config.pipeline.threshold is not None or calibration is None:
            return None
        return calibration.verdict_thresholds()[0]

    @property
    def alert_threshold(self) -> float:
        """The config's, else the calibrated 1 % per-track threshold, else the FAKE threshold."""
        calibration = self.calibration
        if self.config.alerts.threshold is not None:
            return self.config.alerts.threshold
        if self.config.pipeline.threshold is None and calibration is not None:
            # AlertMonitor needs a threshold strictly inside (0, 1).
            return min(max(calibration.alert_threshold, 1e-6), 1.0 - 1e-6)
        return self.threshold

    def new_pipeline(self) -> Pipeline:
        """A fresh pipeline (no tracks, no scorer state) over the shared models, running its
        detection and scoring batches inline: every frame's results are complete (files read
        as fast as possible, where no frame may be lost and the run should be repeatable)."""
        return self._pipeline(
            SharedStages(
                detector=self.detector,
                encoder=self.encoder,
                scorer=self._scorer(self._scorer_config()),
                detect_every_n_frames=self.config.tracker.detect_every_n_frames,
            )
        )

    def live_pipeline(self) -> Pipeline:
        """A fresh pipeline attached to the one set of threaded shared stages (started on first
        use): live streams and browser sessions, however many, share one detection batch and one
        encode + score batch, under the load-shedding rule (``stream.live.shedding``)."""
        if self._shared is None:
            config = self.config
            scorer_config = self._scorer_config()
            levels = shed_levels(
                config.tracker.detect_every_n_frames,
                config.pipeline.max_detect_factor,
                scorer_config.sample_rate_hz,
                min(config.pipeline.min_sample_rate_hz, scorer_config.sample_rate_hz),
            )
            shared = SharedStages(
                detector=self.detector,
                encoder=self.encoder,
                scorer=self._scorer(scorer_config),
                levels=levels,
                detect_every_n_frames=config.tracker.detect_every_n_frames,
            )
            shared.start()
            self._shared = shared
        return self._pipeline(self._shared)

    def session_pipeline(self, source_id: str) -> Pipeline:
        """The pipeline of one server session (a ``stream.server`` pipeline factory): a live
        pipeline, so every session's faces go through the same batches."""
        return self.live_pipeline()

    def still_scorer(self) -> SequenceScorer | ReferenceScorer:
        """A fresh scorer of the checkpoint (comparing with the enrolled person, if any), for
        scoring photos one window at a time (``stream.live.stills``)."""
        return self._scorer(self._scorer_config())

    def _scorer_config(self) -> ScorerConfig:
        return self.checkpoint.scorer_config(**self.config.scorer_overrides)

    def _scorer(self, scorer_config: ScorerConfig) -> SequenceScorer | ReferenceScorer:
        scorer = self.checkpoint.build_scorer(scorer_config)
        thresholds = self.checkpoint.reference
        if thresholds is None or not self.can_enrol:
            return scorer
        with self._reference_lock:
            wrapped = ReferenceScorer(scorer, thresholds, self.reference)
            self._reference_scorers.add(wrapped)
        return wrapped

    @property
    def can_enrol(self) -> bool:
        """Whether faces can be compared with an enrolled person: the model embeds inner and
        outer face and carries reference thresholds."""
        return self.checkpoint.reference is not None and head_features(self.checkpoint.head_type) == FEATURES

    def enrol(self, photos: Sequence[ReferenceMedia]) -> Reference:
        """Enrol the person in ``(name, RGB image)`` photos and reference clips
        (``stream.live.reference``) for every pipeline of these components, from the next sample
        on (``deepwatch serve``'s page calls this). Thread-safe.

        Raises:
            ReferenceError: the model cannot compare, or a photo shows no face.
        """
        if not self.can_enrol:
            raise ReferenceError(_cannot_enrol(self.checkpoint))
        _warn_on_reference_precision(self.checkpoint, self.precision)
        reference = enrol(photos, self.detector, self.encoder, self.config.crop)
        self.set_reference(reference)
        return reference

    def set_reference(self, reference: Reference | None) -> None:
        """Enrol ``reference`` (None: nobody) in every scorer made from these components."""
        with self._reference_lock:
            self.reference = reference
            for scorer in list(self._reference_scorers):
                scorer.set_reference(reference)
            for monitor in list(self._reference_alerts):
                monitor.rearm()

    def _pipeline(self, stages: SharedStages) -> Pipeline:
        config = self.config
        alerts = (
            AlertMonitor(self.alert_threshold, config.alerts.hysteresis, config.alerts.sustain_s)
            if config.alerts.enabled
            else None
        )
        # Every pipeline gets the enrolment rule: the page may enrol someone at any time.
        reference_alerts = None
        if config.alerts.enabled and config.alerts.on_reference and self.can_enrol:
            reference_alerts = ReferenceAlertMonitor(config.alerts.sustain_s)
            with self._reference_lock:
                self._reference_alerts.add(reference_alerts)
        return Pipeline(
            stages=stages,
            tracker_factory=lambda source_id: FaceTracker(config.tracker, source_id=source_id),
            crop=functools.partial(_crop, config=config),
            detect_every_n_frames=config.tracker.detect_every_n_frames,
            config=config.pipeline,
            threshold=self.threshold,
            alerts=alerts,
            reference_alerts=reference_alerts,
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
            "encoder_precision": self.encoder.precision,
            "calibrated_precision": self.calibration.encoder_precision if self.calibration else None,
            "reference": self._describe_reference(),
        }

    def _describe_reference(self) -> dict[str, Any] | None:
        thresholds = self.checkpoint.reference
        if self.reference is None or thresholds is None:
            return None
        return {
            "name": self.reference.name,
            "photos": self.reference.photos,
            "inner_at_least": round(thresholds.inner[VERDICT_RATE], 4),
            "outer_at_least": round(thresholds.outer[VERDICT_RATE], 4),
            "genuine_false_alarm_rate_per_part": VERDICT_RATE,
        }

    def close(self) -> None:
        if self._shared is not None:
            self._shared.stop()
            self._shared = None
        self.encoder.close()


def _crop(image: np.ndarray, tracks: Sequence[Track], *, config: LiveSettings) -> np.ndarray:
    return crop_faces(image, list(tracks), config.crop)


def load_components(config: LiveSettings) -> PipelineComponents:
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
        encoder = open_encoder(checkpoint, with_calibration(config.encoder))
    except CheckpointError as error:
        raise SetupError(str(error)) from error
    except (engine.BackendUnavailableError, engine.WeightsError, ValueError) as error:
        raise SetupError(f"cannot build the face encoder: {error}") from error
    detector = FaceDetector(config.detector)
    components = PipelineComponents(config=config, detector=detector, encoder=encoder, checkpoint=checkpoint)
    logger.info(
        "model: %s (window %d at %.1f Hz, threshold %.3f), encoder %s on %s, %s",
        checkpoint.path,
        checkpoint.window_size,
        checkpoint.sample_rate_hz,
        components.threshold,
        encoder.weights_id,
        encoder.backend_name,
        components.precision,
    )
    warning = precision_mismatch(components.calibration, components.precision, config.pipeline.threshold)
    if warning:
        logger.warning("%s", warning)
    if config.model.reference:
        try:
            components.enrol(read_reference_photos(config.model.reference))
        except ReferenceError as error:
            encoder.close()
            raise SetupError(str(error)) from error
    return components


def _cannot_enrol(checkpoint: ScorerCheckpoint) -> str:
    if head_features(checkpoint.head_type) != FEATURES:
        return (
            f"enrolment needs a model that embeds the inner and outer face; {checkpoint.path} has a "
            f"{checkpoint.head_type!r} head on whole-crop embeddings"
        )
    return (
        f"{checkpoint.path} has no reference thresholds: calibrate them with "
        "python -m stream.training.reference_calibration"
    )


def _warn_on_reference_precision(checkpoint: ScorerCheckpoint, precision: str) -> None:
    thresholds = checkpoint.reference
    if thresholds is not None and thresholds.encoder_precision != precision:
        logger.warning(
            "the reference thresholds were set on %s embeddings and the encoder runs %s: "
            "genuine faces may fail to match more often than stated",
            thresholds.encoder_precision,
            precision,
        )
