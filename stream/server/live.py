"""Wiring the server to real inputs: server-side sources opened from their specs.

Sessions get their pipelines from the factory the caller passes to ``create_app`` (``deepwatch
serve`` passes ``PipelineComponents.session_pipeline``), so this package never imports the live
chain's model loading or the app config.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Protocol

from stream.server.app import SourceOpener
from stream.server.model_info import ModelInfo
from stream.sources import SourceConfig, open_source
from stream.sources.source import Source


def source_openers(specs: Mapping[str, str], config: SourceConfig) -> dict[str, SourceOpener]:
    """One opener per configured server-side source. Files play at their own frame rate and loop,
    like a camera, so a page watching one sees live video rather than a fast-forward."""

    def opener(name: str, spec: str) -> SourceOpener:
        def open_named() -> Source:
            return open_source(spec, config, realtime=True, loop=True, source_id=name)

        return open_named

    return {name: opener(name, spec) for name, spec in specs.items()}


class LoadedModel(Protocol):
    """What ``model_info`` reads (``stream.live.app.PipelineComponents`` has it)."""

    @property
    def checkpoint(self) -> Any: ...
    @property
    def config(self) -> Any: ...
    @property
    def threshold(self) -> float: ...
    @property
    def real_threshold(self) -> float | None: ...


def model_info(components: LoadedModel) -> ModelInfo:
    """What the page shows about the loaded model: its verdict rule and validated figure.

    The figure is the calibration's validated AUC when the checkpoint records one (measured on
    videos it never trained on), else the cross-validated ``video_auc`` of older checkpoints.
    """
    metrics: Mapping[str, Any] = components.checkpoint.metrics
    calibration = components.checkpoint.calibration
    if calibration is not None and math.isfinite(calibration.auc):
        metrics = {"video_auc": calibration.auc, "figure": "held-out video AUC"}
    return ModelInfo.from_checkpoint(
        metrics,
        threshold=components.threshold,
        uncertain_margin=components.config.pipeline.uncertain_margin,
        real_at_most=components.real_threshold,
    )
