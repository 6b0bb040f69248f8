"""The page in real headless Chromium against the real server with a fake pipeline (no models):
what it says about the model and its verdicts, its latency and drop figures, Stop, token errors,
and the message on a page that is not a secure context.

Needs Debian's ``chromium`` and the ``playwright`` Python package; Chromium's built-in fake camera
supplies the video. Skipped without them, failed under CI (DEEPWATCH_REQUIRE_SYSTEM_TESTS=1).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from stream.server.app import create_app
from stream.server.model_info import ModelInfo
from stream.server.options import ServerOptions
from stream.server.peer import overlay_annotator
from tests.conftest import require_system
from tests.stream.server.browser import (
    CHROMIUM,
    ServerThread,
    chromium_args,
    missing_requirements,
    new_marker,
    running,
    wait_for,
)
from tests.stream.server.fakes import PipelineRecorder

pytestmark = pytest.mark.slow

TOKEN = "page-test-token-0123456789"
MODEL = ModelInfo.from_checkpoint({"video_auc": 0.548, "videos": 69}, threshold=0.62, uncertain_margin=0.05)
# A name that is not localhost, mapped to 127.0.0.1 inside Chromium only: no lookup leaves it.
INSECURE_NAME = "deepwatch.test"


@pytest.fixture(scope="module")
def requirements() -> None:
    require_system(str(CHROMIUM), reason="the browser tests need Debian's chromium")
    reason = missing_requirements(face_clip=False)
    if reason is not None:
        pytest.skip(reason)


@pytest.fixture()
def server(requirements: None) -> Iterator[ServerThread]:
    app = create_app(
        ServerOptions(port=0, token=TOKEN, allow_loopback_ice=True, idle_timeout_s=5.0),
        pipeline_factory=PipelineRecorder(),
        annotate=overlay_annotator(MODEL.threshold),
        model=MODEL,
    )
    with running(app) as thread:
        yield thread


@pytest.fixture()
def browser(requirements: None) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=chromium_args(None, new_marker(), (f"--host-resolver-rules=MAP {INSECURE_NAME} 127.0.0.1",)),
            timeout=60_000,
        )
        try:
            yield browser
        finally:
            browser.close()


def new_page(browser: Any, origin: str, *, grant_camera: bool = True) -> Any:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    if grant_camera:
        context.grant_permissions(["camera"], origin=origin)
    return context.new_page()


def test_page_shows_the_models_verdict_rule_trust_note_latency_and_stop_clears_it(
    server: ServerThread, browser: Any
) -> None:
    page = new_page(browser, server.url.rstrip("/"))
    page.goto(f"{server.url}?token={TOKEN}")
    wait_for(page, "window.deepwatch && window.deepwatch.state.authorized", 20, "the token accepted")
    assert "token" not in page.url
    # The trust note and the verdict rule come from the checkpoint, before any score.
    assert page.inner_text("#trust-note") == (
        "Model: cross-validated video AUC 0.55 on 69 videos: treat scores as unreliable."
    )
    assert "trust-unreliable" in page.get_attribute("#trust-note", "class")
    rule = page.inner_text("#verdict-rule")
    assert rule == MODEL.verdict_rule
    assert "threshold 0.620" in rule and "REAL below 0.570" in rule and "FAKE from 0.670" in rule
    chart = page.evaluate("(c => [c.threshold, c.unsureLow, c.unsureHigh])(window.deepwatch.chart)")
    assert chart == pytest.approx([0.62, 0.57, 0.67])

    page.evaluate("window.deepwatch.startCamera()")
    wait_for(
        page,
        "window.deepwatch.state.lastScores && window.deepwatch.state.lastScores.faces.some(f => f.ready)"
        " && document.querySelectorAll('#faces tbody tr').length === 1",
        60,
        "a ready score in the table",
    )
    # The table shows the server's verdict, coloured by it.
    row = page.evaluate(
        """() => {
            const face = window.deepwatch.state.lastScores.faces[0];
            const cell = document.querySelector('#faces tbody tr td:nth-child(2)');
            return {verdict: face.verdict, text: cell.textContent, cls: cell.className};
        }"""
    )
    assert row["text"] == row["verdict"] and row["cls"] == f"verdict-{row['verdict']}"
    # Camera-to-screen from the browser's WebRTC statistics, with the server's share beside it.
    latency = wait_for(
        page,
        "(l => l && typeof l.totalMs === 'number' && l)(window.deepwatch.state.latency)",
        30,
        "a camera-to-screen latency",
    )
    assert 0 < latency["serverMs"] < latency["totalMs"] < 5000, latency
    assert latency["networkMs"] >= 0 and latency["receiveMs"] >= 0 and latency["sendMs"] >= 0
    # The line is redrawn with each scores message: wait for one drawn after the latency was known.
    drawn = "document.getElementById('stat-latency').textContent.includes(' ms (server ')"
    wait_for(page, drawn, 10, "the latency line with a figure")
    text = page.inner_text("#stat-latency")
    assert text.startswith("camera-to-screen ≈ ") and " ms (server " in text and text.endswith(" ms of it)")
    # A stats interval that lacks a part (no frame decoded, no nominated pair: it happens under
    # load) keeps that part's last measured value instead of blanking the figure.
    kept = page.evaluate(
        """import('/static/latency.js').then(m => {
            const last = {sendMs: 2, networkMs: 3, receiveMs: 4};
            return [
                m.keepLastKnown({sendMs: 1, networkMs: null, receiveMs: null}, last),
                m.keepLastKnown({sendMs: 1, networkMs: 5, receiveMs: 6}, last),
                m.keepLastKnown({sendMs: 1, networkMs: null, receiveMs: 6}, null),
            ];
        })"""
    )
    assert kept == [
        {"sendMs": 1, "networkMs": 3, "receiveMs": 4},
        {"sendMs": 1, "networkMs": 5, "receiveMs": 6},
        {"sendMs": 1, "networkMs": None, "receiveMs": 6},
    ]
    assert page.inner_text("#stat-analysis").startswith("scores ")
    assert "By design" in page.get_attribute("#stat-dropped", "title")
    assert page.evaluate("window.deepwatch.chart.live") is True

    page.click("#stop")
    wait_for(page, "window.deepwatch.state.pc === null", 10, "the session to stop")
    assert page.locator("#faces tbody tr").count() == 0
    assert page.evaluate("window.deepwatch.chart.live") is False
    assert page.evaluate("document.getElementById('remote-video').srcObject") is None
    assert page.is_hidden("#stats") and page.inner_text("#status") == "Stopped."


@pytest.mark.parametrize("query", ["", "?token=not-the-right-token-at-all"])
def test_without_the_right_token_the_page_says_how_to_fix_it_and_the_camera_stays_off(
    server: ServerThread, browser: Any, query: str
) -> None:
    page = new_page(browser, server.url.rstrip("/"))
    page.goto(f"{server.url}{query}")
    wait_for(page, "window.deepwatch && window.deepwatch.state.errors.length", 20, "the token error")
    error = page.inner_text("#error")
    expected = "this server needs its access token" if not query else "wrong access token"
    assert error.startswith(expected) and "/?token=YOUR_TOKEN" in error and "--token" in error
    assert page.is_disabled("#share-camera") and page.is_disabled("#share-screen")
    refused = page.evaluate("window.deepwatch.startCamera().then(() => 'started', e => e.message)")
    assert "has not accepted this page's access token" in refused
    assert page.evaluate("window.deepwatch.state.localStream") is None
    assert page.evaluate("window.deepwatch.state.authorized") is False


def test_plain_http_on_a_network_name_says_camera_sharing_needs_https(
    server: ServerThread, browser: Any
) -> None:
    origin = f"http://{INSECURE_NAME}:{server.port}"
    # Chromium itself refuses to grant the camera to such an origin.
    page = new_page(browser, origin, grant_camera=False)
    page.goto(f"{origin}/?token={TOKEN}")
    wait_for(page, "window.deepwatch && window.deepwatch.state.authorized", 20, "the token accepted")
    assert page.evaluate("window.isSecureContext") is False
    message = page.inner_text("#insecure")
    assert page.is_visible("#insecure")
    assert message.startswith(f"Camera and screen sharing need a secure page, and {origin} is not one")
    for option in ("--tls-cert FILE --tls-key FILE", "--make-cert DIR", "reverse proxy", "http://127.0.0.1"):
        assert option in message, option
    assert page.is_disabled("#share-camera") and page.is_disabled("#share-screen")
    refused = page.evaluate("window.deepwatch.startCamera().then(() => 'started', e => e.message)")
    assert refused == message
    assert page.evaluate("window.deepwatch.state.localStream") is None


def test_the_page_enrols_a_shrunk_photo_reports_a_faceless_one_and_forgets(
    browser: Any, tmp_path: Any
) -> None:
    import cv2
    import numpy as np

    from tests.stream.server.test_enrolment import RecordingEnrolment

    enrolment = RecordingEnrolment()
    app = create_app(
        ServerOptions(port=0, token=TOKEN, allow_loopback_ice=True),
        pipeline_factory=PipelineRecorder(),
        annotate=overlay_annotator(MODEL.threshold),
        model=MODEL,
        enrolment=enrolment,
    )
    # A camera-sized photo, far over the server's 64 KiB body limit as a PNG.
    rng = np.random.default_rng(0)
    ramp = np.linspace(40, 220, 1600, dtype=np.float32)[None, :, None]
    big = np.clip(ramp + rng.normal(0, 3, (1200, 1600, 3)), 0, 255).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "big photo.png"), big)
    cv2.imwrite(str(tmp_path / "wall.png"), np.zeros((300, 400, 3), np.uint8))
    assert (tmp_path / "big photo.png").stat().st_size > 64 * 1024
    with running(app) as server:
        page = new_page(browser, server.url.rstrip("/"))
        page.goto(f"{server.url}?token={TOKEN}")
        wait_for(page, "window.deepwatch && window.deepwatch.state.reference", 20, "the enrolment state")
        assert page.is_visible("#enrolment") and page.inner_text("#enrolled") == "Nobody enrolled."
        assert page.is_disabled("#forget-reference")
        page.set_input_files("#enrol-photo", str(tmp_path / "big photo.png"))
        wait_for(page, "(r => r && r.reference)(window.deepwatch.state.reference)", 20, "the enrolment")
        assert page.inner_text("#enrolled") == "Enrolled: big photo.png. Every face is compared with them."
        # The browser shrank it to 512 px on its longer side before sending it.
        assert enrolment.photos == [("big photo.png", (384, 512, 3))]
        page.set_input_files("#enrol-photo", str(tmp_path / "wall.png"))
        wait_for(page, "window.deepwatch.state.errors.length", 20, "the refusal")
        assert "cannot enrol wall.png: no face found in reference photo wall.png" in page.inner_text("#error")
        assert page.inner_text("#enrolled").startswith("Enrolled: big photo.png.")
        page.click("#forget-reference")
        wait_for(page, "!window.deepwatch.state.reference.reference", 20, "the person forgotten")
        assert page.inner_text("#enrolled") == "Nobody enrolled." and enrolment.reference is None


def level_clip(path: Any, levels: list[int], fps: int) -> Any:
    """A WebM/VP8 clip of flat grey frames, frame i at brightness ``levels[i]``."""
    import av
    import numpy as np

    with av.open(str(path), "w", format="webm") as output:
        stream = output.add_stream("libvpx", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        stream.bit_rate = 1_000_000
        for level in levels:
            image = np.full((240, 320, 3), level, np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
            for packet in stream.encode(frame):
                output.mux(packet)
        for packet in stream.encode():
            output.mux(packet)
    return path


def test_the_page_enrols_a_clip_from_its_first_frames_several_photos_and_the_shared_video(
    browser: Any, tmp_path: Any
) -> None:
    import cv2
    import numpy as np

    from tests.stream.server.test_enrolment import RecordingEnrolment

    enrolment = RecordingEnrolment()
    app = create_app(
        ServerOptions(port=0, token=TOKEN, allow_loopback_ice=True, idle_timeout_s=5.0),
        pipeline_factory=PipelineRecorder(),
        annotate=overlay_annotator(MODEL.threshold),
        model=MODEL,
        enrolment=enrolment,
    )
    # 3 s at 8 fps: frame i has brightness 0 (no "face") for i = 0, then 40 + 8 i; the page takes
    # frames 0, 2, 4, ... 14 (4 a second from the start) and sends them as JPEG stills.
    levels = [0] + [40 + 8 * index for index in range(1, 24)]
    clip = level_clip(tmp_path / "caller.webm", levels, fps=8)
    for name, level in (("front.png", 90), ("side.png", 150)):
        cv2.imwrite(str(tmp_path / name), np.full((600, 800, 3), level, np.uint8))
    enrolled = "(r => r && r.reference && r.reference.name)(window.deepwatch.state.reference)"
    with running(app) as server:
        page = new_page(browser, server.url.rstrip("/"))
        page.goto(f"{server.url}?token={TOKEN}")
        wait_for(page, "window.deepwatch && window.deepwatch.state.authorized", 20, "the token accepted")
        assert page.is_disabled("#enrol-live")  # nothing shared yet
        page.set_input_files("#enrol-photo", str(clip))
        wait_for(page, enrolled, 30, "the clip enrolled")
        assert page.inner_text("#enrolled") == (
            "Enrolled: caller.webm (7 frames). Every face is compared with them."
        )
        assert enrolment.photos == [("caller.webm", [(240, 320, 3)] * 8)]
        expected = [levels[2 * index] for index in range(8)]
        assert enrolment.levels[0] == pytest.approx(expected, abs=6), enrolment.levels
        # Several photos in one upload: each shrunk to 512 px and enrolled under its own name.
        page.set_input_files("#enrol-photo", [str(tmp_path / "front.png"), str(tmp_path / "side.png")])
        wait_for(page, f"{enrolled} === 'front.png, side.png'", 30, "the two photos enrolled")
        assert enrolment.photos[1:] == [("front.png", (384, 512, 3)), ("side.png", (384, 512, 3))]
        # The person on the shared camera: 8 frames of the next 2 s of it.
        page.evaluate("window.deepwatch.startCamera()")
        wait_for(page, "!document.getElementById('enrol-live').disabled", 30, "the live enrolment button")
        started = page.evaluate("performance.now()")
        page.click("#enrol-live")
        wait_for(page, f"({enrolled} || '').startsWith('shared video at ')", 30, "the shared video enrolled")
        took_s = (page.evaluate("performance.now()") - started) / 1000
        name, shapes = enrolment.photos[-1]
        assert name.startswith("shared video at ") and len(shapes) == 8
        assert shapes[0][1] == 512 and len(set(shapes)) == 1, shapes
        assert took_s >= 1.75, took_s  # seven waits of 250 ms between the frames
        assert page.inner_text("#enrolled").endswith("(8 frames). Every face is compared with them.")
        # A clip and a photo together, or a file the browser cannot read, say why.
        page.set_input_files("#enrol-photo", [str(clip), str(tmp_path / "front.png")])
        wait_for(page, "window.deepwatch.state.errors.length", 20, "the refusal")
        assert "enrol one clip, or up to 8 photos, at a time" in page.inner_text("#error")
        (tmp_path / "broken.webm").write_bytes(b"\x1aE\xdf\xa3 not a clip")
        page.set_input_files("#enrol-photo", str(tmp_path / "broken.webm"))
        wait_for(page, "window.deepwatch.state.errors.length === 2", 20, "the second refusal")
        assert "broken.webm is not a video this browser can play" in page.inner_text("#error")
        assert page.inner_text("#enrolled").startswith("Enrolled: shared video at ")


@pytest.mark.parametrize(
    ("reference_alerts", "said"),
    [
        (False, r"face 1 looks manipulated p\(fake\) 0\.\d\d$"),
        (True, r"face 1 does not match the enrolled person: head matches, face does not$"),
    ],
)
def test_the_alert_list_says_why_each_alert_fired(browser: Any, reference_alerts: bool, said: str) -> None:
    import re

    app = create_app(
        ServerOptions(port=0, token=TOKEN, allow_loopback_ice=True, idle_timeout_s=5.0),
        pipeline_factory=PipelineRecorder(alert_above=0.0, reference_alerts=reference_alerts),
        annotate=overlay_annotator(MODEL.threshold),
        model=MODEL,
    )
    with running(app) as server:
        page = new_page(browser, server.url.rstrip("/"))
        page.goto(f"{server.url}?token={TOKEN}")
        wait_for(page, "window.deepwatch && window.deepwatch.state.authorized", 20, "the token accepted")
        page.evaluate("window.deepwatch.startCamera()")
        wait_for(page, "document.querySelectorAll('#alerts li').length > 0", 60, "an alert in the list")
        text = page.inner_text("#alerts li")
        assert re.search(said, text), text


def test_the_enrolment_controls_stay_hidden_when_the_model_cannot_compare(
    server: ServerThread, browser: Any
) -> None:
    page = new_page(browser, server.url.rstrip("/"))
    page.goto(f"{server.url}?token={TOKEN}")
    wait_for(page, "window.deepwatch && window.deepwatch.state.reference", 20, "the enrolment state")
    assert page.evaluate("window.deepwatch.state.reference") == {"available": False, "reference": None}
    assert not page.is_visible("#enrolment")
