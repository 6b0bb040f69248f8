"""Video inputs: webcams, RTSP/HTTP streams, files, screen regions, image folders, the demo.

``open_source(spec)`` parses a command-line source string; every source runs one reader thread
with an explicit ``start()``/``stop()`` and hands out ``stream.contracts.Frame``s.
"""

from stream.sources.config import SourceConfig
from stream.sources.reader import FrameReader
from stream.sources.redact import redact
from stream.sources.source import FrameGrabber, GrabbedImage, Source, SourceError
from stream.sources.spec import DEMO_SPEC, SPEC_HELP, open_source

__all__ = [
    "DEMO_SPEC",
    "SPEC_HELP",
    "FrameGrabber",
    "FrameReader",
    "GrabbedImage",
    "Source",
    "SourceConfig",
    "SourceError",
    "open_source",
    "redact",
]
