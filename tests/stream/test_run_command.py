"""``deepwatch run`` end to end with the real detector, tracker, encoder and a scorer checkpoint."""

from __future__ import annotations

import json

import pytest

from stream.contracts import VERDICTS
from tests.stream.conftest import assert_clean_failure, run_cli, run_cli_until, small_config
from tests.stream.videos import count_frames, write_demo_video


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_run_on_a_generated_video_writes_all_outputs(tmp_path, checkpoint_args):
    video = tmp_path / "astronaut.mp4"
    written = write_demo_video(video, seconds=3.0, fps=10, width=320, height=240)
    out, events, summary = tmp_path / "annotated.mp4", tmp_path / "events.jsonl", tmp_path / "summary.json"
    completed = run_cli(
        "run", str(video), "--config", str(small_config(tmp_path)), *checkpoint_args,
        "--out", str(out), "--events", str(events), "--summary", str(summary),
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    report = json.loads(summary.read_text())
    assert report["stopped_by"] == "end"
    assert report["frames_processed"] == written == 30
    assert report["sources"] == [
        {
            "source_id": "astronaut.mp4",
            "live": False,
            "frames_read": 30,
            "frames_processed": 30,
            "frames_dropped": 0,
            "dropped_pct": 0.0,
            "samples_shed": 0,
            "error": None,
        }
    ]
    # One real face: one track, confirmed within the first detections, sampled at ~8 Hz.
    assert len(report["tracks"]) == 1
    track = report["tracks"][0]
    assert track["frames"] >= 20
    sample_rate_hz = report["model"]["sample_rate_hz"]
    assert track["frames_scored"] >= 0.7 * sample_rate_hz * track["frames"] / 10
    assert track["verdict"] in VERDICTS
    assert set(report["stage_latency_ms"]) >= {"detect", "track", "crop", "encode", "score", "total"}
    lines = read_jsonl(events)
    kinds = [line["kind"] for line in lines]
    assert kinds[0] == "track_new" and kinds[-1] == "track_end"
    assert set(kinds) <= {"track_new", "track_update", "alert", "track_end"}
    assert lines[-1]["data"]["frames"] == track["frames"]
    assert all(line["source_id"] == "astronaut.mp4" and line["track_id"] == 1 for line in lines)
    timestamps = [line["timestamp_s"] for line in lines]
    assert timestamps == sorted(timestamps)
    assert count_frames(out) == 30
    assert f"track astronaut.mp4/1: {track['verdict']}" in completed.stdout


@pytest.mark.slow
def test_run_on_a_real_clip(tmp_path, data_dir, checkpoint_args):
    clip = data_dir / "real" / "retalking_face1.mp4"
    summary = tmp_path / "summary.json"
    completed = run_cli(
        "run", str(clip), "--config", str(small_config(tmp_path)), *checkpoint_args, "--summary", str(summary)
    )
    assert completed.returncode == 0, completed.stderr
    report = json.loads(summary.read_text())
    assert report["frames_processed"] == 135
    tracks = [t for t in report["tracks"] if t["frames"] >= 30]
    assert len(tracks) == 1  # one talking head
    # 135 frames at 30 fps = 4.5 s at the scorer's rate: enough for a full window.
    assert tracks[0]["frames_scored"] >= report["model"]["window_size"]
    assert tracks[0]["ready"] and tracks[0]["p_fake"] is not None
    assert tracks[0]["verdict"] in VERDICTS


@pytest.mark.parametrize(
    ("make_source", "pattern"),
    [
        (lambda tmp: str(tmp / "missing.mp4"), r"no such file or folder: .*missing\.mp4"),
        (
            lambda tmp: "ftp://user:hunter2@host/cam",
            r"unsupported URL scheme 'ftp' in ftp://user:\*\*\*@host/cam",
        ),
        (
            lambda tmp: "rtsp://admin:hunter2@127.0.0.1:9/live",
            r"cannot open stream rtsp://admin:\*\*\*@127\.0\.0\.1:9/live",
        ),
        (lambda tmp: "screen:0,0,10", r"bad screen source"),
    ],
)
def test_bad_sources_fail_cleanly(tmp_path, make_source, pattern):
    completed = run_cli("run", make_source(tmp_path), timeout_s=120)
    assert_clean_failure(completed, pattern)
    assert "hunter2" not in completed.stderr + completed.stdout
    assert completed.returncode == 1


def test_corrupt_video_fails_cleanly(tmp_path):
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40)
    assert_clean_failure(
        run_cli("run", str(corrupt), timeout_s=120), r"cannot open video file .*corrupt\.mp4"
    )


