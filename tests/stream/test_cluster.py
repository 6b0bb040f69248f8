"""Cluster mode on a Ray cluster of several raylets on this machine (loopback only, no dashboard).

The stages are fakes (a scripted detector that takes a few milliseconds, a fixed-rate scorer, an
encoder that embeds the crop's fill value), so the tests spend their CPU on Ray and the video
reading, not on models. Skipped when Ray is not installed (``.[dev]`` installs it).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import tests.stream.fakes as fakes
from stream.cluster.driver import RAY_SYSTEM_CONFIG, ClusterOptions, ClusterRun
from stream.cluster.encoder_pool import PoolOptions
from stream.cluster.stages import StreamStages
from stream.cluster.stream_worker import StreamSpec
from stream.contracts import Encoder, FrameResult
from stream.live.batching import SharedStages
from stream.live.pipeline import Pipeline
from stream.sinks import EventsSink
from tests.stream.videos import count_frames, write_demo_video

# Ray resolves 127.0.0.1 to the machine's interface address when connecting to a cluster; this
# (read when ray is imported) keeps every node, driver and worker on loopback.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
ray = pytest.importorskip("ray", reason="cluster mode needs Ray: pip install 'deepwatch[ray]'")
from ray.cluster_utils import Cluster  # noqa: E402

# Workers import these by value: in CI the tests package is not on the workers' path.
ray.cloudpickle.register_pickle_by_value(fakes)

# Per detector call: paces the stream (about 20 frames/s at most) so a node can be removed mid-run.
DETECT_DELAY_S = 0.05
# The goal is a resume within 10 s; here: 2 s to declare the node dead plus a new worker
# process importing the stages. That took 10.2 s at a load average of ~18 on the 2 shared cores
# (a few seconds when idle), so the test bounds it loosely (a stuck restart) and the driver's
# summary reports the gap (``resume_gaps_s``) for the benchmark to measure.
RESUME_LIMIT_S = 60.0
# The head's system config: as a local run starts its workers (at the driver's priority, not
# Ray's nice 15), plus a node declared dead within about 2 s.
TEST_SYSTEM_CONFIG = {
    **RAY_SYSTEM_CONFIG,
    "health_check_initial_delay_ms": 0,
    "health_check_period_ms": 500,
    "health_check_timeout_ms": 500,
    "health_check_failure_threshold": 4,
}


class SlowBoxDetector:
    """One fixed face box per frame, after a short sleep (a stand-in for MTCNN's cost)."""

    def __init__(self) -> None:
        self._inner = fakes.ScriptedDetector(lambda call: [(20.0, 20.0, 80.0, 90.0)])

    def detect(self, image: np.ndarray) -> list[Any]:
        time.sleep(DETECT_DELAY_S)
        return self._inner.detect(image)

    def detect_batch(self, images: list[np.ndarray]) -> list[list[Any]]:
        return [self.detect(image) for image in images]


class FakeStages:
    """A ``StageFactory`` of fakes (pickled by value to the workers)."""

    def new_pipeline(self, encoder: Encoder, live: bool) -> StreamStages:
        return StreamStages(
            Pipeline(
                detector=SlowBoxDetector(),
                tracker_factory=fakes.ScriptedTracker,
                crop=fakes.fake_crop,
                encoder=encoder,
                scorer_factory=lambda: fakes.FixedRateScorer(sample_rate_hz=5.0),
                detect_every_n_frames=1,
            )
        )

    def new_encoder(self, device: str) -> Encoder:
        return fakes.RecordingEncoder()

    def threshold(self) -> float:
        return 0.5


class EncoderHeldByAFile(fakes.RecordingEncoder):
    """Every ``encode`` waits while the file ``hold`` exists (the pool actor is another process,
    so a file is what the test can hold it with)."""

    def __init__(self, hold: str) -> None:
        super().__init__()
        self._hold = hold

    def encode(self, crops: np.ndarray) -> np.ndarray:
        while os.path.exists(self._hold):
            time.sleep(0.02)
        return super().encode(crops)


def live_pipeline(detector: SlowBoxDetector, encoder: Encoder) -> StreamStages:
    """What ``AppStages`` builds for a live source, with fakes: detection and scoring on the
    pipeline's worker threads."""
    stages = SharedStages(
        detector=detector,
        encoder=encoder,
        scorer=fakes.FixedRateScorer(sample_rate_hz=5.0),
        detect_every_n_frames=1,
    )
    stages.start()
    return StreamStages(
        Pipeline(
            stages=stages,
            tracker_factory=fakes.ScriptedTracker,
            crop=fakes.fake_crop,
            detect_every_n_frames=1,
        )
    )


class LiveFakeStages(FakeStages):
    """Fakes that build what ``AppStages`` builds for a live source: detection and scoring on the
    pipeline's worker threads; the encoder is held by a file."""

    def __init__(self, hold: str) -> None:
        self.hold = hold

    def new_pipeline(self, encoder: Encoder, live: bool) -> StreamStages:
        if not live:
            return super().new_pipeline(encoder, live)
        return live_pipeline(SlowBoxDetector(), encoder)

    def new_encoder(self, device: str) -> Encoder:
        return EncoderHeldByAFile(self.hold)


def record_nice(path: str) -> None:
    """Append the calling thread's nice value to ``path`` (Linux keeps one per thread)."""
    with open(path, "a") as out:
        out.write(f"{os.getpriority(os.PRIO_PROCESS, 0)}\n")


class NiceDetector(SlowBoxDetector):
    def __init__(self, path: str) -> None:
        super().__init__()
        self._path = path

    def detect(self, image: np.ndarray) -> list[Any]:
        record_nice(self._path)
        return super().detect(image)


class NiceEncoder(fakes.RecordingEncoder):
    def __init__(self, path: str) -> None:
        super().__init__()
        self._path = path
        # The pool actor builds its encoder when it starts, before any stream's first frame: the
        # file then exists even if the short clip ends before a sample is encoded.
        record_nice(path)

    def encode(self, crops: np.ndarray) -> np.ndarray:
        record_nice(self._path)
        return super().encode(crops)


class NiceRecordingStages(FakeStages):
    """A live stream's stages (detection on the pipeline's worker thread) whose detector and
    encoder write the nice value of the thread that runs them to files."""

    def __init__(self, record: str) -> None:
        self.record = record

    def new_pipeline(self, encoder: Encoder, live: bool) -> StreamStages:
        return live_pipeline(NiceDetector(self.record + ".detector"), encoder)

    def new_encoder(self, device: str) -> Encoder:
        return NiceEncoder(self.record + ".encoder")


ray.cloudpickle.register_pickle_by_value(__import__(__name__))


class FrameLog:
    """A sink that records (source_id, frame index, face track ids) of every result, in order."""

    needs_annotated = False

    def __init__(self) -> None:
        self.rows: list[tuple[str, int, tuple[int, ...]]] = []

    def write(self, result: FrameResult, annotated: np.ndarray | None) -> None:
        self.rows.append(
            (result.frame.source_id, result.frame.index, tuple(face.track_id for face in result.faces))
        )

    def close(self) -> None:
        pass


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """A head that runs no stream (0 CPUs) and two 1-CPU nodes, all on 127.0.0.1.

    The head declares a node dead after about 2 s of failed health checks (Ray's default, 5
    checks 3 s apart, takes 15 s; docs/cluster.md says how to set this on a real cluster).
    """
    node_args = {"node_ip_address": "127.0.0.1", "include_dashboard": False}
    started = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 0, "_system_config": TEST_SYSTEM_CONFIG, **node_args},
    )
    try:
        for _ in range(2):
            started.add_node(num_cpus=1, **node_args)
        started.wait_for_nodes()
        started.connect()
        yield started
    finally:
        ray.shutdown()
        started.shutdown()


