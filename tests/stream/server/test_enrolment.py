"""Enrolment from the page: ``/api/reference`` with a recording enrolment and with the real models."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence

import cv2
import numpy as np
import pytest

from engine.reference import Reference, ReferenceError
from stream.server.enrolment import MAX_NAME_CHARS, upload_name
from tests.stream.server.test_app import HEADERS, TOKEN, json_error, run, serving

PNG = {"Content-Type": "image/png", **HEADERS}


def jpeg_bytes(image: np.ndarray, quality: int = 85) -> bytes:
    """As the page sends a photo: JPEG, at most 512 px a side."""
    ok, encoded = cv2.imencode(
        ".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    assert ok
    return encoded.tobytes()


def declared_png(width: int, height: int) -> bytes:
    """A PNG of a few dozen bytes whose header declares ``width`` x ``height`` pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 10))
        + chunk(b"IEND", b"")
    )


def png_bytes(image: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    assert ok
    return encoded.tobytes()


class RecordingEnrolment:
    """Enrols whatever photo it gets unless the photo is all black ("no face")."""

    def __init__(self) -> None:
        self.reference: Reference | None = None
        self.photos: list[tuple[str, tuple[int, ...]]] = []

    def enrol(self, photos: Sequence[tuple[str, np.ndarray]]) -> Reference:
        (name, image), *_ = photos
        self.photos.append((name, image.shape))
        if not image.any():
            raise ReferenceError(
                f"no face found in reference photo {name}: enrol a photo that shows the face"
            )
        features = np.ones((1, 1024), np.float32)
        self.set_reference(Reference.from_features(name, features))
        assert self.reference is not None
        return self.reference

    def set_reference(self, reference: Reference | None) -> None:
        self.reference = reference


def test_reference_routes_enrol_refuse_and_forget() -> None:
    enrolment = RecordingEnrolment()

    async def body() -> None:
        async with serving(token=TOKEN, enrolment=enrolment) as client:
            state = await (await client.get("/api/reference", headers=HEADERS)).json()
            assert state == {"available": True, "reference": None}
            photo = np.full((48, 64, 3), 200, np.uint8)
            response = await client.put("/api/reference?name=alice.png", data=png_bytes(photo), headers=PNG)
            assert response.status == 200, await response.text()
            assert await response.json() == {
                "available": True,
                "reference": {"name": "alice.png", "photos": 1},
            }
            assert enrolment.photos == [("alice.png", (48, 64, 3))]
            # The wrong type, bytes that are no image, and a photo without a face: each says why,
            # and the enrolled person stays.
            wrong = await client.put(
                "/api/reference", data=b"x", headers={"Content-Type": "text/plain", **HEADERS}
            )
            assert "image/jpeg or image/png" in await json_error(wrong, 415)
            garbage = await client.put("/api/reference?name=x.png", data=b"\x89PNG nope", headers=PNG)
            assert "cannot read reference photo x.png" in await json_error(garbage, 422)
            # Only JPEG and PNG bytes reach a decoder, whatever the declared type; a PNG whose
            # chunk declares more than the upload holds is refused before OpenCV allocates it.
            gif = await client.put("/api/reference?name=x.gif", data=b"GIF89a" + bytes(64), headers=PNG)
            assert "cannot read reference photo x.gif: expected a JPEG or PNG" in await json_error(gif, 422)
            damaged = bytearray(png_bytes(np.full((48, 64, 3), 200, np.uint8)))
            damaged[damaged.index(b"IDAT") - 4] = 164
            response = await client.put("/api/reference?name=d.png", data=bytes(damaged), headers=PNG)
            assert "d.png: a damaged PNG, its 'IDAT' chunk" in await json_error(response, 422)
            black = png_bytes(np.zeros((48, 64, 3), np.uint8))
            faceless = await client.put("/api/reference?name=wall.png", data=black, headers=PNG)
            assert "no face found in reference photo wall.png" in await json_error(faceless, 422)
            # A few KiB that declare a huge image are refused from the header, before decoding.
            huge = png_bytes(np.zeros((60, 9000, 3), np.uint8))
            assert len(huge) < 64 * 1024
            refused = await client.put("/api/reference?name=huge.png", data=huge, headers=PNG)
            assert "huge.png is 9000 x 60 px: send at most 4096 px a side" in await json_error(refused, 422)
            bomb = await client.put(
                "/api/reference?name=bomb.png", data=declared_png(30000, 30000), headers=PNG
            )
            assert "bomb.png declares too many pixels" in await json_error(bomb, 422)
            assert all(name not in ("huge.png", "bomb.png") for name, _ in enrolment.photos)
            state = await (await client.get("/api/reference", headers=HEADERS)).json()
            assert state["reference"] == {"name": "alice.png", "photos": 1}
            too_big = await client.put("/api/reference", data=b"\0" * (65 * 1024), headers=PNG)
            assert "larger than" in await json_error(too_big, 413)
            cleared = await client.delete("/api/reference", headers=HEADERS)
            assert await cleared.json() == {"available": True, "reference": None}
            assert enrolment.reference is None

    run(body)


def test_without_enrolment_the_routes_say_the_model_cannot_compare() -> None:
    async def body() -> None:
        async with serving(token=TOKEN) as client:
            state = await (await client.get("/api/reference", headers=HEADERS)).json()
            assert state == {"available": False, "reference": None}
            photo = png_bytes(np.full((8, 8, 3), 9, np.uint8))
            for response in (
                await client.put("/api/reference", data=photo, headers=PNG),
                await client.delete("/api/reference", headers=HEADERS),
            ):
                assert "cannot compare faces with an enrolled person" in await json_error(response, 404)

    run(body)


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        (None, "uploaded photo"),
        ("  ", "uploaded photo"),
        ("a\nb\x1b[31m.png", "ab[31m.png"),
        ("é.jpg", "é.jpg"),
    ],
)
def test_upload_names_are_printable_and_short(raw, shown) -> None:
    assert upload_name(raw) == shown
    assert len(upload_name("x" * 500)) == MAX_NAME_CHARS


@pytest.mark.slow
def test_the_real_models_enrol_a_page_upload_for_the_shared_scorer() -> None:
    """PipelineComponents as ``deepwatch serve`` passes it: the upload reaches the live scorer."""
    from skimage import data

    from stream.config import AppConfig
    from stream.contracts import Frame
    from stream.live.app import load_components

    components = load_components(AppConfig())
    assert components.can_enrol
    pipeline = components.new_pipeline()
    astronaut = np.ascontiguousarray(data.astronaut())

    async def body() -> None:
        async with serving(token=TOKEN, enrolment=components) as client:
            photo = jpeg_bytes(astronaut)
            assert len(photo) < 64 * 1024
            response = await client.put(
                "/api/reference?name=astronaut.jpg",
                data=photo,
                headers={"Content-Type": "image/jpeg", **HEADERS},
            )
            assert response.status == 200, await response.text()

    try:
        run(body)
        assert components.reference is not None and components.reference.name == "astronaut.jpg"
        verdicts = []
        for index in range(40):
            result = pipeline.process(Frame(astronaut, index, index / 8.0, "still"))
            verdicts += [face.reference.verdict for face in result.faces if face.reference is not None]
        assert verdicts and verdicts[-1] == "match"
    finally:
        components.close()
