"""Helpers for the real-browser tests: Debian's Chromium driven by Playwright, the server on a
background thread, and face clips converted for Chromium's fake camera."""

from __future__ import annotations

import asyncio
import os
import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
from aiohttp import web

CHROMIUM = Path(os.environ.get("DEEPWATCH_CHROMIUM", "/usr/bin/chromium"))
REPO = Path(__file__).resolve().parents[3]
DATA = Path(os.environ.get("DEEPWATCH_DATA", REPO.parent / "shared" / "data"))
# One face, frontal, the whole clip: what the camera and the tab show.
FACE_CLIP = DATA / "real" / "liveportrait_d6.mp4"


def missing_requirements(*, face_clip: bool = True) -> str | None:
    """Why the browser tests cannot run here, or None (``face_clip``: they need the data's clip)."""
    if not CHROMIUM.is_file():
        return f"Chromium not found at {CHROMIUM} (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright Python package is not installed"
    if face_clip and not FACE_CLIP.is_file():
        return f"face clip {FACE_CLIP} not found (set DEEPWATCH_DATA to ../shared/data)"
    return None


def chromium_args(fake_camera: Path | None, marker: str, extra: tuple[str, ...] = ()) -> list[str]:
    """Flags for headless Chromium on a machine without a display or network, plus ``extra``.

    ``marker`` is an ignored switch that lets a test find (and kill) exactly this browser.
    """
    args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        # Loopback ICE candidates (off by default in Chromium); the server gathers 127.0.0.1 too.
        "--allow-loopback-in-peer-connection",
        # Raw host candidates instead of mDNS names aiortc would have to resolve.
        "--disable-features=WebRtcHideLocalIpsWithMdns",
        "--use-fake-device-for-media-stream",
        "--auto-accept-this-tab-capture",
        "--autoplay-policy=no-user-gesture-required",
        # Keep timers and video running in a background (headless) tab.
        "--disable-background-timer-throttling",
        "--disable-renderer-backgrounding",
        "--disable-backgrounding-occluded-windows",
        f"--deepwatch-test-browser={marker}",
    ]
    if fake_camera is not None:
        args.append(f"--use-file-for-fake-video-capture={fake_camera}")
    return args + list(extra)


def new_marker() -> str:
    return uuid.uuid4().hex


def convert_clip(
    source: Path, target: Path, *, size: int, fps: int, seconds: float, inset: float = 0.0
) -> Path:
    """Re-encode ``source`` as a square ``size`` x ``size`` clip: y4m (Chromium's fake camera
    format) or WebM/VP8 (a page's <video>), by ``target``'s suffix.

    ``inset`` (a fraction of ``size`` on each side) shrinks the picture and fills the border by
    repeating its edge pixels, so that a face which fills the source frame keeps its box, and the
    overlay's lines, clear of the frame's edge (a line on the last rows is clipped and smeared by
    the video codec).
    """
    if not 0.0 <= inset < 0.5:
        raise ValueError(f"inset must be a fraction in [0, 0.5), got {inset}")
    with av.open(str(source)) as container:
        stream = container.streams.video[0]
        rate = float(stream.average_rate or 25)
        step = max(1, round(rate / fps))
        images = []
        for index, frame in enumerate(container.decode(stream)):
            if index % step:
                continue
            images.append(_inset(frame.to_ndarray(format="rgb24"), size, inset))
            if len(images) >= seconds * fps:
                break
    if target.suffix == ".y4m":
        output = av.open(str(target), "w", format="yuv4mpegpipe")
        out_stream = output.add_stream("rawvideo", rate=fps)
    else:
        output = av.open(str(target), "w", format="webm")
        out_stream = output.add_stream("libvpx", rate=fps)
        out_stream.bit_rate = 1_500_000
    out_stream.width = out_stream.height = size
    out_stream.pix_fmt = "yuv420p"
    with output:
        for image in images:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            for packet in out_stream.encode(frame.reformat(width=size, height=size, format="yuv420p")):
                output.mux(packet)
        for packet in out_stream.encode():
            output.mux(packet)
    return target


def _inset(image: np.ndarray, size: int, inset: float) -> np.ndarray:
    """``image`` resized to ``size`` x ``size`` with an ``inset`` border of its repeated edge."""
    border = round(size * inset)
    if border == 0:
        return image
    inner = cv2.resize(image, (size - 2 * border, size - 2 * border), interpolation=cv2.INTER_AREA)
    return cv2.copyMakeBorder(inner, border, border, border, border, cv2.BORDER_REPLICATE)


class ServerThread:
    """Runs an aiohttp application on 127.0.0.1 (a free port) on its own event loop thread,
    over HTTPS when given an ``ssl_context``."""

    def __init__(self, app: web.Application, ssl_context: ssl.SSLContext | None = None) -> None:
        self.app = app
        self.ssl_context = ssl_context
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._runner = web.AppRunner(app, access_log=None)
        self._thread = threading.Thread(target=self._loop.run_forever, name="test-server", daemon=True)

    @property
    def url(self) -> str:
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}/"

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(30)

    async def _start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self.ssl_context)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def call(self, coroutine: Any, timeout_s: float = 30) -> Any:
        """Run a coroutine on the server's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout_s)

    def stop(self) -> None:
        try:
            self.call(self._runner.cleanup(), timeout_s=60)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)


@contextmanager
def running(app: web.Application, ssl_context: ssl.SSLContext | None = None) -> Iterator[ServerThread]:
    server = ServerThread(app, ssl_context)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def wait_for(page: Any, expression: str, timeout_s: float, what: str) -> Any:
    """Poll a JavaScript expression until it is truthy; returns its value.

    Polls with ``page.evaluate`` rather than ``wait_for_function``, which needs ``eval`` and so
    would force the page's Content-Security-Policy off.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = page.evaluate(expression)
        if value:
            return value
        if time.monotonic() > deadline:
            state = page.evaluate(
                "(s => JSON.stringify({c: s.connectionState, n: s.scoresMessages, e: s.errors,"
                " last: s.lastScores}))(window.deepwatch.state)"
            )
            raise AssertionError(
                f"timed out after {timeout_s} s waiting for {what}; page state: {state:.1500}"
            )
        time.sleep(0.2)
