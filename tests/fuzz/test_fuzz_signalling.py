"""Property-based fuzzing of the signalling API (``stream.server``) with hypothesis.

Random methods, paths, headers, tokens and bodies (random JSON, mutated real SDP offers, random
bytes, oversized bodies), enrolment photo uploads (mutated PNG and JPEG files, headers declaring
huge images, wrong types), and raw HTTP bytes on the socket, against an in-process aiohttp server
with a fake pipeline. Every request must end in a clear answer: 2xx, or a 4xx whose body is JSON
naming the problem (503 only for the session limit), never a 5xx, a logged traceback or a hang;
``/healthz`` still answers afterwards. Derandomised, so one command runs the same cases every time;
hypothesis also draws on constants of the project modules already imported, so the whole suite (as CI
runs it) tries other cases than this module alone does.
"""

from __future__ import annotations

import asyncio
import io
import json
import struct
import sys
import threading
import traceback
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from stream.server.app import create_app
from stream.server.options import ServerOptions
from stream.server.peer import overlay_annotator
from tests.fuzz.cases import ErrorRecords, json_values, scaled
from tests.stream.server.fakes import ClientPeer, PipelineRecorder, SolidTrack
from tests.stream.server.test_enrolment import RecordingEnrolment, declared_png

TOKEN = "fuzz-token-0123456789abcdef"
# Cases per surface, sized so that all fuzz tests together stay within ~3 min of CI on 2 cores.
REQUEST_CASES = scaled(2500)
# An offer that parses costs a peer connection (~50 ms): fewer of them.
OFFER_CASES = scaled(600)
RAW_HTTP_CASES = scaled(1500)
# An upload that decodes is enrolled by a recording enrolment (no model): cheap.
UPLOAD_CASES = scaled(500)
MAX_BODY_BYTES = 16 * 1024
# A server answer slower than this is a hang (a negotiation is bounded by 5 s below).
ANSWER_TIMEOUT_S = 10.0

FUZZ_SETTINGS = {
    "deadline": None,
    "database": None,
    "derandomize": True,
    # No shrinking: a failing case is reported as found, so a hang cannot multiply into many.
    "phases": [Phase.explicit, Phase.generate],
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
}

PATHS = [
    "/",
    "/healthz",
    "/metrics",
    "/favicon.ico",
    "/static/app.js",
    "/static/../../etc/passwd",
    "/api/model",
    "/api/sources",
    "/api/offer",
    "/api/sessions",
    "/api/sessions/0123456789abcdef",
    "/api/reference",
    "/api/",
    "/api//offer",
]
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]
CONTENT_TYPES = [
    "application/json",
    "application/json; charset=utf-8",
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "application/sdp",
    "",
]
# Header names and values an HTTP client can send: visible ASCII names, values without CR/LF.
header_names = st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=126, exclude_characters=':()<>@,;\\"/[]?={}'),
    min_size=1,
    max_size=20,
)
header_values = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=60)


@dataclass
class Harness:
    """One server and client on one event loop, shared by every case of a test."""

    loop: asyncio.AbstractEventLoop
    client: TestClient
    real_offer: dict[str, Any]

    def run(self, coroutine: Any) -> Any:
        task = self.loop.create_task(coroutine)
        done, _ = self.loop.run_until_complete(asyncio.wait([task], timeout=ANSWER_TIMEOUT_S))
        if not done:
            # A hang: say where every thread and task is before cancelling, so that a stall seen
            # once in CI can be explained from its log.
            where = hang_report(self.loop)
            task.cancel()
            self.loop.run_until_complete(asyncio.wait([task]))
            raise AssertionError(f"no answer within {ANSWER_TIMEOUT_S:g} s\n{where}")
        return task.result()


def hang_report(loop: asyncio.AbstractEventLoop) -> str:
    """The stacks of every thread and of every pending task on ``loop``."""
    names = {thread.ident: thread.name for thread in threading.enumerate()}
    report = io.StringIO()
    for ident, frame in sys._current_frames().items():
        report.write(f"--- thread {names.get(ident, ident)}\n")
        report.writelines(traceback.format_stack(frame)[-12:])
    for task in asyncio.all_tasks(loop):
        report.write(f"--- task {task.get_name()}\n")
        task.print_stack(limit=12, file=report)
    return report.getvalue()