class BackgroundRun:
    """A ``ClusterRun`` on a driver thread, so the test can act while it runs."""

    def __init__(self, run: ClusterRun) -> None:
        self._outcome: dict[str, Any] = {}
        self._driver = threading.Thread(target=lambda: self._outcome.update(result=run.run()), daemon=True)
        self._driver.start()

    def wait_for_rows(self, log: FrameLog, count: int, timeout_s: float = 120.0) -> None:
        """Until ``log`` holds ``count`` results, the run ends, or ``timeout_s`` passes."""
        deadline = time.monotonic() + timeout_s
        while len(log.rows) < count and time.monotonic() < deadline and self._driver.is_alive():
            time.sleep(0.05)

    def outcome(self, timeout_s: float, what: str) -> Any:
        """The run's ``RunOutcome`` once it ended; fails naming ``what`` should have ended it."""
        self._driver.join(timeout=timeout_s)
        assert not self._driver.is_alive(), f"the run did not end after {what}"
        return self._outcome["result"]


def _events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _options() -> ClusterOptions:
    # The address is ignored while connected: the driver joins the running test cluster.
    return ClusterOptions(address="local", max_restarts=3, pool=PoolOptions(size=1))


@pytest.mark.slow
def test_a_source_that_fails_to_open_fails_only_its_stream(cluster: Cluster, tmp_path: Path) -> None:
    good = tmp_path / "good.mp4"
    frames = write_demo_video(good, seconds=1.0, fps=15, width=160, height=120)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all")
    log = FrameLog()
    events_path = tmp_path / "events.jsonl"
    streams = [StreamSpec(spec=str(good), source_id="good"), StreamSpec(spec=str(broken), source_id="broken")]
    outcome = ClusterRun(streams, FakeStages(), [log, EventsSink(events_path)], _options()).run()
    assert outcome.stopped_by == "error"
    assert len(outcome.errors) == 1 and outcome.errors[0].startswith("broken: ")
    assert "broken.mp4" in outcome.errors[0]
    # The good stream ran to its end: every frame once, in order.
    assert [index for source, index, _ in log.rows if source == "good"] == list(range(frames))
    sources = {s["source_id"]: s for s in outcome.summary["sources"]}
    assert sources["good"]["error"] is None and sources["broken"]["error"]
    # Its crops went through the shared encoder pool.
    (pool,) = outcome.summary["encoder_pool"]
    assert pool["crops"] >= frames // 3 and pool["backend"] == "fake"
    seqs = [event["data"]["seq"] for event in _events(events_path) if event["source_id"] == "good"]
    assert seqs == list(range(len(seqs))) and len(seqs) >= 2


