"""What the server needs to enrol the person who should be on screen from the page.

``stream.live.app.PipelineComponents`` is the real one: its ``enrol`` runs the live chain's detector,
crop and encoder on the photo and hands the reference to every scorer (``engine.reference``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from engine.reference import Reference, ReferenceError
from stream.sources.image_header import TooManyPixels, declared_size
from stream.sources.png import PNG_SIGNATURE

# An uploaded photo's name as the page shows it: printable, at most this long.
MAX_NAME_CHARS = 80
DEFAULT_UPLOAD_NAME = "uploaded photo"
# Longest side of an uploaded photo (the page sends 512 px): a few KiB of PNG can declare an image
# of gigapixels, so the size is read from the header and checked before anything decodes it.
MAX_UPLOAD_SIDE_PX = 4096
JPEG_SIGNATURE = b"\xff\xd8\xff"


class Enrolment(Protocol):
    @property
    def reference(self) -> Reference | None: ...

    def enrol(self, photos: Sequence[tuple[str, np.ndarray]]) -> Reference:
        """Enrol the person in ``(name, RGB image)`` photos; ``ReferenceError`` when a photo
        shows no face."""
        ...

    def set_reference(self, reference: Reference | None) -> None: ...


def check_upload(data: bytes, name: str) -> None:
    """``ReferenceError`` unless the bytes are a JPEG or PNG file whose header declares at most
    ``MAX_UPLOAD_SIDE_PX`` a side.

    Only those two decoders ever see a page's bytes (OpenCV would otherwise pick any of a dozen by
    the bytes' signature). A JPEG or PNG damaged past its header passes here; decoding it fails
    afterwards with its own message.
    """
    if not data.startswith((JPEG_SIGNATURE, PNG_SIGNATURE)):
        raise ReferenceError(f"cannot read reference photo {name}: expected a JPEG or PNG image")
    try:
        size = declared_size(data)
    except TooManyPixels as error:
        raise ReferenceError(
            f"reference photo {name} declares too many pixels: send at most {MAX_UPLOAD_SIDE_PX} px a side"
        ) from error
    if size is None:
        return
    width, height = size
    if max(width, height) > MAX_UPLOAD_SIDE_PX:
        raise ReferenceError(
            f"reference photo {name} is {width} x {height} px: send at most {MAX_UPLOAD_SIDE_PX} px a side"
        )


def upload_name(raw: str | None) -> str:
    """The ``name`` query parameter made safe to show and log: printable characters only, trimmed."""
    text = "".join(char for char in (raw or "") if char.isprintable()).strip()[:MAX_NAME_CHARS]
    return text or DEFAULT_UPLOAD_NAME


def reference_json(reference: Reference | None) -> dict[str, Any] | None:
    return None if reference is None else {"name": reference.name, "photos": reference.photos}
