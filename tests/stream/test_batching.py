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
from stream.live.batching import (
    MAX_SCORING_BATCH,
    MAX_WAITING_SAMPLES,
    Batch,
    BatchWorker,
    ScoreRequest,
    SharedStages,
    WorkerError,
)
from stream.live.pipeline import Pipeline
from stream.live.shedding import CALM_WINDOWS, WINDOW_S, LoadShedder, ShedLevel, shed_levels
from tests.stream.fakes import (
    FixedRateScorer,
    RecordingEncoder,
    ScriptedDetector,
    ScriptedTracker,
    detection,
)
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


def feed_until(done: threading.Event, pipeline, source_id: str, fill: int, deadline: float) -> int:
    """Feed frames 0, 1, ... of one stream until ``done`` is set (or the deadline); the next index."""
    index = 0
    while not done.is_set() and time.monotonic() < deadline:
        pipeline.process(stream_frame(source_id, fill, index))
        index += 1
        time.sleep(0.005)
    return index


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


def test_frames_never_wait_for_a_blocked_encoder_and_stale_samples_are_shed_and_counted_per_stream():
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
        index = feed_until(started, pipeline, "a", 10, time.monotonic() + _WAIT_S)
        assert started.is_set()
        # The encoder is stuck on the first batch: every later frame still comes back at once,
        # without scores, and each track keeps at most MAX_WAITING_SAMPLES samples waiting.
        results = [pipeline.process(stream_frame("a", 10, i)) for i in range(index, index + 30)]
        assert all(len(r.faces) == 2 and not any(f.ready for f in r.faces) for r in results)
        assert stages.scoring.shed > 0
        assert stages.scoring.waiting == 2 * MAX_WAITING_SAMPLES
        assert stages.describe()["samples_shed"] == stages.scoring.shed
        # Each shed sample is counted for the stream it came from: only "a" has run so far.
        assert pipeline.samples_shed_by_source == {"a": stages.scoring.shed}
        shed_by_a = stages.scoring.shed
        # Stream b starts: its faces appear once its first detection is back (the detector is
        # free), then its samples pile up behind the held encoder and shed too.
        deadline, index = time.monotonic() + _WAIT_S, 0
        while "b" not in pipeline.samples_shed_by_source and time.monotonic() < deadline:
            pipeline.process(stream_frame("b", 40, index))
            index += 1
            time.sleep(0.005)
        assert pipeline.samples_shed_by_source["a"] == shed_by_a
        assert pipeline.samples_shed_by_source["b"] > 0
        assert sum(pipeline.samples_shed_by_source.values()) == stages.scoring.shed
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

    # Scoring takes longer than a sample period (0.125 s at 8 Hz): the detection interval
    # stretches one step per window (levels 1, 2), but late results alone never lower the rate.
    assert [window(0.3).level for _ in range(4)] == [1, 2, 2, 2]
    assert shedder.current == ShedLevel(2, 9, 8.0)
    # Shed samples (the scorer does not keep up): the sampling rate falls, one step per window.
    assert [window(0.3, shed=2).level for _ in range(3)] == [3, 4, 4]
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
        deadline = time.monotonic() + _WAIT_S
        index = feed_until(first_batch, session_a, "cam", 10, deadline)
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


def test_a_batch_takes_whole_keys_least_served_per_second_first_up_to_its_size():
    clock = FakeClock()
    batches: list[list[tuple[str, int]]] = []

    def run_batch(batch):
        batches.append(list(batch))
        return [item for _, item in batch]

    worker: BatchWorker[int, int] = BatchWorker(
        "test", run_batch, max_waiting_per_key=3, max_batch_items=4, clock=clock
    )
    for key in ("a", "b", "c"):
        worker.submit(key, 0)
        clock.now_s += 0.1
    worker.submit_many([("d", 0), ("d", 1), ("d", 2), ("d", 3)])  # d keeps its 3 newest, in order
    assert worker.shed == 1
    # a, b, c fit; d's three would take the batch past 4, so d goes whole into the next one.
    assert worker.run_pending() == 3
    assert worker.run_pending() == 3
    assert batches == [[("a", 0), ("b", 0), ("c", 0)], [("d", 1), ("d", 2), ("d", 3)]]
    # Everyone asks again, d first, and a new key appears: the new one goes first (none of its
    # requests ran yet), then the fewest run per second since first asking: a, b, c (one each, a
    # asking longest), and d (three) last.
    for key in ("d", "c", "b", "a", "e"):
        worker.submit(key, 1)
        clock.now_s += 0.1
    assert worker.run_pending() == 4
    assert worker.run_pending() == 1
    assert batches[2:] == [[("e", 1), ("a", 1), ("b", 1), ("c", 1)], [("d", 1)]]
    assert worker.run_pending() == 0 and worker.next_batch() is None
    assert worker.take("d").value == 1 and worker.take("d") is None
    # A key alone with more waiting than the size limit still runs, whole.
    big: BatchWorker[int, int] = BatchWorker("test", run_batch, max_waiting_per_key=8, max_batch_items=2)
    big.submit_many([("x", i) for i in range(5)])
    assert big.run_pending() == 5


