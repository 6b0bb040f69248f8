"""The run loop with fake stages: several sources share encoder batches; failures and stops."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from stream.live.pipeline import Pipeline
from stream.live.runner import Runner
from stream.sources import FrameReader, GrabbedImage, SourceError
from stream.sources.demo import DemoGrabber
from tests.stream.fakes import FixedRateScorer, RecordingEncoder, ScriptedDetector, ScriptedTracker, fake_crop

ONE_FACE = [(40.0, 30.0, 100.0, 100.0)]


class CollectingSink:
    def __init__(self, needs_annotated: bool = True) -> None:
        self.needs_annotated = needs_annotated
        self.results = []
        self.annotated = []
        self.events = []
        self.closed = False

    def write(self, result, annotated):
        self.results.append(result)
        self.annotated.append(annotated)

    def write_events(self, events):
        self.events.extend(events)

    def close(self):
        self.closed = True


def make_pipeline(encoder=None):
    return Pipeline(
        detector=ScriptedDetector(lambda call: ONE_FACE),
        tracker_factory=ScriptedTracker,
        crop=fake_crop,
        encoder=encoder or RecordingEncoder(),
        scorer_factory=lambda: FixedRateScorer(sample_rate_hz=100.0),
        detect_every_n_frames=1,
    )


def demo_source(name: str, frames: int = 10) -> FrameReader:
    return FrameReader(DemoGrabber(seconds=frames / 10, fps=10, width=160, height=120), source_id=name)


def test_two_sources_are_processed_together_and_share_encoder_batches():
    encoder = RecordingEncoder()
    sink = CollectingSink()
    outcome = Runner([demo_source("a"), demo_source("b")], make_pipeline(encoder), [sink]).run()
    assert outcome.stopped_by == "end" and outcome.errors == []
    by_source = {"a": 0, "b": 0}
    for result in sink.results:
        by_source[result.frame.source_id] += 1
    assert by_source == {"a": 10, "b": 10}
    # Each frame of each source had a face; frames of both sources met in one encoder call.
    assert sum(encoder.batch_sizes) == 20
    assert max(encoder.batch_sizes) == 2
    assert all(a is not None and a.shape == (120, 160, 3) for a in sink.annotated)
    assert [e.kind for e in sink.events].count("track_end") == 2  # one per source, at its end
    summary = outcome.summary
    assert [s["source_id"] for s in summary["sources"]] == ["a", "b"]
    assert summary["frames_processed"] == 20
    assert {(t["source_id"], t["track_id"]) for t in summary["tracks"]} == {("a", 1), ("b", 1)}
    assert sink.closed


def test_overlay_is_skipped_when_no_sink_needs_it():
    sink = CollectingSink(needs_annotated=False)
    Runner([demo_source("a", 3)], make_pipeline(), [sink]).run()
    assert sink.annotated == [None, None, None]


class FailingGrabber:
    live = False
    name = "failing"

    def __init__(self) -> None:
        self.count = 0

    def open(self):
        pass

    def grab(self):
        self.count += 1
        if self.count > 5:
            raise SourceError("failing: decoding failed after 5 frames")
        return GrabbedImage(np.zeros((120, 160, 3), dtype=np.uint8), self.count / 10)

    def close(self):
        pass

    def interrupt(self):
        pass


def test_a_failing_source_ends_the_run_with_its_error_and_a_summary():
    sink = CollectingSink()
    outcome = Runner([FrameReader(FailingGrabber())], make_pipeline(), [sink]).run()
    assert outcome.stopped_by == "error"
    assert outcome.errors == ["failing: decoding failed after 5 frames"]
    assert len(sink.results) == 5
    assert outcome.summary["sources"][0]["error"] == "failing: decoding failed after 5 frames"
    assert sink.closed


def test_stop_event_and_closed_window_end_the_run():
    stop = threading.Event()

    class StoppingSink(CollectingSink):
        def write(self, result, annotated):
            super().write(result, annotated)
            if len(self.results) == 3:
                stop.set()

    sink = StoppingSink()
    source = FrameReader(DemoGrabber(seconds=100, fps=10, width=160, height=120))
    outcome = Runner([source], make_pipeline(), [sink], stop_event=stop).run()
    assert outcome.stopped_by == "stop"
    assert len(sink.results) == 3

    class Window(CollectingSink):
        closed = False

        def write(self, result, annotated):
            super().write(result, annotated)
            self.closed = len(self.results) >= 2

    window = Window()
    source = FrameReader(DemoGrabber(seconds=100, fps=10, width=160, height=120))
    outcome = Runner([source], make_pipeline(), [window], window=window).run()
    assert outcome.stopped_by == "window"
    assert len(window.results) == 2


class UnopenableGrabber:
    name = "unopenable"
    live = False

    def open(self):
        raise SourceError("unopenable: no such device")

    def grab(self):
        raise AssertionError("never read")

    def close(self):
        pass

    def interrupt(self):
        pass


def test_a_source_failing_at_start_or_mid_run_is_reported_alone_while_the_others_go_on():
    sink = CollectingSink()
    sources = [
        FrameReader(UnopenableGrabber()),
        FrameReader(FailingGrabber()),
        demo_source("good", frames=20),
    ]
    outcome = Runner(sources, make_pipeline(), [sink]).run()
    assert outcome.stopped_by == "error"
    assert sorted(outcome.errors) == [
        "failing: decoding failed after 5 frames",
        "unopenable: no such device",
    ]
    by_source: dict[str, int] = {}
    for result in sink.results:
        by_source[result.frame.source_id] = by_source.get(result.frame.source_id, 0) + 1
    assert by_source == {"failing": 5, "good": 20}
    summary = {entry["source_id"]: entry for entry in outcome.summary["sources"]}
    assert summary["unopenable"]["error"] == "unopenable: no such device"
    assert summary["unopenable"]["frames_processed"] == 0
    assert summary["failing"]["error"] == "failing: decoding failed after 5 frames"
    assert summary["good"]["error"] is None and summary["good"]["frames_processed"] == 20
    assert summary["good"]["dropped_pct"] == 0.0
    assert summary["good"]["samples_shed"] == 0  # inline stages never shed


def test_no_source_opens_raises_the_first_error():
    with pytest.raises(SourceError, match="no such device"):
        Runner([FrameReader(UnopenableGrabber())], make_pipeline(), [CollectingSink()]).run()


class SlowGrabber:
    """A file-like input that takes ``delay_s`` per frame (a slow decoder or a stalled stream)."""

    name = "slow"
    live = False

    def __init__(self, frames: int, delay_s: float) -> None:
        self._left = frames
        self._delay_s = delay_s
        self._stop = threading.Event()

    def open(self):
        pass

    def grab(self):
        if self._left == 0 or self._stop.wait(self._delay_s):
            return None
        self._left -= 1
        return GrabbedImage(np.zeros((120, 160, 3), dtype=np.uint8), timestamp_s=(3 - self._left) / 10)

    def close(self):
        pass

    def interrupt(self):
        self._stop.set()


def test_a_slow_source_does_not_hold_up_the_others():
    sink = CollectingSink(needs_annotated=False)
    slow = FrameReader(SlowGrabber(frames=3, delay_s=0.5))
    fast = demo_source("fast", frames=60)
    outcome = Runner([slow, fast], make_pipeline(), [sink]).run()
    assert outcome.stopped_by == "end"
    order = [result.frame.source_id for result in sink.results]
    assert order.count("fast") == 60 and order.count("slow") == 3
    # The loop never waits on the slow source: while it takes 0.5 s per frame, several fast
    # frames go through (a loop that waited on each source in turn would alternate 1:1).
    runs = "".join("f" if source_id == "fast" else "s" for source_id in order).split("s")
    assert max(len(run) for run in runs) >= 2, order


def test_two_sources_with_one_id_are_refused_before_anything_runs() -> None:
    with pytest.raises(ValueError, match=r"source ids must be unique, got \['a', 'b', 'a'\]"):
        Runner([demo_source("a"), demo_source("b"), demo_source("a")], make_pipeline(), [])
