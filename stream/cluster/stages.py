"""What the Ray workers build their stages from: a picklable factory per concern.

A ``StageFactory`` travels to every worker (Ray pickles it); the worker calls it there, so models
load on the node that runs them, never on the driver. ``AppStages`` is the real one (MTCNN, the
Kalman tracker, the shipped or configured scorer checkpoint and its encoder); tests pass fakes.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Protocol

from stream.config import AppConfig
from stream.contracts import Encoder
from stream.live.pipeline import Pipeline

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StreamStages:
    """What a stream worker runs: its pipeline, and whom it enrolled (``(name, photos)`` as
    ``stream.live.reference`` names them, clip frames counted; None when nobody)."""

    pipeline: Pipeline
    enrolled: tuple[str, int] | None = None


class StageFactory(Protocol):
    """Builds a stream's pipeline and the shared encoder, on the worker that runs them."""

    def new_pipeline(self, encoder: Encoder, live: bool) -> StreamStages:
        """The per-stream pipeline (detector, tracker, crops, scorer) around a given encoder.

        ``live`` (a camera, or a file paced as one): detection and scoring run on the pipeline's
        worker threads, so a frame never waits for the encoder pool, as ``deepwatch run`` does
        for live sources in one process; else inline, every frame's results complete.
        """
        ...

    def new_encoder(self, device: str) -> Encoder:
        """The face encoder on ``device`` (``cpu`` or ``cuda``); must have ``close()``."""
        ...

    def threshold(self) -> float:
        """The decision threshold the overlay draws."""
        ...


@dataclass(frozen=True)
class AppStages:
    """The real stages, as ``deepwatch run`` builds them in one process (``stream.live.app``).

    ``reference_photos``: ``(name, file bytes)`` of the enrolled person's photos and clips, read
    on the driver (a worker node need not see the driver's files); each stream enrols them on its
    worker with its own detector and the encoder pool, so no model loads on the driver.
    """

    config: AppConfig
    reference_photos: tuple[tuple[str, bytes], ...] = ()

    def new_pipeline(self, encoder: Encoder, live: bool) -> StreamStages:
        from engine.checkpoint import load_checkpoint
        from stream.live.app import PipelineComponents
        from tracking import FaceDetector

        self._set_threads()
        checkpoint = load_checkpoint(self.config.model.checkpoint)
        components = PipelineComponents(
            config=self.config,
            detector=FaceDetector(self.config.detector),
            encoder=encoder,  # type: ignore[arg-type]
            checkpoint=checkpoint,
        )
        enrolled = None
        if self.reference_photos:
            from stream.live.reference import decode_reference_media

            with decode_reference_media(self.reference_photos) as media:
                reference = components.enrol(media)
            enrolled = (reference.name, reference.photos)
        pipeline = components.live_pipeline() if live else components.new_pipeline()
        return StreamStages(pipeline, enrolled)

    def new_encoder(self, device: str) -> Encoder:
        from engine.calibration import precision_mismatch
        from engine.checkpoint import load_checkpoint, open_encoder
        from stream.calibration import with_calibration

        self._set_threads()
        checkpoint = load_checkpoint(self.config.model.checkpoint)
        precision = self.config.encoder.precision
        if device != "cpu" and precision == "int8":
            # The int8 model is a CPU model; a GPU encoder actor runs the configured backend in fp32.
            logger.warning("encoder.precision int8 is for CPUs: the encoder actor on %s runs fp32", device)
            precision = "fp32"
        encoder_config = dataclasses.replace(self.config.encoder, device=device, precision=precision)
        encoder = open_encoder(checkpoint, with_calibration(encoder_config))
        logger.info(
            "encoder worker: %s on %s (%s, %s)",
            encoder.weights_id,
            device,
            encoder.backend_name,
            encoder.precision,
        )
        warning = precision_mismatch(
            checkpoint.calibration_for(encoder.precision), encoder.precision, self.config.pipeline.threshold
        )
        if warning:
            logger.warning("%s", warning)
        return encoder

    def threshold(self) -> float:
        from engine.checkpoint import load_checkpoint

        configured = self.config.pipeline.threshold
        if configured is not None:
            return configured
        # The pool's precision is settled on its nodes ("auto" there); an explicit one picks its thresholds.
        return load_checkpoint(self.config.model.checkpoint).threshold_for(self.config.encoder.precision)

    def _set_threads(self) -> None:
        if self.config.pipeline.torch_threads is not None:
            import torch

            torch.set_num_threads(self.config.pipeline.torch_threads)