@pytest.fixture(scope="module")
def harness() -> Iterator[Harness]:
    loop = asyncio.new_event_loop()
    app = create_app(
        ServerOptions(
            port=0,
            token=TOKEN,
            max_body_bytes=MAX_BODY_BYTES,
            idle_timeout_s=2.0,
            negotiation_timeout_s=5.0,
            max_sessions=2,
            # Wrong tokens are part of every test here; the limit itself is tested in test_app.py.
            max_token_failures=10**9,
        ),
        pipeline_factory=PipelineRecorder(),
        annotate=overlay_annotator(),
        enrolment=RecordingEnrolment(),
    )
    client = TestClient(TestServer(app), loop=loop)
    loop.run_until_complete(client.start_server())

    async def real_offer() -> dict[str, Any]:
        peer = ClientPeer(SolidTrack(128))
        body = await peer.offer_body()
        await peer.close()
        return body

    try:
        yield Harness(loop, client, loop.run_until_complete(real_offer()))
    finally:
        # Bounded: a session stuck in negotiation must fail the run, not hang it.
        loop.run_until_complete(asyncio.wait_for(client.close(), 60))
        loop.close()


# Pieces a mutation puts into an SDP: broken versions of what a browser sends.
SDP_FRAGMENTS = [
    "",
    "a=",
    "m=audio 9 UDP/TLS/RTP/SAVPF 0",
    "m=video 0 RTP/AVP 96",
    "m=application 9 UDP/DTLS/SCTP webrtc-datachannel",
    "c=IN IP4 999.1.1.1",
    "a=rtpmap:96 VP8/abc",
    "a=rtpmap:-1 H264/90000",
    "a=fingerprint:sha-256 ZZ:ZZ",
    "a=setup:nonsense",
    "a=candidate:1 1 UDP 1 127.0.0.1 99999 typ host",
    "a=ice-ufrag:",
    "a=ssrc:" + "9" * 30 + " cname:x",
    "a=group:BUNDLE 7 8 9",
    "a=mid:" + "x" * 300,
    "a=sendonly",
    "a=inactive",
    "\x00\x01",
    "é" * 8,
    "v=0",
]


def mutated_sdp(real_sdp: str) -> st.SearchStrategy[str]:
    """A real browser-like offer, truncated, with lines dropped, duplicated or replaced."""
    lines = real_sdp.split("\r\n")
    mutation = st.tuples(
        st.sampled_from(["drop", "duplicate", "replace", "insert"]),
        st.integers(0, len(lines) - 1),
        st.sampled_from(SDP_FRAGMENTS),
    )

    def apply(mutations: list[tuple[str, int, str]], cut: float, separator: str) -> str:
        kept = list(lines)
        for action, index, fragment in mutations:
            index = min(index, len(kept) - 1)
            if index < 0:
                kept.append(fragment)
            elif action == "drop":
                del kept[index]
            elif action == "duplicate":
                kept.insert(index, kept[index])
            elif action == "replace":
                kept[index] = fragment
            else:
                kept.insert(index, fragment)
        text = separator.join(kept)
        return text[: round(cut * len(text))]

    return st.builds(
        apply,
        st.lists(mutation, max_size=3),
        st.sampled_from([1.0, 1.0, 0.9, 0.5, 0.1]) | st.floats(0, 1),
        st.sampled_from(["\r\n", "\r\n", "\n"]),
    )


