"""``deepwatch run --show`` under a virtual X server: a screenshot shows the overlay."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

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


def start_xvfb(display: int) -> subprocess.Popen:
    server = subprocess.Popen(
        ["Xvfb", f":{display}", "-screen", "0", "1024x768x24", "-nolisten", "tcp"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    socket_path = Path(f"/tmp/.X11-unix/X{display}")
    deadline = time.monotonic() + 20
    while not socket_path.exists():
        assert server.poll() is None, f"Xvfb exited: {server.stderr.read() if server.stderr else ''}"
        assert time.monotonic() < deadline, "Xvfb did not start"
        time.sleep(0.1)
    return server


def free_display() -> int:
    for display in range(90, 140):
        if not Path(f"/tmp/.X11-unix/X{display}").exists() and not Path(f"/tmp/.X{display}-lock").exists():
            return display
    raise AssertionError("no free X display number")


@pytest.mark.slow
def test_window_shows_boxes_in_score_colours(tmp_path, checkpoint_args):
    require_system("Xvfb", "import", reason="the window test needs Xvfb and ImageMagick's import")
    video = tmp_path / "astronaut.mp4"
    write_demo_video(video, seconds=4.0, fps=10, width=640, height=480)
    baseline = palette_pixels(first_frame(video))
    events = tmp_path / "events.jsonl"
    display = free_display()
    xvfb = start_xvfb(display)
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

    display = free_display()
    xvfb = start_xvfb(display)
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
        xvfb.kill()
        xvfb.wait(timeout=10)