class FacesByFill:
    """A detector that finds ``faces[fill]`` faces in a frame filled with ``fill`` (one count per
    stream), side by side; records how many frames of each fill it saw."""

    def __init__(self, faces: dict[int, int]) -> None:
        self.faces = faces
        self.frames_seen: dict[int, int] = {fill: 0 for fill in faces}

    def detect_batch(self, images):
        results = []
        for image in images:
            fill = int(image[0, 0, 0])
            self.frames_seen[fill] += 1
            results.append(
                [detection(10.0 + 60 * i, 100.0, 60.0 + 60 * i, 160.0) for i in range(self.faces[fill])]
            )
        return results


class SimulatedWorkers:
    """Plays the shared stages' worker threads in the test's thread, on the fake clock: detection
    comes back at once; scoring needs ``cost_per_sample_s`` of fake time per sample, so a batch's
    results arrive (and its next batch is taken) when it would have finished."""

    def __init__(self, stages: SharedStages, clock: FakeClock, cost_per_sample_s: float) -> None:
        self.stages = stages
        self.clock = clock
        self.cost_per_sample_s = cost_per_sample_s
        self.batch_sizes: list[int] = []
        self._batch: Batch[ScoreRequest] | None = None
        self._done_at_s = 0.0

    def step(self) -> None:
        self.stages.detection.run_pending()
        if self._batch is not None and self.clock.now_s >= self._done_at_s - 1e-9:
            self.stages.scoring.run(self._batch)
            self._batch = None
        while self._batch is None:
            batch = self.stages.scoring.next_batch()
            if batch is None:
                return
            if not batch.requests:  # only keys to forget
                self.stages.scoring.run(batch)
                continue
            self._batch = batch
            self._done_at_s = self.clock.now_s + len(batch.requests) * self.cost_per_sample_s
            self.batch_sizes.append(len(batch.requests))


class Simulation:
    """Streams of ``faces`` faces each (name -> (fill, faces)) through one pipeline with threaded
    shared stages played by ``SimulatedWorkers`` on a fake clock: deterministic, no threads."""

    def __init__(
        self,
        streams: dict[str, tuple[int, int]],
        *,
        cost_per_sample_s: float,
        sample_rate_hz: float = 8.0,
        levels: list[ShedLevel] | None = None,
        max_scoring_batch: int | None = MAX_SCORING_BATCH,
    ) -> None:
        self.clock = FakeClock()
        self.detector = FacesByFill({fill: faces for fill, faces in streams.values()})
        self.scorer = FixedRateScorer(sample_rate_hz=sample_rate_hz, min_samples=1)
        self.stages = SharedStages(
            detector=self.detector,
            encoder=RecordingEncoder(),
            scorer=self.scorer,
            levels=levels,
            max_scoring_batch=max_scoring_batch,
            clock=self.clock,
        )
        self.pipeline = make_pipeline(self.stages)
        self.stages.start(worker_threads=False)
        self.workers = SimulatedWorkers(self.stages, self.clock, cost_per_sample_s)
        self.streams = dict(streams)
        self.tick = 0
        # Per (source_id, track_id): samples scored so far, first confirmed and first scored time.
        self.scored: dict[tuple[str, int], int] = {}
        self.first_seen_s: dict[tuple[str, int], float] = {}
        self.first_scored_s: dict[tuple[str, int], float] = {}
        self.levels: list[ShedLevel] = []

    def run(self, seconds: float) -> None:
        for _ in range(round(seconds * FPS)):
            self.clock.now_s = self.tick / FPS
            frames = [stream_frame(name, fill, self.tick) for name, (fill, _) in self.streams.items()]
            for result in self.pipeline.process_batch(frames):
                for face in result.faces:
                    key = (result.frame.source_id, face.track_id)
                    self.first_seen_s.setdefault(key, self.clock.now_s)
                    self.scored[key] = face.frames_scored
                    if face.frames_scored:
                        self.first_scored_s.setdefault(key, self.clock.now_s)
            self.workers.step()
            self.levels.append(self.stages.shedder.current)
            self.tick += 1