@pytest.mark.slow
def test_a_live_stream_keeps_delivering_frames_while_the_encoder_pool_is_busy(
    cluster: Cluster, tmp_path: Path
) -> None:
    video = tmp_path / "cam.mp4"
    write_demo_video(video, seconds=4.0, fps=15, width=160, height=120)
    hold = tmp_path / "encoder-held"
    hold.write_text("")
    log = FrameLog()
    run = ClusterRun(
        [StreamSpec(spec=str(video), source_id="cam", realtime=True)],  # paced: a live source
        LiveFakeStages(str(hold)),
        [log],
        _options(),
    )
    background = BackgroundRun(run)
    try:
        background.wait_for_rows(log, 15)
        # The face is due for a sample from its first frames on, and no encode can finish: a
        # stream that waited for the pool would have stopped at its first sample.
        assert len(log.rows) >= 15, f"the live stream stalled behind the held encoder: {log.rows}"
    finally:
        hold.unlink()
    result = background.outcome(120, "the encoder was released")
    assert result.stopped_by == "end" and result.errors == []
    (pool,) = result.summary["encoder_pool"]
    assert pool["crops"] > 0  # the samples asked for while held were encoded once released


@pytest.mark.slow
def test_stream_actors_yield_the_cpu_to_the_encoder_pool(cluster: Cluster, tmp_path: Path) -> None:
    # On a node that streams share with the pool, capture and detection run at a lower priority,
    # down to the pipeline's worker threads, so a node that falls behind drops frames first.
    video = tmp_path / "cam.mp4"
    write_demo_video(video, seconds=2.0, fps=15, width=160, height=120)
    record = str(tmp_path / "nice")
    options = ClusterOptions(address="local", max_restarts=3, stream_nice=7, pool=PoolOptions(size=1))
    outcome = ClusterRun(
        [StreamSpec(spec=str(video), source_id="cam", realtime=True)],
        NiceRecordingStages(record),
        [],
        options,
    ).run()
    assert outcome.stopped_by == "end" and outcome.errors == []
    detector = {int(line) for line in Path(record + ".detector").read_text().split()}
    encoder = {int(line) for line in Path(record + ".encoder").read_text().split()}
    assert len(detector) == 1 and len(encoder) == 1, (detector, encoder)
    # The pool runs at the driver's priority, not Ray's default worker nice of 15 (which would put
    # all of deepwatch below every ordinary process); the kernel caps a nice value at 19.
    (stream_nice,), (pool_nice,) = detector, encoder
    driver_nice = os.getpriority(os.PRIO_PROCESS, 0)
    assert pool_nice <= driver_nice, (pool_nice, driver_nice)
    assert stream_nice == min(19, pool_nice + 7) and stream_nice > pool_nice


