"""Wiring the server to real inputs: server-side sources opened from their specs.

Sessions get their pipelines from the factory the caller passes to ``create_app`` (``deepwatch
serve`` passes ``PipelineComponents.session_pipeline``), so this package never imports the live
chain's model loading or the app config.
"""

from __future__ import annotations

from collections.abc import Mapping

from stream.server.app import SourceOpener
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
