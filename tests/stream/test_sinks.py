"""Sinks: JSONL events, the annotated video file, the JSON summary."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from stream.contracts import Event, Frame, FrameResult
from stream.sinks import EventsSink, VideoFileSink, write_summary
from stream.sinks.sink import close_sinks
from tests.stream.videos import count_frames


def frame_result(index, events=(), source_id="cam", size=(120, 160)):
    image = np.full((*size, 3), index % 255, dtype=np.uint8)
    return FrameResult(
        frame=Frame(image, index, index / 10, source_id), faces=(), events=tuple(events), timings_ms={}
    )


def test_events_sink_writes_one_json_object_per_event(tmp_path):
    path = tmp_path / "out" / "events.jsonl"
    sink = EventsSink(path)
    new = Event("track_new", "cam", 1, 0.5, 1700000000.0, {"box_xyxy": [1.0, 2.0, 3.0, 4.0]})
    update = Event("track_update", "cam", 1, 1.5, 1700000001.0, {"p_fake": 0.25, "verdict": "REAL"})
    end = Event("track_end", "cam", 1, 2.0, 1700000002.0, {"p_fake": math.nan, "frames": np.int64(20)})
    sink.write(frame_result(0, [new]), None)
    sink.write(frame_result(1, []), None)
    sink.write_events([update, end])
    sink.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["kind"] for line in lines] == ["track_new", "track_update", "track_end"]
    assert lines[0] == {
        "kind": "track_new",
        "source_id": "cam",
        "track_id": 1,
        "timestamp_s": 0.5,
        "wall_time": 1700000000.0,
        "data": {"box_xyxy": [1.0, 2.0, 3.0, 4.0]},
    }
    assert lines[2]["data"] == {"p_fake": None, "frames": 20}


def test_video_file_sink_writes_every_frame_of_its_source(tmp_path):
    path = tmp_path / "annotated.mp4"
    sink = VideoFileSink(path, fps=10)
    for i in range(12):
        result = frame_result(i)
        sink.write(result, result.frame.image)
        other = frame_result(i, source_id="other")
        sink.write(other, other.frame.image)
    sink.close()
    assert sink.frames_written == 12
    assert count_frames(path) == 12


def test_video_file_sink_rejects_unknown_extension(tmp_path):
    with pytest.raises(ValueError, match=r"video output must end in one of .*got 'x\.gif'"):
        VideoFileSink(tmp_path / "x.gif")


def test_summary_is_json_with_nan_as_null(tmp_path):
    path = tmp_path / "summary.json"
    write_summary(path, {"fps": math.nan, "tracks": [{"p_fake": np.float32(0.5)}], "n": np.int32(3)})
    assert json.loads(path.read_text()) == {"fps": None, "tracks": [{"p_fake": 0.5}], "n": 3}


def test_a_sink_that_fails_to_close_does_not_keep_the_others_open(caplog) -> None:
    closed = []

    class Recording:
        needs_annotated = False

        def __init__(self, name: str, fails: bool = False) -> None:
            self.name, self.fails = name, fails

        def close(self) -> None:
            closed.append(self.name)
            if self.fails:
                raise OSError("disk full")

    close_sinks([Recording("a"), Recording("b", fails=True), Recording("c")])
    assert closed == ["a", "b", "c"]
    assert "closing an output failed: disk full" in caplog.text