def test_cluster_options_refuse_a_priority_outside_nice_range() -> None:
    for bad in (-1, 20, 2.5):
        with pytest.raises(ValueError, match=r"stream_nice must be an integer in 0\.\.19"):
            ClusterOptions(stream_nice=bad)  # type: ignore[arg-type]


@pytest.mark.slow
def test_removing_the_node_of_a_stream_resumes_it_elsewhere_without_loss(
    cluster: Cluster, tmp_path: Path
) -> None:
    video = tmp_path / "clip.mp4"
    write_demo_video(video, seconds=10.0, fps=15, width=160, height=120)
    frames = count_frames(video)
    log = FrameLog()
    events_path = tmp_path / "events.jsonl"
    run = ClusterRun(
        [StreamSpec(spec=str(video), source_id="cam")],
        FakeStages(),
        [log, EventsSink(events_path)],
        _options(),
    )
    background = BackgroundRun(run)
    background.wait_for_rows(log, 20)
    assert len(log.rows) >= 20, "the stream produced no results before the node was to be removed"
    node_id = run.stream_nodes()["cam"]
    (node,) = [n for n in cluster.worker_nodes if n.node_id == node_id]
    frames_before = len(log.rows)
    cluster.remove_node(node, allow_graceful=False)
    result = background.outcome(180, "the node was removed")
    assert result.stopped_by == "end" and result.errors == []
    (source,) = result.summary["sources"]
    assert source["restarts"] == 1
    assert len(source["nodes"]) == 2 and source["nodes"][0] == node_id != source["nodes"][1]
    assert source["resume_gaps_s"][0] < RESUME_LIMIT_S
    # Nothing lost or doubled: every frame of the file exactly once, in order, across the restart.
    indices = [index for _, index, _ in log.rows]
    assert len(log.rows) > frames_before
    assert indices == list(range(frames))
    events = _events(events_path)
    assert [event["data"]["seq"] for event in events] == list(range(len(events)))
    # The lost incarnation's track was closed, and the new one never reuses its id.
    ends = [event for event in events if event["kind"] == "track_end"]
    assert ends[0]["track_id"] == 1 and ends[0]["data"]["reason"] == "the stream worker was lost"
    news = [event["track_id"] for event in events if event["kind"] == "track_new"]
    assert news == [1, 2]
    assert {ids for _, _, ids in log.rows if ids} == {(1,), (2,)}


def test_stream_specs_name_sources_like_the_in_process_run(tmp_path: Path) -> None:
    from stream.cluster.command import stream_specs
    from stream.config import AppConfig

    first, second = tmp_path / "a" / "clip.mp4", tmp_path / "b" / "clip.mp4"
    for path in (first, second):
        path.parent.mkdir()
        path.write_bytes(b"")
    specs = stream_specs(
        [str(first), str(second)], AppConfig(), realtime=True, loop=False, images_for="clip.mp4"
    )
    assert [s.source_id for s in specs] == ["clip.mp4", "clip.mp4#1"]
    assert [s.want_images for s in specs] == [True, False]
    assert all(s.realtime and not s.loop for s in specs)


def test_more_local_streams_than_cores_are_warned_of() -> None:
    from stream.cluster.command import crowded_local_warning

    assert crowded_local_warning("local", 4, 2) is None  # within 20 % of one process, measured
    assert crowded_local_warning("head:6379", 8, 2) is None  # a cluster has other nodes
    warning = crowded_local_warning("local", 5, 2)
    assert warning is not None
    assert warning.startswith("5 streams on 2 CPU cores through a local Ray instance")
    assert "run without --ray" in warning