def offer_bodies(real_offer: dict[str, Any]) -> st.SearchStrategy[bytes]:
    """Bodies for ``POST /api/offer``: mutated real offers, offers with wrong field types or
    extra keys, any JSON, and bytes that are not JSON at all."""
    offer = st.fixed_dictionaries(
        {
            "type": st.sampled_from(["offer", "offer", "offer", "answer", "", "OFFER"]) | json_values(4),
            "sdp": mutated_sdp(real_offer["sdp"]) | json_values(4),
        },
        optional={
            "source": st.none() | st.sampled_from(["", "door", "x" * 65, "../etc"]),
            "extra": json_values(3),
        },
    )
    return (
        offer.map(lambda body: json.dumps(body).encode())
        | json_values(8).map(lambda body: json.dumps(body).encode())
        | st.binary(max_size=64)
        | st.just(json.dumps({"type": "offer", "sdp": "v=0\r\n" + "a=x\r\n" * 12_000}).encode())
    )


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    """Any method on any path, with any token, content type, origin, extra headers and a small body."""
    method = draw(st.sampled_from(METHODS))
    path = draw(st.sampled_from(PATHS) | st.text(max_size=20).map(lambda text: "/" + text.lstrip("/")))
    headers: dict[str, str] = {}
    query: dict[str, str] = {}
    token_kind = draw(st.sampled_from(["header", "bearer", "query", "none", "wrong", "empty"]))
    if token_kind == "header":
        headers["X-Deepwatch-Token"] = TOKEN
    elif token_kind == "bearer":
        headers["Authorization"] = f"Bearer {TOKEN}"
    elif token_kind == "query":
        query["token"] = TOKEN
    elif token_kind == "wrong":
        headers["X-Deepwatch-Token"] = draw(header_values)
    elif token_kind == "empty":
        headers["Authorization"] = "Bearer "
    content_type = draw(st.sampled_from(CONTENT_TYPES) | header_values)
    if content_type:
        headers["Content-Type"] = content_type
    if draw(st.booleans()):
        headers["Origin"] = draw(st.sampled_from(["null", "https://evil.example", "http://127.0.0.1"]))
    for name, value in draw(st.dictionaries(header_names, header_values, max_size=3)).items():
        if name.lower() not in ("content-length", "transfer-encoding", "host", "connection"):
            headers.setdefault(name, value)
    body = draw(
        st.none()
        | st.binary(max_size=64)
        | st.integers(1, 4096).map(lambda extra: b"{" + b" " * (MAX_BODY_BYTES + extra) + b"}")
    )
    return {"method": method, "path": path, "headers": headers, "params": query, "data": body}


