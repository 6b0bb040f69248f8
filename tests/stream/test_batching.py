"""Cross-stream batching, load shedding and fairness with fake stages (stream.live.batching,
stream.live.shedding, the threaded Pipeline)."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence

import numpy as np
import pytest

from engine.score import Score
from stream.contracts import Frame
from stream.live.batching import MAX_WAITING_SAMPLES, BatchWorker, ScoreRequest, SharedStages, WorkerError
from stream.live.pipeline import Pipeline
from stream.live.shedding import CALM_WINDOWS, WINDOW_S, LoadShedder, ShedLevel, shed_levels
from tests.stream.fakes import RecordingEncoder, ScriptedDetector, ScriptedTracker
from tracking.track import Track

FPS = 30.0
ONE_FACE = [(100.0, 100.0, 200.0, 220.0)]
TWO_FACES = [(100.0, 100.0, 200.0, 220.0), (400.0, 100.0, 500.0, 220.0)]
# Deadline for results of the worker threads to come back; never reached when things work.
_WAIT_S = 20.0


def stream_frame(source_id: str, fill: int, index: int) -> Frame:
    image = np.full((480, 640, 3), fill, dtype=np.uint8)
    return Frame(image=image, index=index, timestamp_s=index / FPS, source_id=source_id)


def fill_crop(image: np.ndarray, tracks: Sequence[Track]) -> np.ndarray:
    """One crop per track filled with the frame's fill value plus the track id, so a crop says
    which stream and which track it came from."""
    crops = np.zeros((len(tracks), 160, 160, 3), dtype=np.uint8)
    for i, track in enumerate(tracks):
        crops[i] = int(image[0, 0, 0]) + track.track_id
    return crops


class EchoScorer:
    """p_fake = the crop's fill value / 100 (RecordingEncoder puts it in the embedding), ready at
    once; records the ids of every call, and forgets."""

    sample_rate_hz = 10.0

    def __init__(self) -> None:
        self.calls: list[list[int]] = []
        self.forgotten: list[int] = []

    def update_many(self, items):
        self.calls.append([track_id for track_id, _, _ in items])
        return [
            Score(track_id, float(embedding[0] / embedding[1]) / 100.0, 1, timestamp_s, True, math.nan)
            for track_id, embedding, timestamp_s in items
        ]

    def forget(self, track_id: int) -> None:
        self.forgotten.append(track_id)


def make_stages(detector=None, encoder=None, scorer=None, levels=None):
    return SharedStages(
        detector=detector or ScriptedDetector(lambda call: TWO_FACES),
        encoder=encoder or RecordingEncoder(),
        scorer=scorer or EchoScorer(),
        levels=levels,
        detect_every_n_frames=1,
    )


def make_pipeline(stages, every=1):
    return Pipeline(
        stages=stages, tracker_factory=ScriptedTracker, crop=fill_crop, detect_every_n_frames=every
    )


STREAMS = {"a": 10, "b": 40, "c": 70}


def expected_p_fake(source_id: str, track_id: int) -> float:
    return (STREAMS[source_id] + track_id) / 100.0


def test_crops_from_three_streams_share_one_encoder_call_and_reach_their_own_track():
    encoder = RecordingEncoder()
    detector = ScriptedDetector(lambda call: TWO_FACES)
    scorer = EchoScorer()
    pipeline = make_pipeline(make_stages(detector, encoder, scorer))
    results = pipeline.process_batch([stream_frame(name, fill, 0) for name, fill in STREAMS.items()])
    assert detector.batch_sizes == [3]  # one MTCNN call for the three streams' frames
    assert encoder.batch_sizes == [6]  # 3 streams x 2 faces in one encoder call
    assert len(scorer.calls) == 1 and len(set(scorer.calls[0])) == 6  # one scorer batch, 6 distinct ids
    for result in results:
        assert {face.track_id: face.p_fake for face in result.faces} == pytest.approx(
            {1: expected_p_fake(result.frame.source_id, 1), 2: expected_p_fake(result.frame.source_id, 2)}
        )


def test_threaded_stages_batch_across_streams_and_route_results_back():
    encoder = RecordingEncoder()
    stages = make_stages(encoder=encoder)
    pipeline = make_pipeline(stages)
    stages.start()
    try:
        seen: dict[tuple[str, int], float] = {}
        deadline = time.monotonic() + _WAIT_S
        index = 0
        while len(seen) < 6 and time.monotonic() < deadline:
            for result in pipeline.process_batch(
                [stream_frame(n, fill, index) for n, fill in STREAMS.items()]
            ):
                for face in result.faces:
                    if face.ready:
                        seen[(result.frame.source_id, face.track_id)] = face.p_fake
            index += 1
            time.sleep(0.005)
    finally:
        stages.stop()
    assert seen == pytest.approx({(name, t): expected_p_fake(name, t) for name in STREAMS for t in (1, 2)})
    assert max(encoder.batch_sizes) > 2  # crops of more than one stream in one call


def test_frames_never_wait_for_a_blocked_encoder_and_stale_samples_are_shed():
    release = threading.Event()
    started = threading.Event()

    class BlockedEncoder(RecordingEncoder):
        def encode(self, crops):
            started.set()
            release.wait(_WAIT_S)
            return super().encode(crops)

    stages = make_stages(encoder=BlockedEncoder())
    pipeline = make_pipeline(stages)
    stages.start()
    try:
        index = 0
        deadline = time.monotonic() + _WAIT_S
        while not started.is_set() and time.monotonic() < deadline:
            pipeline.process(stream_frame("a", 10, index))
            index += 1
            time.sleep(0.005)
        assert started.is_set()
        # The encoder is stuck on the first batch: every later frame still comes back at once,
        # without scores, and each track keeps at most MAX_WAITING_SAMPLES samples waiting.
        results = [pipeline.process(stream_frame("a", 10, i)) for i in range(index, index + 30)]
        assert all(len(r.faces) == 2 and not any(f.ready for f in r.faces) for r in results)
        assert stages.scoring.shed > 0
        assert stages.scoring.waiting == 2 * MAX_WAITING_SAMPLES
        assert stages.describe()["samples_shed"] == stages.scoring.shed
    finally:
        release.set()
        stages.stop()


def test_a_worker_failure_is_raised_in_the_pipeline_thread():
    class BrokenEncoder(RecordingEncoder):
        def encode(self, crops):
            raise RuntimeError("device lost")

    stages = make_stages(encoder=BrokenEncoder())
    pipeline = make_pipeline(stages)
    stages.start()
    try:
        with pytest.raises(WorkerError, match="scoring worker failed: device lost"):
            deadline = time.monotonic() + _WAIT_S
            index = 0
            while time.monotonic() < deadline:
                pipeline.process(stream_frame("a", 10, index))
                index += 1
                time.sleep(0.005)
    finally:
        stages.stop()


def test_every_pending_key_runs_in_the_next_batch_so_no_stream_starves():
    batches: list[list[str]] = []

    def run_batch(batch):
        batches.append([key for key, _ in batch])
        return [item for _, item in batch]

    worker: BatchWorker[int, int] = BatchWorker("test", run_batch)
    # A busy stream with many faces, and a quiet one with one face, ask at once.
    for face in range(20):
        worker.submit(f"busy-{face}", face)
    worker.submit("quiet-0", 0)
    assert worker.run_pending() == 21
    assert "quiet-0" in batches[0]
    # The busy stream asks again (replacing its waiting requests) before the next batch: still
    # one request per key, the quiet stream's included.
    worker.submit("quiet-0", 1)
    for repeat in range(3):
        for face in range(20):
            worker.submit(f"busy-{face}", repeat)
    assert worker.shed == 40
    worker.run_pending()
    assert len(batches[1]) == 21 and "quiet-0" in batches[1]
    assert worker.take("quiet-0").value == 1  # the newest request of the key
    assert worker.take("quiet-0") is None  # taken once


def test_shed_levels_degrade_detection_interval_first_then_sampling_rate():
    levels = shed_levels(3, 3, 8.0, 4.0)
    assert [(level.detect_every_n_frames, level.sample_rate_hz) for level in levels] == [
        (3, 8.0),
        (6, 8.0),
        (9, 8.0),
        (9, 6.0),
        (9, 4.0),
    ]
    with pytest.raises(ValueError, match="min_sample_rate_hz"):
        shed_levels(3, 3, 8.0, 9.0)


class FakeClock:
    def __init__(self) -> None:
        self.now_s = 0.0

    def __call__(self) -> float:
        return self.now_s


def test_shedder_goes_down_when_behind_and_back_up_only_after_calm_windows():
    clock = FakeClock()
    shedder = LoadShedder(shed_levels(3, 3, 8.0, 4.0), clock=clock)

    def window(score_turnaround_s: float, detect_turnaround_s: float = 0.01, shed: int = 0) -> ShedLevel:
        for _ in range(shed):
            shedder.observe_shed()
        shedder.observe_detection(detect_turnaround_s)
        clock.now_s += WINDOW_S
        shedder.observe_scoring(score_turnaround_s)
        return shedder.current

    # Scoring takes longer than a sample period (0.125 s at 8 Hz): one level down per window.
    assert [window(0.3).level for _ in range(6)] == [1, 2, 3, 4, 4, 4]
    assert shedder.current == ShedLevel(4, 9, 4.0)
    # Calm (well under half of the 0.25 s period at 4 Hz): back one level per CALM_WINDOWS windows.
    levels = [window(0.01).level for _ in range(2 * CALM_WINDOWS)]
    assert levels == [4] * (CALM_WINDOWS - 1) + [3] + [3] * (CALM_WINDOWS - 1) + [2]
    # A shed sample counts as behind. With detection slow but scoring calm, the sampling rate
    # comes back (level 3 -> 2) while the detection interval stays stretched (level 2 is kept).
    assert window(0.01, shed=1).level == 3
    slow_detection = [window(0.01, detect_turnaround_s=0.5).level for _ in range(CALM_WINDOWS + 2)]
    assert slow_detection == [3] * (CALM_WINDOWS - 1) + [2, 2, 2]


def test_a_slow_detector_only_stretches_the_detection_interval():
    clock = FakeClock()
    shedder = LoadShedder(shed_levels(3, 3, 8.0, 4.0), clock=clock)
    levels = []
    for _ in range(5):
        shedder.observe_detection(0.5)
        clock.now_s += WINDOW_S
        shedder.observe_scoring(0.01)
        levels.append((shedder.current.detect_every_n_frames, shedder.current.sample_rate_hz))
    assert levels == [(6, 8.0), (9, 8.0), (9, 8.0), (9, 8.0), (9, 8.0)]


def test_threaded_pipeline_follows_the_shed_level():
    detector = ScriptedDetector(lambda call: ONE_FACE)
    levels = [ShedLevel(0, 1, 10.0), ShedLevel(1, 4, 5.0)]
    stages = make_stages(detector=detector, levels=levels)
    pipeline = make_pipeline(stages)
    stages.shedder._index = 1  # as if the machine had fallen behind
    stages.start()
    try:
        for index in range(40):
            pipeline.process(stream_frame("a", 10, index))
            deadline = time.monotonic() + _WAIT_S
            # Let every detection come back before the next frame, so only the level decides.
            while stages.detection.items < stages.detection.submitted and time.monotonic() < deadline:
                time.sleep(0.001)
    finally:
        stages.stop()
    assert stages.detection.items == 10  # every 4th of 40 frames


def test_pipelines_of_two_sessions_share_the_encoder_batch_and_never_mix_results():
    release = threading.Event()
    first_batch = threading.Event()

    class GatedEncoder(RecordingEncoder):
        def __init__(self):
            super().__init__()
            self.fills: list[set[int]] = []

        def encode(self, crops):
            self.fills.append({int(value) for value in crops[:, 0, 0, 0]})
            first_batch.set()
            release.wait(_WAIT_S)
            return super().encode(crops)

    encoder = GatedEncoder()
    stages = make_stages(encoder=encoder)
    # Two browser sessions whose sources even share a name: their keys still differ.
    session_a, session_b = make_pipeline(stages), make_pipeline(stages)
    stages.start()
    try:
        index = 0
        deadline = time.monotonic() + _WAIT_S
        while not first_batch.is_set() and time.monotonic() < deadline:
            session_a.process(stream_frame("cam", 10, index))
            index += 1
            time.sleep(0.005)
        # The encoder holds session A's first batch; both sessions' next crops wait together.
        while stages.scoring.waiting_keys < 4 and time.monotonic() < deadline:
            session_a.process(stream_frame("cam", 10, index))
            session_b.process(stream_frame("cam", 40, index))
            index += 1
            time.sleep(0.005)
        release.set()
        ready: dict[tuple[str, int], float] = {}
        while len(ready) < 4 and time.monotonic() < deadline:
            for name, pipeline, fill in (("a", session_a, 10), ("b", session_b, 40)):
                for face in pipeline.process(stream_frame("cam", fill, index)).faces:
                    if face.ready:
                        ready[(name, face.track_id)] = face.p_fake
            index += 1
            time.sleep(0.005)
    finally:
        release.set()
        stages.stop()
    assert encoder.fills[1] == {11, 12, 41, 42}  # 2 faces of session A and 2 of session B in one call
    assert ready == pytest.approx({("a", 1): 0.11, ("a", 2): 0.12, ("b", 1): 0.41, ("b", 2): 0.42})


def test_waiting_samples_of_a_track_are_scored_in_order_in_rounds():
    scorer = EchoScorer()
    stages = make_stages(scorer=scorer)
    crop = np.full((160, 160, 3), 7, dtype=np.uint8)
    for timestamp_s in (0.0, 0.1, 0.2):
        stages.scoring.submit(("p", "cam", 1), ScoreRequest(crop, timestamp_s))
    stages.scoring.submit(("p", "cam", 2), ScoreRequest(crop, 0.1))
    assert stages.scoring.run_pending() == 4
    # Three rounds of update_many (a track at most once per call), the first with both tracks.
    assert [len(call) for call in scorer.calls] == [2, 1, 1]
    assert stages.scoring.take(("p", "cam", 1)).value.timestamp_s == 0.2  # the latest is kept
