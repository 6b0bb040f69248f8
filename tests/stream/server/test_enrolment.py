"""Enrolment from the page: ``/api/reference`` with a recording enrolment and with the real models."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
import pytest

from engine.reference import Reference, ReferenceError
from stream.live.reference import ReferenceFrames, ReferenceMedia
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
    """Enrols whatever it gets, as ``stream.live.reference.enrol`` names and counts it, except that
    a black image (nothing above 15, as JPEG decodes black) has "no face": such a photo is refused,
    and a clip of only such frames.
    ``photos`` records each photo as ``(name, shape)`` and each clip as ``(name, shapes)``."""

    def __init__(self) -> None:
        self.reference: Reference | None = None
        self.photos: list[tuple[str, Any]] = []
        self.levels: list[list[float]] = []  # each clip's frames' mean brightness

    def enrol(self, media: Sequence[ReferenceMedia]) -> Reference:
        names, embeddings = [], 0
        for item in media:
            if isinstance(item, ReferenceFrames):
                self.photos.append((item.name, [image.shape for image in item.images]))
                self.levels.append([float(image.mean()) for image in item.images])
                faces = sum(image.max() > 15 for image in item.images)
                if not faces:
                    raise ReferenceError(f"no face found in reference clip {item.name}")
                names.append(f"{item.name} ({faces} frames)")
                embeddings += faces
                continue
            name, image = item
            self.photos.append((name, image.shape))
            if image.max() <= 15:
                raise ReferenceError(
                    f"no face found in reference photo {name}: enrol a photo that shows the face"
                )
            names.append(name)
            embeddings += 1
        self.set_reference(Reference.from_features(", ".join(names), np.ones((embeddings, 1024), np.float32)))
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


def multipart(parts: Sequence[tuple[str, str, bytes, str]]) -> Any:
    """A multipart/form-data body of ``(field, file name, bytes, content type)`` parts."""
    import aiohttp

    form = aiohttp.FormData()
    for field, filename, data, content_type in parts:
        form.add_field(field, data, filename=filename, content_type=content_type)
    return form


def test_several_photos_or_a_clips_frames_enrol_in_one_upload_and_bad_ones_say_why() -> None:
    enrolment = RecordingEnrolment()
    gray, black = np.full((48, 64, 3), 200, np.uint8), np.zeros((48, 64, 3), np.uint8)

    async def put(query: str, parts: Sequence[tuple[str, str, bytes, str]]) -> Any:
        return await client.put(f"/api/reference{query}", data=multipart(parts), headers=HEADERS)

    async def body() -> None:
        nonlocal client
        async with serving(token=TOKEN, enrolment=enrolment) as client:
            # Two photos of the person: each enrolled under its own name.
            response = await put(
                "",
                [
                    ("photo", "front.jpg", jpeg_bytes(gray), "image/jpeg"),
                    ("photo", "side.png", png_bytes(gray), "image/png"),
                ],
            )
            assert response.status == 200, await response.text()
            assert (await response.json())["reference"] == {"name": "front.jpg, side.png", "photos": 2}
            assert enrolment.photos == [("front.jpg", (48, 64, 3)), ("side.png", (48, 64, 3))]
            # A clip's 8 frames, as the page sends them (64 KiB each at most, 8 in all: far over the
            # single-photo body limit together); the two frames without a face are skipped.
            enrolment.photos.clear()
            rng = np.random.default_rng(0)
            frames = [rng.integers(60, 255, (288, 384, 3), dtype=np.uint8) for _ in range(6)]
            frames = [np.zeros_like(frames[0]), *frames, np.zeros_like(frames[0])]
            encoded = [jpeg_bytes(frame, 40) for frame in frames]
            assert sum(map(len, encoded)) > 64 * 1024 and max(map(len, encoded)) <= 64 * 1024
            response = await put(
                "?name=call.webm", [("frame", "f.jpg", data, "image/jpeg") for data in encoded]
            )
            assert response.status == 200, await response.text()
            assert (await response.json())["reference"] == {"name": "call.webm (6 frames)", "photos": 6}
            assert enrolment.photos == [("call.webm", [(288, 384, 3)] * 8)]
            # What is refused, each saying why; the person enrolled stays.
            nine = await put("?name=x.webm", [("frame", "f.jpg", jpeg_bytes(gray), "image/jpeg")] * 9)
            assert "at most 8 photos or clip frames" in await json_error(nine, 422)
            mixed = await put(
                "",
                [
                    ("photo", "a.jpg", jpeg_bytes(gray), "image/jpeg"),
                    ("frame", "f.jpg", jpeg_bytes(gray), "image/jpeg"),
                ],
            )
            assert "photos or one clip's frames, not both" in await json_error(mixed, 422)
            other = await put("", [("video", "a.mp4", b"\0\0\0\x18ftypmp42", "video/mp4")])
            assert "must be a 'photo' or a 'frame' image" in await json_error(other, 422)
            video = await put("?name=a.mp4", [("frame", "a.mp4", b"\0\0\0\x18ftypmp42", "video/mp4")])
            assert "cannot read reference photo a.mp4 frame 1: expected a JPEG or PNG" in await json_error(
                video, 422
            )
            empty = await client.put(
                "/api/reference",
                data=b"--b--\r\n",
                headers={"Content-Type": "multipart/form-data; boundary=b", **HEADERS},
            )
            assert "holds no photo or clip frame" in await json_error(empty, 422)
            noise = png_bytes(rng.integers(0, 255, (200, 200, 3), dtype=np.uint8))
            over = await put("?name=x.webm", [("frame", "f.png", noise, "image/png")])
            assert "x.webm frame 1 is larger than 65536 bytes" in await json_error(over, 413)
            faceless = await put("?name=dark.webm", [("frame", "f.jpg", jpeg_bytes(black), "image/jpeg")] * 3)
            assert "no face found in reference clip dark.webm" in await json_error(faceless, 422)
            huge = await client.put(
                "/api/reference",
                data=b"\0" * (9 * 64 * 1024),
                headers={"Content-Type": "multipart/form-data; boundary=b", **HEADERS},
            )
            assert "larger than" in await json_error(huge, 413)
            state = await (await client.get("/api/reference", headers=HEADERS)).json()
            assert state["reference"] == {"name": "call.webm (6 frames)", "photos": 6}

    client: Any = None
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
            assert components.reference is not None and components.reference.name == "astronaut.jpg"
            # A clip's frames as the page sends them: the face followed over 8 frames, shifted and
            # shrunk a little from frame to frame; a frame without a face is skipped.
            frames = [np.zeros_like(astronaut)] + [
                cv2.resize(np.roll(astronaut, 6 * index, axis=1), (480 - 8 * index, 480 - 8 * index))
                for index in range(8)
            ]
            form = multipart(
                [("frame", f"f{i}.jpg", jpeg_bytes(f), "image/jpeg") for i, f in enumerate(frames[:8])]
            )
            response = await client.put("/api/reference?name=astronaut.webm", data=form, headers=HEADERS)
            assert response.status == 200, await response.text()
            assert (await response.json())["reference"] == {"name": "astronaut.webm (7 frames)", "photos": 7}

    try:
        run(body)
        assert components.reference is not None and components.reference.name == "astronaut.webm (7 frames)"
        verdicts = []
        for index in range(40):
            result = pipeline.process(Frame(astronaut, index, index / 8.0, "still"))
            verdicts += [face.reference.verdict for face in result.faces if face.reference is not None]
        assert verdicts and verdicts[-1] == "match"
    finally:
        components.close()
