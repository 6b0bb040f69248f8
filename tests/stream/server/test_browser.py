"""Real headless Chromium against the real server and the real pipeline (MTCNN, tracker, encoder,
shipped scorer), fed a face clip from ../shared/data through Chromium's fake camera or a shared tab.

Needs Debian's ``chromium`` and the ``playwright`` Python package (no browser download: Playwright
drives /usr/bin/chromium). Skipped without them, failed under CI (DEEPWATCH_REQUIRE_SYSTEM_TESTS=1).
"""

from __future__ import annotations

import io
import json
import os
import signal
import ssl
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest

from stream.live.overlay import PALETTE_RGB
from tests.conftest import require_system
from tests.stream.server.browser import (
    CHROMIUM,
    FACE_CLIP,
    ServerThread,
    chromium_args,
    convert_clip,
    missing_requirements,
    new_marker,
    running,
    wait_for,
)

pytestmark = pytest.mark.slow

# Seconds: model loading plus a scorer window on a busy 2-core machine.
SCORES_TIMEOUT_S = 150
CLEANUP_TIMEOUT_S = 45
CLIP_SIZE_PX = 480
CLIP_FPS = 15
CLIP_INSET = 0.12
TOKEN = "browser-test-token-0123456789"


@pytest.fixture(scope="module")
def requirements() -> None:
    require_system(str(CHROMIUM), reason="the browser tests need Debian's chromium")
    reason = missing_requirements()
    if reason is not None:
        pytest.skip(reason)


@pytest.fixture(scope="module")
def live_components(requirements: None, checkpoint_args: list[str]) -> Iterator[Any]:
    """The real models; the scorer is the shipped one, or (before it is committed) an untrained
    head from tests/stream/conftest.py: these tests check the server's mechanics, not accuracy."""
    from dataclasses import replace

    from stream.config import AppConfig, ModelConfig
    from stream.live.app import load_components

    config = AppConfig()
    if checkpoint_args:
        config = replace(config, model=ModelConfig(checkpoint=checkpoint_args[1]))
    components = load_components(config)
    yield components
    components.close()


@pytest.fixture(scope="module")
def face_y4m(requirements: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("camera") / "clip.y4m"
    # The face fills the source frame; the inset keeps its box's bottom edge off the frame's edge.
    return convert_clip(FACE_CLIP, target, size=CLIP_SIZE_PX, fps=CLIP_FPS, seconds=8, inset=CLIP_INSET)


def live_app(live_components: Any, **option_values: Any) -> Any:
    from stream.server.app import create_app
    from stream.server.live import model_info, source_openers
    from stream.server.options import ServerOptions
    from stream.server.peer import overlay_annotator

    return create_app(
        ServerOptions(
            port=0, token=TOKEN, allow_loopback_ice=True, idle_timeout_s=5.0, max_sessions=2, **option_values
        ),
        pipeline_factory=live_components.session_pipeline,
        annotate=overlay_annotator(live_components.threshold),
        sources=source_openers({"face-clip": str(FACE_CLIP)}, live_components.config.source),
        model=model_info(live_components),
    )


@pytest.fixture()
def server(live_components: Any) -> Iterator[ServerThread]:
    with running(live_app(live_components)) as thread:
        yield thread


@pytest.fixture()
def https_server(live_components: Any, tmp_path: Path) -> Iterator[ServerThread]:
    """The server over HTTPS with a certificate ``deepwatch serve --make-cert`` would write."""
    from stream.server.tls import server_ssl_context, write_self_signed

    files = write_self_signed(tmp_path / "tls", "127.0.0.1")
    context = server_ssl_context(str(files.cert_path), str(files.key_path))
    with running(live_app(live_components), context) as thread:
        yield thread


def get_json(url: str) -> Any:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})
    # The tests' own self-signed certificate: checked by the browser test, not here.
    context = ssl._create_unverified_context() if url.startswith("https:") else None
    with urllib.request.urlopen(request, timeout=10, context=context) as response:
        return json.load(response)