def offers(real_offer: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """``POST /api/offer`` with the right token and content type, so the body reaches the parser."""
    return offer_bodies(real_offer).map(
        lambda body: {
            "method": "POST",
            "path": "/api/offer",
            "headers": {"X-Deepwatch-Token": TOKEN, "Content-Type": "application/json"},
            "params": {},
            "data": body,
        }
    )


def _photo(extension: str) -> bytes:
    ramp = np.linspace(30, 220, 64, dtype=np.float32)
    image = np.stack(np.broadcast_arrays(ramp[None, :], ramp[:48, None], np.float32(128)), axis=-1)
    ok, encoded = cv2.imencode(extension, image.astype(np.uint8))
    assert ok
    return encoded.tobytes()


@st.composite
def photo_bodies(draw: st.DrawFn) -> bytes:
    """A real small PNG or JPEG, truncated, with bytes flipped, with its PNG header declaring
    another size (CRC fixed or not) or its IDAT chunk another length; declared giants; random bytes."""
    kind = draw(st.sampled_from(["png", "jpeg", "giant", "random"]))
    if kind == "random":
        return draw(st.binary(max_size=200))
    if kind == "giant":
        return declared_png(draw(st.integers(0, 2**31 - 1)), draw(st.integers(0, 2**31 - 1)))
    data = bytearray(_photo(".png" if kind == "png" else ".jpg"))
    if kind == "png" and draw(st.booleans()):
        data[16:24] = struct.pack(">II", draw(st.integers(0, 2**32 - 1)), draw(st.integers(0, 2**32 - 1)))
        if draw(st.booleans()):
            data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    if kind == "png" and draw(st.booleans()):
        # A chunk length that promises more (or less) than follows: once a 2.75 GB IDAT that
        # OpenCV allocated before reading.
        idat = data.index(b"IDAT") - 4
        length = st.integers(0, 2**32 - 1) | st.integers(2**31, 2**32 - 1)
        data[idat : idat + 4] = struct.pack(">I", draw(length))
    for position, value in draw(
        st.lists(st.tuples(st.integers(0, len(data) - 1), st.integers(0, 255)), max_size=8)
    ):
        data[position] = value
    return bytes(data[: draw(st.integers(0, len(data)))]) if draw(st.booleans()) else bytes(data)


def uploads() -> st.SearchStrategy[dict[str, Any]]:
    """``PUT /api/reference`` with the right token, so the photo reaches the decoders."""
    return st.builds(
        lambda body, content_type, name: {
            "method": "PUT",
            "path": "/api/reference",
            "headers": {"X-Deepwatch-Token": TOKEN, "Content-Type": content_type},
            "params": {} if name is None else {"name": name},
            "data": body,
        },
        photo_bodies(),
        st.sampled_from(["image/png", "image/jpeg", "image/png", "image/jpeg", "image/gif", "text/plain"]),
        st.none() | st.text(max_size=120),
    )


BOUNDARY = "deepwatch-fuzz-boundary"


@st.composite
def multipart_bodies(draw: st.DrawFn) -> tuple[bytes, str]:
    """A multipart body of 0-10 parts (photo or frame fields as the page sends, or others; the
    photos as ``photo_bodies`` mutates them), itself possibly mutated or cut short; and its
    Content-Type, with the right boundary, another one or none."""
    body = bytearray()
    parts = st.tuples(
        st.sampled_from(["photo", "frame", "frame", "video", ""]),
        photo_bodies(),
        st.sampled_from(["image/jpeg", "image/png", "video/webm", ""]),
        st.sampled_from(['; filename="a.jpg"', "", '; filename="\r\n"', "; filename*=utf-8''%ff"]),
    )
    for field, data, content_type, filename in draw(st.lists(parts, max_size=10)):
        body += f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{field}"{filename}\r\n'.encode()
        if content_type:
            body += f"Content-Type: {content_type}\r\n".encode()
        body += b"\r\n" + data + b"\r\n"
    body += f"--{BOUNDARY}--\r\n".encode()
    for position, value in draw(
        st.lists(st.tuples(st.integers(0, len(body) - 1), st.integers(0, 255)), max_size=4)
    ):
        body[position] = value
    if draw(st.booleans()):
        body = body[: draw(st.integers(0, len(body)))]
    boundary = draw(
        st.sampled_from([f"; boundary={BOUNDARY}", f'; boundary="{BOUNDARY}"', "", "; boundary=x"])
    )
    return bytes(body), f"multipart/form-data{boundary}"


def multipart_uploads() -> st.SearchStrategy[dict[str, Any]]:
    """``PUT /api/reference`` with several photos or a clip's frames, the right token."""
    return st.builds(
        lambda upload, name: {
            "method": "PUT",
            "path": "/api/reference",
            "headers": {"X-Deepwatch-Token": TOKEN, "Content-Type": upload[1]},
            "params": {} if name is None else {"name": name},
            "data": upload[0],
        },
        multipart_bodies(),
        st.none() | st.text(max_size=40),
    )


async def send(client: TestClient, request: dict[str, Any]) -> tuple[int, bytes, str]:
    response = await client.request(
        request["method"],
        request["path"],
        headers=request["headers"],
        params=request["params"],
        data=request["data"],
        allow_redirects=False,
    )
    body = await response.read()
    return response.status, body, response.headers.get("Content-Type", "")


async def close_sessions(client: TestClient) -> None:
    listed = await client.get("/api/sessions", headers={"X-Deepwatch-Token": TOKEN})
    for session in (await listed.json())["sessions"]:
        await client.delete(f"/api/sessions/{session['session_id']}", headers={"X-Deepwatch-Token": TOKEN})


def check_answer(status: int, body: bytes, content_type: str, request: dict[str, Any]) -> None:
    assert status < 500 or status == 503, (
        f"{status} {body[:300]!r} for {request['method']} {request['path']!r}"
    )
    if status >= 400 and request["method"] != "HEAD":
        assert content_type.startswith("application/json"), (status, content_type, body[:200])
        error = json.loads(body)
        assert error["status"] == status and isinstance(error["error"], str) and error["error"]
        assert "Traceback" not in error["error"] and TOKEN not in error["error"]
        if status == 503:
            assert error["error"].startswith("session limit reached"), error


@pytest.mark.parametrize("surface", ["requests", "offers", "uploads", "multipart"])
def test_random_requests_and_offers_get_clear_answers(harness: Harness, surface: str) -> None:
    cases: list[int] = []
    errors = ErrorRecords()
    strategy = {
        "requests": requests(),
        "offers": offers(harness.real_offer),
        "uploads": uploads(),
        "multipart": multipart_uploads(),
    }[surface]
    examples = {
        "requests": REQUEST_CASES,
        "offers": OFFER_CASES,
        "uploads": UPLOAD_CASES,
        "multipart": UPLOAD_CASES,
    }[surface]

    @settings(max_examples=examples, **FUZZ_SETTINGS)
    @given(request=strategy)
    def one(request: dict[str, Any]) -> None:
        cases.append(1)
        status, body, content_type = harness.run(send(harness.client, request))
        check_answer(status, body, content_type, request)
        if status == 200 and request["path"] == "/api/offer":
            # A mutation that still negotiates: close it, so later offers are not limited.
            harness.run(close_sessions(harness.client))

    with errors.watching("stream.server.security"):
        one()
    assert len(cases) >= examples
    errors.assert_none()
    status, body, _ = harness.run(send(harness.client, {**HEALTHZ}))
    assert status == 200 and json.loads(body)["status"] == "ok"


HEALTHZ: dict[str, Any] = {"method": "GET", "path": "/healthz", "headers": {}, "params": {}, "data": None}


@st.composite
def raw_requests(draw: st.DrawFn) -> bytes:
    """Bytes on the socket: a request line and headers, well- or ill-formed, and a body that
    may be shorter or longer than announced."""
    method = draw(st.sampled_from([b"GET", b"POST", b"DELETE", b"PUT"]) | st.binary(max_size=8))
    path = draw(st.sampled_from([p.encode() for p in PATHS]) | st.binary(max_size=40))
    version = draw(
        st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1.1x"]) | st.binary(max_size=9)
    )
    lines = [b" ".join([method, path, version])]
    body = draw(st.binary(max_size=300))
    if draw(st.booleans()):
        lines.append(
            b"Content-Length: " + draw(st.sampled_from([str(len(body)).encode(), b"-1", b"abc", b"99999999"]))
        )
    if draw(st.booleans()):
        lines.append(
            b"Transfer-Encoding: " + draw(st.sampled_from([b"chunked", b"gzip", b"chunked, chunked"]))
        )
    lines.append(b"X-Deepwatch-Token: " + draw(st.sampled_from([TOKEN.encode(), b"nope"])))
    lines.append(b"Content-Type: application/json")
    for _ in range(draw(st.integers(0, 3))):
        lines.append(draw(st.binary(max_size=60)))
    separator = draw(st.sampled_from([b"\r\n", b"\n", b"\r"]))
    return separator.join(lines) + b"\r\n\r\n" + body


async def send_raw(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        # No more bytes will come: a server waiting for the rest of a body must give up now.
        writer.write_eof()
        return await reader.read()
    finally:
        writer.close()


def test_raw_http_bytes_get_an_answer_or_a_closed_connection(harness: Harness) -> None:
    cases: list[int] = []
    errors = ErrorRecords()
    port = harness.client.port
    assert port is not None

    @settings(max_examples=RAW_HTTP_CASES, **FUZZ_SETTINGS)
    @given(data=raw_requests())
    def one(data: bytes) -> None:
        cases.append(1)
        answer = harness.run(send_raw(port, data))
        if answer:
            assert answer.startswith(b"HTTP/1."), answer[:100]
            status = int(answer.split(b" ", 2)[1])
            assert status < 500 or status == 503, answer[:300]

    with errors.watching("stream.server.security"):
        one()
    assert len(cases) >= RAW_HTTP_CASES
    errors.assert_none()
    status, body, _ = harness.run(send(harness.client, {**HEALTHZ}))
    assert status == 200 and json.loads(body)["status"] == "ok"


def test_a_hang_fails_with_every_thread_and_task_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """The harness's own check: a request stuck behind a busy inference thread fails the case
    with that thread's stack and the waiting task's, instead of a bare timeout."""
    monkeypatch.setattr(sys.modules[__name__], "ANSWER_TIMEOUT_S", 0.2)
    loop = asyncio.new_event_loop()
    release = threading.Event()
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="deepwatch-inference")

    async def stuck_upload() -> None:
        await loop.run_in_executor(executor, release.wait)

    try:
        with pytest.raises(AssertionError) as failure:
            Harness(loop, None, {}).run(stuck_upload())  # type: ignore[arg-type]
    finally:
        release.set()
        executor.shutdown(wait=True)
        loop.close()
    report = str(failure.value)
    assert report.startswith("no answer within 0.2 s")
    inference_thread = report.split("--- thread deepwatch-inference_0\n")[1].split("--- ")[0]
    assert "in wait" in inference_thread  # where the thread is stuck: threading.Event.wait
    assert "--- task" in report and "stuck_upload" in report