def test_truncated_video_without_index_fails_cleanly(tmp_path):
    whole = tmp_path / "whole.mp4"
    write_demo_video(whole, seconds=2.0)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    assert_clean_failure(run_cli("run", str(cut), timeout_s=120), r"cut\.mp4.*truncated")


@pytest.mark.slow
def test_truncated_playable_video_ends_with_summary_and_error(tmp_path, checkpoint_args):
    whole = tmp_path / "whole.mp4"
    write_demo_video(whole, seconds=3.0, fps=10, faststart=True)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    summary = tmp_path / "summary.json"
    completed = run_cli(
        "run", str(cut), "--config", str(small_config(tmp_path)), *checkpoint_args, "--summary", str(summary)
    )
    assert_clean_failure(completed, r"cut\.mp4: truncated: decoded \d+ of the 30 frames")
    report = json.loads(summary.read_text())
    assert report["stopped_by"] == "error"
    assert 0 < report["frames_processed"] < 30
    assert "truncated" in report["sources"][0]["error"]


def test_bad_config_fails_cleanly_naming_key_and_file(tmp_path):
    config = tmp_path / "mine.yaml"
    config.write_text("pipeline:\n  treshold: 0.5\n")
    completed = run_cli("run", "--config", str(config), timeout_s=120)
    assert_clean_failure(completed, r"mine\.yaml: unknown key 'pipeline\.treshold'")
    assert completed.returncode == 2


def test_missing_checkpoint_fails_cleanly(tmp_path):
    completed = run_cli("run", "demo:1", "--checkpoint", str(tmp_path / "none.pt"), timeout_s=300)
    assert_clean_failure(completed, r"checkpoint file not found: .*none\.pt")


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_with_summary(tmp_path, checkpoint_args):
    video = tmp_path / "loop.mp4"
    write_demo_video(video, seconds=2.0, fps=10, width=320, height=240)
    events, summary = tmp_path / "events.jsonl", tmp_path / "summary.json"
    completed = run_cli_until(
        "run", str(video), "--loop", "--realtime", "--config", str(small_config(tmp_path)), *checkpoint_args,
        "--events", str(events), "--summary", str(summary),
        ready=lambda: events.exists() and "track_new" in events.read_text(),
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    assert "Traceback" not in completed.stderr
    report = json.loads(summary.read_text())
    assert report["stopped_by"] == "interrupt"
    assert len(report["tracks"]) == 1 and report["tracks"][0]["frames"] > 0
    assert read_jsonl(events)[-1]["kind"] == "track_end"


@pytest.mark.slow
def test_alerts_reach_the_webhook(tmp_path, checkpoint_args):
    import http.server
    import threading

    received: list[dict] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    video = tmp_path / "astronaut.mp4"
    write_demo_video(video, seconds=3.0, fps=10, width=320, height=240)
    # A threshold every score passes, with no sustain: the first ready score alerts, whatever
    # the model thinks of the face.
    config = small_config(
        tmp_path,
        "alerts:\n  threshold: 0.000001\n  hysteresis: 0.0\n  sustain_s: 0.0\n"
        f"  webhook_url: http://hook:pw@127.0.0.1:{server.server_address[1]}/alerts\n",
    )
    events = tmp_path / "events.jsonl"
    try:
        completed = run_cli(
            "run", str(video), "--config", str(config), *checkpoint_args, "--events", str(events)
        )
    finally:
        server.shutdown()
        server.server_close()
    assert completed.returncode == 0, completed.stderr
    alerts = [line for line in read_jsonl(events) if line["kind"] == "alert"]
    assert len(alerts) == 1  # fired once, never re-armed (no score falls below the threshold)
    assert received == alerts
    assert "pw@" not in completed.stderr
