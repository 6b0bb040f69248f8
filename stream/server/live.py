"""Wiring the server to the real app: pipelines from loaded models, sources from specs."""

from __future__ import annotations

from collections.abc import Mapping

from stream.app import PipelineComponents
from stream.server.app import SourceOpener
from stream.server.model_info import ModelInfo
from stream.server.peer import FramePipeline, PipelineFactory
from stream.sources import SourceConfig, open_source
from stream.sources.source import Source


def live_pipeline_factory(components: PipelineComponents) -> PipelineFactory:
    """A factory giving every session a fresh pipeline (own tracks and scorer state) over the
    models loaded once in ``components``."""

    def factory(source_id: str) -> FramePipeline:
        return components.new_pipeline()

    return factory


def source_openers(specs: Mapping[str, str], config: SourceConfig) -> dict[str, SourceOpener]:
    """One opener per configured server-side source. Files play at their own frame rate and loop,
    like a camera, so a page watching one sees live video rather than a fast-forward."""

    def opener(name: str, spec: str) -> SourceOpener:
        def open_named() -> Source:
            return open_source(spec, config, realtime=True, loop=True, source_id=name)

        return open_named

    return {name: opener(name, spec) for name, spec in specs.items()}


def model_info(components: PipelineComponents) -> ModelInfo:
    """What the page shows about the loaded model: its verdict rule and validated figure."""
    return ModelInfo.from_checkpoint(
        components.checkpoint.metrics,
        threshold=components.threshold,
        uncertain_margin=components.config.pipeline.uncertain_margin,
        real_at_most=components.real_threshold,
    )
