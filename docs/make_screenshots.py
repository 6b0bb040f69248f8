"""Screenshots of the ``deepwatch serve`` page for the README: a real and a fake session.

Both use the built-in demo scene (NASA's public-domain astronaut portrait, moving and zooming), so
no frame of ../shared/data ends up in the repository:

- real: the demo scene as it is;
- fake: the same scene with the face swapped for another person's (``stream.training.blends``'
  cross-person blend, as a live swapper pastes a face: a face of scikit-image's LFW subset warped
  onto the astronaut's landmarks, colour-matched, through a feathered mask); not a real deepfake.

The page is the real one, over HTTPS with a self-signed certificate, with the shipped model; the
videos are played as server-side sources. The astronaut photograph is enrolled through the page
first ("Enrol photos or a clip…"), so the table also compares each face with her. Needs Debian's chromium
and playwright (as the browser tests). Run: ``python docs/make_screenshots.py`` (about a minute on 2 cores).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from stream.config import AppConfig  # noqa: E402
from stream.live.app import load_components  # noqa: E402
from stream.server.app import create_app  # noqa: E402
from stream.server.live import (  # noqa: E402
    model_info,
    source_openers,
)
from stream.server.options import ServerOptions  # noqa: E402
from stream.server.peer import overlay_annotator  # noqa: E402
from stream.server.tls import server_ssl_context, write_self_signed  # noqa: E402
from stream.sources.demo import render_demo_frame  # noqa: E402
from stream.training import blends  # noqa: E402
from stream.training.evidence_data import largest_face  # noqa: E402
from stream.training.examples import packaged_faces  # noqa: E402
from tests.stream.server.browser import CHROMIUM, chromium_args, new_marker, running, wait_for  # noqa: E402

TOKEN = "screenshot-token-0123456789"
SIZE = (480, 360)
FPS = 15
SECONDS = 40
SLOW_MOTION = 0.15
VIEWPORT = {"width": 1180, "height": 700}


def write_clip(path: Path, fake: bool, detector: Any) -> None:
    width, height = SIZE
    _, sources = packaged_faces(1)
    source = sources[0]
    source_marks = largest_face(detector, source, 0.9, 8.0)
    if source_marks is None:
        raise SystemExit("no face found in the packaged LFW face")
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for index in range(SECONDS * FPS):
            # Slowed down, so the face keeps one track even when few frames/s are analysed.
            image = render_demo_frame(SLOW_MOTION * index / FPS, width, height)
            if fake:
                detections = detector.detect(image)
                if detections:
                    image, _ = blends.cross_person_blend(
                        image, detections[0].landmarks_5x2, source, source_marks, blends.VISIBLE_SWAP
                    )
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def shoot(page: Any, source: str, target: Path) -> dict[str, Any]:
    page.select_option("#source-select", source)
    page.click("#watch-source")
    wait_for(
        page,
        "window.deepwatch.state.lastScores && window.deepwatch.state.lastScores.faces.some(f => f.ready)"
        " && window.deepwatch.state.latency && window.deepwatch.state.latency.totalMs",
        240,
        "a ready score and a latency",
    )
    time.sleep(3)
    # The shot is taken right after a message with a ready score arrived.
    wait_for(
        page,
        "window.deepwatch.state.lastScores && window.deepwatch.state.lastScores.faces.some(f => f.ready)",
        60,
        "a ready score",
    )
    message = page.evaluate("window.deepwatch.state.lastScores")
    png = page.screenshot()
    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    # Fewer colours make a much smaller PNG; the page is flat colours and one video.
    image = (image // 8) * 8
    cv2.imwrite(str(target), image, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    page.click("#stop")
    wait_for(page, "window.deepwatch.state.pc === null", 20, "the session to stop")
    return message


def main() -> None:
    from playwright.sync_api import sync_playwright

    components = load_components(AppConfig())
    folder = Path(tempfile.mkdtemp())
    write_clip(folder / "real.mp4", False, components.detector)
    write_clip(folder / "fake.mp4", True, components.detector)
    files = write_self_signed(folder / "tls", "127.0.0.1")
    app = create_app(
        ServerOptions(port=0, token=TOKEN, allow_loopback_ice=True, max_sessions=1),
        pipeline_factory=components.session_pipeline,
        annotate=overlay_annotator(components.threshold),
        sources=source_openers(
            {"demo-real": str(folder / "real.mp4"), "demo-face-swapped": str(folder / "fake.mp4")},
            components.config.source,
        ),
        model=model_info(components),
        enrolment=components,
    )
    astronaut_photo = folder / "astronaut.png"
    cv2.imwrite(str(astronaut_photo), cv2.cvtColor(packaged_faces(1)[0], cv2.COLOR_RGB2BGR))
    context = server_ssl_context(str(files.cert_path), str(files.key_path))
    with running(app, context) as server, sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=chromium_args(None, new_marker(), ("--ignore-certificate-errors",)),
        )
        page = browser.new_context(viewport=VIEWPORT).new_page()
        page.goto(f"{server.url}?token={TOKEN}")
        wait_for(page, "window.deepwatch && window.deepwatch.state.authorized", 30, "the page")
        wait_for(page, "document.querySelectorAll('#source-select option').length === 3", 30, "sources")
        page.set_input_files("#enrol-photo", str(astronaut_photo))
        wait_for(page, "(r => r && r.reference)(window.deepwatch.state.reference)", 60, "the enrolment")
        for source, name in (("demo-real", "serve-real.png"), ("demo-face-swapped", "serve-fake.png")):
            message = shoot(page, source, REPO / "docs" / name)
            faces = [
                (f["verdict"], f["p_fake"], (f["reference"] or {}).get("verdict"))
                for f in message["faces"]
                if f["ready"]
            ]
            print(f"{name}: {faces}")
        browser.close()
    components.close()


if __name__ == "__main__":
    main()