def test_run_with_ray_checks_its_arguments_before_starting_ray(tmp_path: Path) -> None:
    from tests.stream.conftest import assert_clean_failure, run_cli

    video = tmp_path / "clip.mp4"
    write_demo_video(video, seconds=0.5, fps=15, width=160, height=120)
    shown = run_cli("run", str(video), "--ray", "local", "--show", timeout_s=120)
    assert shown.returncode == 2
    assert_clean_failure(shown, r"--show is not available with --ray")
    missing = run_cli("run", str(tmp_path / "nowhere.mp4"), "--ray", "local", timeout_s=120)
    assert missing.returncode == 1
    assert_clean_failure(missing, r"nowhere\.mp4")
    assert "Ray" not in missing.stderr.replace("--ray", "")
    too_nice = run_cli("run", str(video), "--ray", "local", "--ray-stream-nice", "25", timeout_s=120)
    assert too_nice.returncode == 2
    assert_clean_failure(too_nice, r"stream_nice must be an integer in 0\.\.19, got 25")


@pytest.mark.slow
def test_run_ray_local_end_to_end_with_the_real_models(tmp_path: Path, checkpoint_args: list[str]) -> None:
    import cv2
    from skimage import data

    from tests.stream.conftest import run_cli, small_config

    video = tmp_path / "clip.mp4"
    write_demo_video(video, seconds=3.0, fps=15, width=320, height=240)
    frames = count_frames(video)
    events_path, summary_path, out = tmp_path / "e.jsonl", tmp_path / "s.json", tmp_path / "o.mp4"
    # The demo scene is the astronaut photograph: enrolled from it and from a clip of it (sent to
    # the workers as bytes), she matches herself on the workers.
    photo = tmp_path / "astronaut.png"
    cv2.imwrite(str(photo), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    reference_clip = tmp_path / "reference.mp4"
    write_demo_video(reference_clip, seconds=2.5, fps=10, width=320, height=240)
    completed = run_cli(
        "run",
        str(video),
        "--reference",
        str(photo),
        "--reference",
        str(reference_clip),
        "--ray",
        "local",
        "--config",
        str(small_config(tmp_path)),
        "--events",
        str(events_path),
        "--summary",
        str(summary_path),
        "--out",
        str(out),
        *checkpoint_args,
        timeout_s=600,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    summary = json.loads(summary_path.read_text())
    assert summary["ray"] == "local" and summary["stopped_by"] == "end"
    assert summary["frames_processed"] == frames
    (source,) = summary["sources"]
    assert source["frames_read"] == frames and source["restarts"] == 0 and source["error"] is None
    assert source["frames_processed"] == frames and source["dropped_pct"] == 0.0
    (pool,) = summary["encoder_pool"]
    assert pool["backend"] == "onnxruntime" and pool["crops"] > 0
    events = _events(events_path)
    assert [event["data"]["seq"] for event in events] == list(range(len(events)))
    assert {event["kind"] for event in events} >= {"track_new", "track_end"}
    assert count_frames(out) == frames
    assert [track["track_id"] for track in summary["tracks"]] == sorted({e["track_id"] for e in events})
    assert summary["model"]["reference"] == {"name": "astronaut.png, reference.mp4 (8 frames)", "photos": 9}
    assert [track["reference"]["verdict"] for track in summary["tracks"]] == ["match"]
    assert "matches astronaut.png, reference.mp4 (8 frames)" in completed.stdout


def test_a_gpu_encoder_actor_runs_fp32_when_the_config_asks_for_int8(monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses
    import types

    import engine.checkpoint
    import stream.calibration
    from engine.config import EncoderConfig
    from stream.cluster.stages import AppStages
    from stream.config import AppConfig

    built: list[EncoderConfig] = []

    def fake_open(checkpoint: object, config: EncoderConfig) -> Any:
        built.append(config)
        return fakes.RecordingEncoder()

    uncalibrated = types.SimpleNamespace(calibration=None, calibration_for=lambda precision: None)
    monkeypatch.setattr(engine.checkpoint, "load_checkpoint", lambda path: uncalibrated)
    monkeypatch.setattr(engine.checkpoint, "open_encoder", fake_open)
    monkeypatch.setattr(stream.calibration, "with_calibration", lambda config: config)
    config = AppConfig()
    config = dataclasses.replace(config, encoder=dataclasses.replace(config.encoder, precision="int8"))
    AppStages(config).new_encoder("cuda")
    AppStages(config).new_encoder("cpu")
    assert [(c.device, c.precision) for c in built] == [("cuda", "fp32"), ("cpu", "int8")]
