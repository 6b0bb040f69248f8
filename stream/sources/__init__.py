"""Video inputs: webcams, RTSP/HTTP streams, files, screen regions, image folders, the demo.

``open_source(spec)`` parses a command-line source string; every source runs one reader thread
with an explicit ``start()``/``stop()`` and hands out ``stream.contracts.Frame``s. ``photos_in(spec)``
lists the photos a spec names (an image file, a folder of photos) and ``read_image`` reads one.
"""

from stream.sources.config import SourceConfig
from stream.sources.image_folder import read_image
from stream.sources.reader import FrameReader
from stream.sources.redact import redact
from stream.sources.source import FrameGrabber, GrabbedImage, Source, SourceError
from stream.sources.spec import DEMO_SPEC, SPEC_HELP, open_source, photos_in

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
    "photos_in",
    "read_image",
    "redact",
]