def wait_for_sessions(server: ServerThread, count: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while get_json(server.url + "healthz")["sessions_active"] != count:
        if time.monotonic() > deadline:
            raise AssertionError(f"sessions_active did not become {count} within {timeout_s} s")
        time.sleep(0.25)


def launch(playwright: Any, camera: Path | None, extra: tuple[str, ...] = ()) -> tuple[Any, str]:
    marker = new_marker()
    browser = playwright.chromium.launch(
        executable_path=str(CHROMIUM),
        headless=True,
        args=chromium_args(camera, marker, extra),
        timeout=60_000,
    )
    return browser, marker


def open_page(browser: Any, url: str, viewport: tuple[int, int] = (1280, 900)) -> Any:
    context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
    # The camera permission comes from the driver, as a user's click would grant it.
    context.grant_permissions(["camera"], origin=url.rstrip("/"))
    page = context.new_page()
    # The way a user opens a token-protected server; the page sends it with every API call.
    page.goto(f"{url}?token={TOKEN}")
    wait_for(page, "window.deepwatch !== undefined", 20, "the page script")
    assert "token" not in page.url, "the page keeps the token out of the address bar"
    wait_for(page, "window.deepwatch.state.authorized", 20, "the server to accept the token")
    return page


def ready_face(page: Any) -> dict[str, Any]:
    wait_for(
        page,
        "window.deepwatch.state.lastScores && window.deepwatch.state.lastScores.faces.some(f => f.ready)",
        SCORES_TIMEOUT_S,
        "a ready score for a tracked face",
    )
    message = page.evaluate("window.deepwatch.state.lastScores")
    return next(face for face in message["faces"] if face["ready"]) | {"_message": message}


def decode_png(png: bytes) -> np.ndarray:
    import cv2

    image = cv2.imdecode(np.frombuffer(png, dtype=np.uint8), cv2.IMREAD_COLOR)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def overlay_box_edges(
    screenshot: np.ndarray, box_xyxy: list[float], frame_size: tuple[int, int]
) -> list[str]:
    """Which edges of a face box the overlay drew near ``box_xyxy`` (frame pixels), found as long
    straight runs of the overlay's exact palette colours in the screenshot.

    The displayed frame may be a few frames older or newer than the message that reported the
    box, so each edge may sit within 15 % of the box size of the reported one.
    """
    # Scored colours only: the "not ready" grey is too close to ordinary walls and shadows.
    palette = np.array(PALETTE_RGB, dtype=np.float32)
    pixels = screenshot.astype(np.float32)
    distance = np.min(np.linalg.norm(pixels[:, :, None, :] - palette[None, None], axis=3), axis=2)
    mask = distance < 40
    height, width = mask.shape
    x1, y1, x2, y2 = (
        box_xyxy[0] * width / frame_size[0],
        box_xyxy[1] * height / frame_size[1],
        box_xyxy[2] * width / frame_size[0],
        box_xyxy[3] * height / frame_size[1],
    )
    slack_x, slack_y = 0.15 * (x2 - x1), 0.15 * (y2 - y1)
    columns, rows = mask.sum(axis=0), mask.sum(axis=1)

    def has_line(counts: np.ndarray, at: float, slack: float, length: float) -> bool:
        low, high = max(0, int(at - slack)), min(len(counts), int(at + slack) + 1)
        return bool(high > low and counts[low:high].max() >= 0.5 * length)

    edges = {
        "left": has_line(columns, x1, slack_x, y2 - y1),
        "right": has_line(columns, x2, slack_x, y2 - y1),
        "top": has_line(rows, y1, slack_y, x2 - x1),
        "bottom": has_line(rows, y2, slack_y, x2 - x1),
    }
    return [name for name, found in edges.items() if found]


def kill_browser(marker: str) -> int:
    """SIGKILL the browser process started with ``marker``: a peer vanishing without a goodbye."""
    for process in psutil.process_iter(["pid", "cmdline"]):
        cmdline = process.info["cmdline"] or []
        if f"--deepwatch-test-browser={marker}" in cmdline and not any(
            a.startswith("--type=") for a in cmdline
        ):
            os.kill(process.info["pid"], signal.SIGKILL)
            return int(process.info["pid"])
    raise AssertionError("the test browser process was not found")


def close_quietly(browser: Any) -> None:
    try:
        browser.close()
    except Exception:
        pass


# -- the tests ---------------------------------------------------------------------------


def test_camera_face_is_scored_over_https_and_the_page_shows_the_overlay_and_the_trust_note(
    https_server: ServerThread, face_y4m: Path, live_components: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    server = https_server
    assert server.url.startswith("https://127.0.0.1:")
    with sync_playwright() as playwright:
        # The certificate is self-signed: the browser is told to accept it, as a user would once.
        browser, _ = launch(playwright, face_y4m, ("--ignore-certificate-errors",))
        try:
            page = open_page(browser, server.url)
            assert page.evaluate("window.isSecureContext") is True and page.is_hidden("#insecure")
            model = get_json(server.url + "api/model")
            assert page.inner_text("#trust-note") == f"Model: {model['trust_note']}."
            assert model["threshold"] == pytest.approx(live_components.threshold)
            assert page.evaluate("window.deepwatch.chart.threshold") == pytest.approx(
                live_components.threshold
            )
            page.evaluate("window.deepwatch.startCamera()")
            face = ready_face(page)
            message = face.pop("_message")
            assert 0.0 <= face["p_fake"] <= 1.0
            assert face["verdict"] in ("REAL", "FAKE", "UNSURE") and face["confirmed"]
            assert face["frames_scored"] >= live_components.checkpoint.window_size
            assert (message["width"], message["height"]) == (CLIP_SIZE_PX, CLIP_SIZE_PX)
            # The face fills the middle of the clip.
            x1, y1, x2, y2 = face["box_xyxy"]
            assert 0 < x1 < CLIP_SIZE_PX / 2 < x2 and 0 < y1 < CLIP_SIZE_PX / 2 < y2, face["box_xyxy"]
            state = page.evaluate("window.deepwatch.state")
            assert state["scoresMessages"] >= 3 and state["facesSeen"] and not state["errors"]

            wait_for(
                page, "document.getElementById('remote-video').videoWidth > 0", 30, "the annotated video"
            )
            page.screenshot(path=str(tmp_path / "page.png"))
            video = decode_png(page.locator("#remote-video").screenshot())
            latest = page.evaluate("window.deepwatch.state.lastScores")
            boxes = [f["box_xyxy"] for f in latest["faces"] if f["confirmed"]] or [face["box_xyxy"]]
            found = max(
                (overlay_box_edges(video, box, (CLIP_SIZE_PX, CLIP_SIZE_PX)) for box in boxes), key=len
            )
            assert len(found) == 4, (
                f"the overlay's face box was not found in the screenshot, only edges {found}"
            )
            # The status panel the overlay draws top-left: dark, with white text, where the clip
            # itself shows a light wall.
            scale = video.shape[1] / CLIP_SIZE_PX
            corner = video[: int(20 * scale), : int(120 * scale)].astype(np.float32)
            assert np.median(corner) < 60 and (corner.min(axis=2) > 200).mean() > 0.02
            # Charted, with a row per face.
            assert page.locator("#faces tbody tr").count() >= 1
        finally:
            close_quietly(browser)
    wait_for_sessions(server, 0, CLEANUP_TIMEOUT_S)


def test_a_vanished_peer_is_cleaned_up_and_a_new_peer_is_served(server: ServerThread, face_y4m: Path) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser, marker = launch(playwright, face_y4m)
        try:
            page = open_page(browser, server.url)
            page.evaluate("window.deepwatch.startCamera()")
            wait_for(page, "window.deepwatch.state.scoresMessages >= 5", SCORES_TIMEOUT_S, "scores")
            assert get_json(server.url + "healthz")["sessions_active"] == 1
            kill_browser(marker)
        finally:
            close_quietly(browser)
        wait_for_sessions(server, 0, CLEANUP_TIMEOUT_S)
        assert get_json(server.url + "api/sessions")["sessions"] == []
        before = metric(server, "deepwatch_frames_processed_total")

        browser, _ = launch(playwright, face_y4m)
        try:
            page = open_page(browser, server.url)
            page.evaluate("window.deepwatch.startCamera()")
            face = ready_face(page)
            assert face["confirmed"] and 0.0 <= face["p_fake"] <= 1.0
            assert metric(server, "deepwatch_frames_processed_total") > before
            # The page's Stop button closes the session at once.
            page.evaluate("window.deepwatch.stop()")
            wait_for_sessions(server, 0, 10)
        finally:
            close_quietly(browser)


def test_a_shared_tab_showing_a_face_video_is_scored(
    server: ServerThread, requirements: None, tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    clip = convert_clip(FACE_CLIP, tmp_path / "face.webm", size=CLIP_SIZE_PX, fps=CLIP_FPS, seconds=8)
    with sync_playwright() as playwright:
        browser, _ = launch(playwright, None)
        try:
            # A small window keeps the captured frames (and detection) cheap on 2 cores.
            page = open_page(browser, server.url, viewport=(800, 560))
            # The video plays from the page's own origin, as a video call's tab would show it.
            page.route(
                "**/face-clip.webm", lambda route: route.fulfill(path=str(clip), content_type="video/webm")
            )
            page.evaluate(
                """() => new Promise((resolve, reject) => {
                    const video = document.createElement("video");
                    Object.assign(video, {src: "/face-clip.webm", muted: true, loop: true, autoplay: true});
                    video.id = "call-video";
                    video.style.width = "480px";
                    video.addEventListener("playing", () => resolve(), {once: true});
                    video.addEventListener("error", () => reject(new Error("the clip does not play")));
                    document.body.prepend(video);
                })"""
            )
            page.evaluate("window.deepwatch.startScreen({preferCurrentTab: true})")
            face = ready_face(page)
            message = face.pop("_message")
            assert face["confirmed"] and 0.0 <= face["p_fake"] <= 1.0
            # The frames are the tab (the viewport), not the clip: wider than the clip itself.
            assert message["width"] > CLIP_SIZE_PX
            track = page.evaluate(
                "window.deepwatch.state.localStream.getVideoTracks()[0].getSettings().displaySurface"
            )
            assert track == "browser"
        finally:
            close_quietly(browser)
    wait_for_sessions(server, 0, CLEANUP_TIMEOUT_S)


def test_a_server_side_source_picked_on_the_page_is_streamed_and_scored(server: ServerThread) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser, _ = launch(playwright, None)
        try:
            page = open_page(browser, server.url)
            wait_for(
                page, "document.querySelectorAll('#source-select option').length === 2", 20, "the sources"
            )
            page.select_option("#source-select", "face-clip")
            page.click("#watch-source")
            face = ready_face(page)
            message = face.pop("_message")
            assert face["confirmed"] and 0.0 <= face["p_fake"] <= 1.0
            # The clip's own size (480 x 480): the server read the file, not a browser capture.
            assert (message["width"], message["height"]) == (480, 480)
            wait_for(
                page, "document.getElementById('remote-video').videoWidth === 480", 30, "the source's video"
            )
            page.click("#stop")
            wait_for_sessions(server, 0, 10)
        finally:
            close_quietly(browser)


def metric(server: ServerThread, name: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    request = urllib.request.Request(server.url + "metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and not sample.labels:
                return float(sample.value)
    raise AssertionError(f"{name} not exported")


def test_png_helper_reads_what_cv2_writes() -> None:
    import cv2

    image = np.zeros((4, 6, 3), dtype=np.uint8)
    image[..., 0] = 255
    ok, png = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    assert ok
    assert decode_png(io.BytesIO(png.tobytes()).getvalue())[0, 0].tolist() == [255, 0, 0]
