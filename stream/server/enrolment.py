"""What the server needs to enrol the person who should be on screen from the page, and how it
reads an upload.

``stream.live.app.PipelineComponents`` is the real one: its ``enrol`` runs the live chain's detector,
crop and encoder on the photos and hands the reference to every scorer (``engine.reference``).

An upload is one JPEG or PNG photo (``image/jpeg`` or ``image/png``, within the server's body
limit), or ``multipart/form-data`` of up to ``MAX_UPLOAD_PARTS`` such images, each within that
limit: parts named ``photo`` are photos of the person (the largest face of each is enrolled), parts
named ``frame`` are frames of one clip taken 4 a second (the page takes them in the browser from a
video file or from the video it shares; the same face is followed from frame to frame, as
``deepwatch run --reference CLIP`` does). Only JPEG and PNG decoders ever see the bytes, never a
video decoder.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from engine.reference import Reference, ReferenceError
from stream.live.reference import CLIP_FRAMES, ReferenceFrames, ReferenceMedia, decode_reference_photo
from stream.server.security import http_error
from stream.sources.image_header import TooManyPixels, declared_size
from stream.sources.png import PNG_SIGNATURE

# An uploaded photo's name as the page shows it: printable, at most this long.
MAX_NAME_CHARS = 80
DEFAULT_UPLOAD_NAME = "uploaded photo"
# Longest side of an uploaded photo (the page sends 512 px): a few KiB of PNG can declare an image
# of gigapixels, so the size is read from the header and checked before anything decodes it.
MAX_UPLOAD_SIDE_PX = 4096
JPEG_SIGNATURE = b"\xff\xd8\xff"
IMAGE_TYPES = ("image/jpeg", "image/png")
# Several photos or a clip's frames in one multipart upload (module docstring).
MAX_UPLOAD_PARTS = CLIP_FRAMES
PHOTO_PART, FRAME_PART = "photo", "frame"
# Room for the multipart boundaries and part headers beside the images themselves.
MULTIPART_OVERHEAD_BYTES = 16 * 1024


class Enrolment(Protocol):
    @property
    def reference(self) -> Reference | None: ...

    def enrol(self, photos: Sequence[ReferenceMedia]) -> Reference:
        """Enrol the person in ``(name, RGB image)`` photos and clips' frames
        (``stream.live.reference``); ``ReferenceError`` when a photo or clip shows no face."""
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


def multipart_body_limit(max_body_bytes: int) -> int:
    """The most bytes a multipart upload may hold: ``MAX_UPLOAD_PARTS`` images within the body
    limit each, plus the multipart framing."""
    return MAX_UPLOAD_PARTS * max_body_bytes + MULTIPART_OVERHEAD_BYTES


@dataclass(frozen=True)
class Upload:
    """What a page sent to enrol: ``kind`` (``PHOTO_PART`` or ``FRAME_PART``), the name the page
    gave (``?name=``, made safe) and ``(name, bytes)`` of each image, checked by ``check_upload``."""

    kind: str
    name: str
    images: tuple[tuple[str, bytes], ...]

    def media(self) -> list[ReferenceMedia]:
        """The images decoded: photos, or one clip's frames; ``ReferenceError`` naming one that
        does not decode."""
        decoded = [(name, decode_reference_photo(data, name)) for name, data in self.images]
        if self.kind == FRAME_PART:
            return [ReferenceFrames(self.name, tuple(image for _, image in decoded))]
        return list(decoded)


async def read_upload(request: web.Request, max_part_bytes: int) -> Upload:
    """The images of an enrolment request (module docstring), each checked by ``check_upload``.

    Raises:
        web.HTTPException: 415 for another content type, 413 for an image over ``max_part_bytes``,
            422 for a multipart body that is not a set of JPEG or PNG photos or frames (too many,
            none, mixed kinds, another field) or an image ``check_upload`` refuses.
    """
    name = upload_name(request.query.get("name"))
    if request.content_type in IMAGE_TYPES:
        data = await _read_capped(request.content.readany, max_part_bytes, name)
        _check(data, name)
        return Upload(PHOTO_PART, name, ((name, data),))
    if request.content_type != "multipart/form-data":
        raise http_error(
            web.HTTPUnsupportedMediaType,
            "the reference must be a photo (image/jpeg or image/png) or multipart/form-data of up to "
            f"{MAX_UPLOAD_PARTS} photos or clip frames, got {request.content_type!r:.60}",
        )
    try:
        kinds, images = await _read_parts(request, name, max_part_bytes)
    except (ValueError, AssertionError, LookupError, HttpProcessingError) as error:
        # aiohttp's multipart reader says so on a missing or wrong boundary, a cut-off body, a
        # broken part header.
        raise http_error(
            web.HTTPUnprocessableEntity,
            f"malformed multipart/form-data body: {' '.join(str(error).split())[:200]}",
        ) from error
    if not images:
        raise http_error(web.HTTPUnprocessableEntity, "the reference upload holds no photo or clip frame")
    if len(kinds) > 1:
        raise http_error(
            web.HTTPUnprocessableEntity,
            "a reference upload holds photos or one clip's frames, not both",
        )
    return Upload(kinds.pop(), name, tuple(images))


async def _read_parts(
    request: web.Request, name: str, max_part_bytes: int
) -> tuple[set[str], list[tuple[str, bytes]]]:
    kinds: set[str] = set()
    images: list[tuple[str, bytes]] = []
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader) or part.name not in (PHOTO_PART, FRAME_PART):
            raise http_error(
                web.HTTPUnprocessableEntity,
                f"every part of a reference upload must be a {PHOTO_PART!r} or a {FRAME_PART!r} image",
            )
        if len(images) == MAX_UPLOAD_PARTS:
            raise http_error(
                web.HTTPUnprocessableEntity,
                f"a reference upload holds at most {MAX_UPLOAD_PARTS} photos or clip frames",
            )
        kinds.add(part.name)
        index = len(images) + 1
        part_name = upload_name(part.filename) if part.name == PHOTO_PART else f"{name} frame {index}"
        data = await _read_capped(part.read_chunk, max_part_bytes, part_name)
        _check(data, part_name)
        images.append((part_name, data))
    return kinds, images


async def _read_capped(read_chunk: Callable[[], Awaitable[bytes]], max_bytes: int, name: str) -> bytes:
    """Every chunk ``read_chunk`` gives until it gives none; 413 naming ``name`` past ``max_bytes``
    (a chunked body declares no length for the middleware to check first)."""
    data = bytearray()
    while chunk := await read_chunk():
        data += chunk
        if len(data) > max_bytes:
            message = f"{name} is larger than {max_bytes} bytes: send each photo or frame within that limit"
            raise web.HTTPRequestEntityTooLarge(
                max_size=max_bytes,
                actual_size=len(data),
                text=json.dumps({"error": message}),
                content_type="application/json",
            )
    return bytes(data)


def _check(data: bytes, name: str) -> None:
    try:
        check_upload(data, name)
    except ReferenceError as error:
        raise http_error(web.HTTPUnprocessableEntity, str(error)) from error
