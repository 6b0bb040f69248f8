"""``deepwatch run --show`` under a virtual X server: a screenshot shows the overlay."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import time

import cv2
import numpy as np
import pytest

from stream.live.overlay import PALETTE_RGB
from tests.conftest import REPO_ROOT, require_system
from tests.stream.conftest import cli_command, interruptible, small_config
from tests.stream.videos import first_frame, write_demo_video

# The HUD's panel colour (stream.live.overlay._PANEL_RGB): dark grey behind the fps line.
HUD_PANEL_RGB = (20, 20, 20)


def palette_pixels(image_rgb: np.ndarray) -> int:
    """Pixels exactly equal to one of the overlay's score colours."""
    flat = image_rgb.reshape(-1, 3)
    matches = np.zeros(len(flat), dtype=bool)
    for colour in PALETTE_RGB:
        matches |= np.all(flat == np.array(colour, dtype=np.uint8), axis=1)
    return int(matches.sum())


def start_xvfb() -> tuple[subprocess.Popen, int]:
    """Start Xvfb on a display number it picks itself; returns it once it accepts connections.

    ``-displayfd``: Xvfb takes the first free display (atomically, by its lock file) and writes
    the number to the pipe only once it listens, so two test runs on one machine never share a
    server and no client connects before it is ready. ``-noreset``: by default an X server resets
    when its last client disconnects, and a client connecting during the reset gets "Cannot
    connect to display"; measured on the loaded 2-core machine, 61 of 300 connect-grab-disconnect
    rounds failed that way without it, 0 of 300 with it. That was the flake of the screen test,
    whose second ``open_source`` connects right after the first source's capture handle closed
    (3 of 20 such open-close-open rounds failed without it, 0 of 20 with it).
    """
    read_fd, write_fd = os.pipe()
    try:
        server = subprocess.Popen(
            [
                "Xvfb",
                "-displayfd",
                str(write_fd),
                "-noreset",
                "-screen",
                "0",
                "1024x768x24",
                "-nolisten",
                "tcp",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            pass_fds=(write_fd,),
        )
    finally:
        os.close(write_fd)
    # Read up to the newline: Xvfb writes the number and the newline separately and exits with
    # "Cannot write display number" if the pipe is closed in between.
    data = b""
    deadline = time.monotonic() + 20
    try:
        while not data.endswith(b"\n") and time.monotonic() < deadline:
            ready, _, _ = select.select([read_fd], [], [], max(0.0, deadline - time.monotonic()))
            chunk = os.read(read_fd, 64) if ready else b""
            if not chunk:
                break
            data += chunk
    finally:
        os.close(read_fd)
    number = data.decode().strip()
    if not number.isdigit():
        server.kill()
        _, stderr = server.communicate(timeout=10)
        raise AssertionError(f"Xvfb did not start within 20 s: {stderr.decode(errors='replace')}")
    return server, int(number)


@pytest.mark.slow
def test_window_shows_boxes_in_score_colours(tmp_path, checkpoint_args):
    require_system("Xvfb", "import", reason="the window test needs Xvfb and ImageMagick's import")
    video = tmp_path / "astronaut.mp4"
    write_demo_video(video, seconds=4.0, fps=10, width=640, height=480)
    baseline = palette_pixels(first_frame(video))
    events = tmp_path / "events.jsonl"
    xvfb, display = start_xvfb()
    environment = {**os.environ, "DISPLAY": f":{display}", "QT_QPA_PLATFORM": "xcb"}
    run = subprocess.Popen(
        cli_command(
            "run", str(video), "--loop", "--realtime", "--show",
            "--config", str(small_config(tmp_path)), *checkpoint_args, "--events", str(events),
        ),
        cwd=REPO_ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=interruptible,
    )  # fmt: skip
    screenshot = tmp_path / "screen.png"
    try:
        deadline = time.monotonic() + 300
        # Wait until a face has a score, so its box is drawn in a palette colour (not grey).
        while not (events.exists() and '"track_update"' in events.read_text()):
            assert run.poll() is None, run.communicate()
            assert time.monotonic() < deadline, "no scored face within 300 s"
            time.sleep(0.5)
        # Screenshots until one shows the overlay: on a loaded CPU the window may lag the events.
        drawn = 0
        for _ in range(20):
            time.sleep(1.0)
            subprocess.run(
                ["import", "-window", "root", str(screenshot)], env=environment, check=True, timeout=60
            )
            drawn = palette_pixels(
                cv2.cvtColor(cv2.imread(str(screenshot), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
            )
            if drawn > baseline + 300:
                break
        run.send_signal(signal.SIGINT)
        _, stderr = run.communicate(timeout=60)
    finally:
        for process in (run, xvfb):
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
    assert run.returncode == 0, stderr
    shot = cv2.cvtColor(cv2.imread(str(screenshot), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    assert shot.shape == (768, 1024, 3)
    # A box around a ~100 px face, 2 px thick, plus its filled label: well over 300 pixels.
    assert drawn > baseline + 300, (drawn, baseline)
    assert int(np.all(shot == np.array(HUD_PANEL_RGB, dtype=np.uint8), axis=2).sum()) > 500
    last_update = [json.loads(line) for line in events.read_text().splitlines() if '"track_update"' in line][
        -1
    ]
    assert last_update["data"]["verdict"] in ("REAL", "FAKE", "UNSURE")


def test_screen_region_source_under_xvfb(monkeypatch):
    require_system("Xvfb", reason="the screen-capture test needs Xvfb")
    from stream.sources import SourceError, open_source

    xvfb, display = start_xvfb()
    try:
        monkeypatch.setenv("DISPLAY", f":{display}")
        source = open_source("screen:10,20,320,240")
        with source:
            assert source.live
            frame = source.read(10.0)
        assert frame is not None
        assert frame.image.shape == (240, 320, 3) and frame.image.dtype == np.uint8
        assert frame.source_id == "screen:10,20,320,240"
        with pytest.raises(SourceError, match="lies outside the screen, which is 1024x768"):
            open_source("screen:900,700,320,240").start()
    finally:
        xvfb.terminate()  # lets Xvfb remove its lock file and socket
        xvfb.wait(timeout=10)