def test_an_overloaded_scorer_keeps_scoring_every_face_of_every_stream_in_fair_shares():
    # 12 faces in 4 streams (one face to six) want 8 samples/s each, 96/s; the scorer does 10/s.
    streams = {"one": (10, 1), "two": (40, 2), "three": (70, 3), "six": (100, 6)}
    sim = Simulation(streams, cost_per_sample_s=0.1)
    sim.run(60.0)
    tracks = {(name, t) for name, (_, faces) in streams.items() for t in range(1, faces + 1)}
    assert set(sim.scored) == tracks
    counts = [sim.scored[key] for key in sorted(tracks)]
    # About 60 s x 10/s over 12 faces = 50 each: the six-face stream gets half, face for face the
    # same as the one-face stream; the rest was shed (the oldest waiting samples).
    assert min(counts) >= 40
    assert max(counts) / min(counts) <= 1.25
    assert sum(counts) >= 0.9 * 60.0 / 0.1 - MAX_SCORING_BATCH  # the scorer never idled
    assert sim.stages.scoring.shed > 0
    assert max(sim.workers.batch_sizes) <= MAX_SCORING_BATCH


def test_a_new_face_under_overload_is_scored_within_two_batches_then_at_its_fair_share():
    streams = {"one": (10, 1), "two": (40, 2), "three": (70, 3), "six": (100, 6)}
    sim = Simulation(streams, cost_per_sample_s=0.1)
    sim.run(20.0)
    # Saturated: every face but the one in the running batch has samples waiting, some shed.
    assert sim.stages.scoring.waiting_keys == 11 and sim.stages.scoring.shed > 0
    before = dict(sim.scored)
    sim.streams["late"] = (130, 1)
    sim.detector.faces[130] = 1
    sim.detector.frames_seen[130] = 0
    sim.run(20.0)
    late = ("late", 1)
    # A batch is at most MAX_SCORING_BATCH samples (0.8 s here); the new face goes first in the
    # next one, so it waits for at most the batch running and its own (one taking every waiting
    # sample took 12 x 8 x 0.1 s = 9.6 s, and the face had no score 10 s after it appeared).
    two_batches_s = 2 * MAX_SCORING_BATCH * 0.1
    assert sim.first_scored_s[late] - sim.first_seen_s[late] <= two_batches_s + 2 / FPS
    # Then it gets its share: 10 samples/s over 13 faces is about 15 in 20 s, in bursts of 8.
    gains = [sim.scored[key] - before[key] for key in before]
    assert sim.scored[late] >= 12
    assert min(gains) >= 8 and max(gains) <= 16


def test_overload_stretches_detection_first_then_lowers_the_sampling_rate_and_recovers_in_reverse():
    # Levels 0-2 detect on every 1st, 2nd, 3rd frame at 8 Hz; levels 3-5 sample at 6, 4, 2 Hz.
    levels = shed_levels(1, 3, 8.0, 2.0)
    # 6 faces want 48 samples/s at full service and still 12/s at 2 Hz; the scorer does 10/s.
    streams = {"a": (10, 2), "b": (40, 2), "c": (70, 2)}
    sim = Simulation(streams, cost_per_sample_s=0.1, levels=levels)
    sim.run(20.0)
    went_down = [level.level for i, level in enumerate(sim.levels) if i == 0 or level != sim.levels[i - 1]]
    assert went_down == [0, 1, 2, 3, 4, 5]
    assert sim.stages.shedder.current == levels[-1]
    # The pipeline does what the last level says: every stream detects on every 3rd frame and
    # every face is sampled at 2 Hz (over the last 10 s, within a sample of the rate).
    detections_before = dict(sim.detector.frames_seen)
    submitted_before = sim.stages.scoring.submitted
    sim.run(10.0)
    assert all(
        sim.detector.frames_seen[fill] - detections_before[fill] == round(10.0 * FPS / 3)
        for fill, _ in streams.values()
    )
    assert abs((sim.stages.scoring.submitted - submitted_before) / 6 - 2.0 * 10.0) <= 1
    assert all(count > 0 for count in sim.scored.values())
    # The scorer gets fast again: the sampling rate comes back first, then the detection interval.
    sim.workers.cost_per_sample_s = 0.001
    start = len(sim.levels)
    sim.run(30.0)
    recovered = [sim.levels[start - 1].level] + [
        level.level for i, level in enumerate(sim.levels[start:], start) if level != sim.levels[i - 1]
    ]
    assert recovered == [5, 4, 3, 2, 1, 0]
