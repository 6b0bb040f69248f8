"""A real RTSP camera on loopback (GStreamer's RTSP server): the run scores it, survives the
server being killed and restarted mid-stream, and never logs the password."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, require_system
from tests.stream.conftest import cli_command, interruptible, small_config

SYSTEM_PYTHON = "/usr/bin/python3"
SERVER_SCRIPT = Path(__file__).with_name("rtsp_server.py")
# A 33 s real talking-head clip: long enough to outlive the test's kill and restart.
CLIP = "real/liveportrait_d6.mp4"
PASSWORD = "s3cret-pw"


def require_rtsp_server() -> None:
    require_system(SYSTEM_PYTHON, reason="the RTSP test drives GStreamer's RTSP server with Debian's python3")
    probe = subprocess.run(
        [
            SYSTEM_PYTHON,
            "-c",
            "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer",
        ],
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        message = "GStreamer RTSP server bindings missing"
        message += " (apt: gir1.2-gst-rtsp-server-1.0 python3-gi gstreamer1.0-*)"
        if os.environ.get("DEEPWATCH_REQUIRE_SYSTEM_TESTS") == "1":
            pytest.fail(f"{message}: {probe.stderr.strip()}")
        pytest.skip(message)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_server(port: int, clip: Path) -> subprocess.Popen:
    server = subprocess.Popen(
        [SYSTEM_PYTHON, str(SERVER_SCRIPT), "--port", str(port), "--path", "/live", "--file", str(clip)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    line = server.stdout.readline()
    assert line.startswith("READY"), (
        f"RTSP server did not start: {line!r} {server.stderr.read() if server.stderr else ''}"
    )
    return server


def events_since(path: Path, wall_time: float, kind: str) -> list[dict]:
    if not path.exists():
        return []
    events = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [e for e in events if e["kind"] == kind and e["wall_time"] >= wall_time]


def wait_for(predicate, timeout_s: float, process: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        assert process.poll() is None, f"the run exited while waiting for {what}: {process.communicate()}"
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


@pytest.mark.slow
def test_rtsp_stream_is_scored_and_survives_a_server_restart(tmp_path, data_dir, checkpoint_args):
    require_rtsp_server()
    clip = data_dir / CLIP
    port = free_port()
    url = f"rtsp://viewer:{PASSWORD}@127.0.0.1:{port}/live"
    events, summary = tmp_path / "events.jsonl", tmp_path / "summary.json"
    config = small_config(
        tmp_path,
        "source:\n  open_timeout_s: 10\n  read_timeout_s: 2\n"
        "  reconnect_initial_backoff_s: 0.5\n  reconnect_max_backoff_s: 2\n",
    )
    server = start_server(port, clip)
    run = subprocess.Popen(
        cli_command(
            "run",
            url,
            "--config",
            str(config),
            *checkpoint_args,
            "--events",
            str(events),
            "--summary",
            str(summary),
        ),
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=interruptible,
    )
    try:
        started = time.time()
        wait_for(
            lambda: events_since(events, started, "track_update"),
            300,
            run,
            "a scored face before the restart",
        )

        # Kill the camera hard mid-stream, leave it down for a while, then bring it back.
        server.kill()
        server.wait(timeout=10)
        time.sleep(4)
        restarted = time.time()
        server = start_server(port, clip)
        wait_for(
            lambda: events_since(events, restarted, "track_update"), 300, run, "scoring after the restart"
        )

        run.send_signal(signal.SIGINT)
        try:
            stdout, stderr = run.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            run.kill()
            stdout, stderr = run.communicate(timeout=10)
            pytest.fail(f"deepwatch run did not stop within 60 s of SIGINT; its log ends:\n{stderr[-3000:]}")
    finally:
        for process in (run, server):
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
    assert run.returncode == 0, stderr
    assert "Traceback" not in stderr
    # The loss and the reconnection are logged, with the password removed everywhere.
    assert f"lost rtsp://viewer:***@127.0.0.1:{port}/live" in stderr
    assert f"reconnected to rtsp://viewer:***@127.0.0.1:{port}/live" in stderr
    assert PASSWORD not in stderr + stdout + events.read_text() + summary.read_text()
    report = json.loads(summary.read_text())
    assert report["stopped_by"] == "interrupt"
    source = report["sources"][0]
    assert source["live"] and source["error"] is None
    assert source["source_id"] == f"rtsp://viewer:***@127.0.0.1:{port}/live"
    assert report["frames_processed"] >= 10
    # Every frame read was processed or counted as dropped, except the newest waiting in the slot
    # and the one in the pipeline when Ctrl-C arrived.
    assert source["frames_read"] - report["frames_processed"] - source["frames_dropped"] in (0, 1, 2)
    assert report["capture_to_output_ms"]["p50"] is not None
    assert any(track["frames_scored"] > 0 for track in report["tracks"])
