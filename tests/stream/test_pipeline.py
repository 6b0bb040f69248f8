"""The pipeline core with fake stages: scheduling, batching, scoring, events, summaries."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np
import pytest

from engine.score import ReferenceMatch
from stream.contracts import Frame
from stream.live.alerts import AlertMonitor, ReferenceAlertMonitor
from stream.live.pipeline import Pipeline, PipelineConfig
from stream.live.verdict import resolve_threshold
from tests.stream.fakes import FixedRateScorer, RecordingEncoder, ScriptedDetector, ScriptedTracker, fake_crop
from tracking import FaceTracker, TrackerConfig

FPS = 30.0
ONE_FACE = [(100.0, 100.0, 200.0, 220.0)]
TWO_FACES = [(100.0, 100.0, 200.0, 220.0), (400.0, 100.0, 500.0, 220.0)]


def frames(count: int, source_id: str = "cam", start: int = 0) -> list[Frame]:
    image = np.zeros((480, 640, 3), dtype=np.uint8)
    return [
        Frame(image=image, index=i, timestamp_s=i / FPS, source_id=source_id)
        for i in range(start, start + count)
    ]


def make_pipeline(
    detector,
    scorer=None,
    *,
    every=3,
    config=None,
    threshold=0.5,
    alerts=None,
    encoder=None,
    reference_alerts=None,
):
    scorers: list[FixedRateScorer] = []

    def scorer_factory():
        made = scorer if scorer is not None else FixedRateScorer()
        scorers.append(made)
        return made

    trackers: list[ScriptedTracker] = []

    def tracker_factory(source_id):
        trackers.append(ScriptedTracker(source_id))
        return trackers[-1]

    pipeline = Pipeline(
        detector=detector,
        tracker_factory=tracker_factory,
        crop=fake_crop,
        encoder=encoder or RecordingEncoder(),
        scorer_factory=scorer_factory,
        detect_every_n_frames=every,
        config=config,
        threshold=threshold,
        alerts=alerts,
        reference_alerts=reference_alerts,
    )
    return pipeline, trackers, scorers


def test_detector_runs_every_n_frames_and_tracker_every_frame():
    detector = ScriptedDetector(lambda call: ONE_FACE)
    pipeline, trackers, _ = make_pipeline(detector, every=3)
    results = [pipeline.process(frame) for frame in frames(10)]
    assert detector.calls == 4  # frames 0, 3, 6, 9
    assert len(trackers[0].updates) == 10
    assert [u is not None for u in trackers[0].updates] == [i % 3 == 0 for i in range(10)]
    assert ["detect" in r.timings_ms for r in results] == [i % 3 == 0 for i in range(10)]
    assert all("track" in r.timings_ms and "total" in r.timings_ms for r in results)


def test_tracks_sampled_at_scorer_rate_not_every_frame():
    detector = ScriptedDetector(lambda call: ONE_FACE)
    encoder = RecordingEncoder()
    scorer = FixedRateScorer(sample_rate_hz=10.0)
    pipeline, _, _ = make_pipeline(detector, scorer, every=1, encoder=encoder)
    for frame in frames(30):  # one second at 30 fps
        pipeline.process(frame)
    # 10 Hz over one second of 30 fps frames: every third frame is sampled.
    assert scorer.seen[1] == 10
    assert sum(encoder.batch_sizes) == 10


def test_all_crops_of_a_frame_and_of_several_sources_share_one_encoder_call():
    detector = ScriptedDetector(lambda call: TWO_FACES)
    encoder = RecordingEncoder()
    pipeline, _, _scorers = make_pipeline(detector, every=1, encoder=encoder)
    batch = [frames(1, "a")[0], frames(1, "b")[0], frames(1, "c")[0]]
    results = pipeline.process_batch(batch)
    assert encoder.batch_sizes == [6]  # 3 sources x 2 faces in one call
    assert [r.frame.source_id for r in results] == ["a", "b", "c"]
    assert all(len(r.faces) == 2 for r in results)
    assert all("encode" in r.timings_ms for r in results)


def test_embeddings_reach_the_scorer_of_their_own_track():
    detector = ScriptedDetector(lambda call: TWO_FACES)
    received: dict[int, float] = {}

    class CheckingScorer(FixedRateScorer):
        def update_many(self, items):
            for track_id, embedding, _ in items:
                received[track_id] = float(embedding[0] / embedding[1])  # the crop's fill value
            return super().update_many(items)

    pipeline, _, _ = make_pipeline(detector, CheckingScorer(), every=1)
    pipeline.process(frames(1)[0])
    assert received == pytest.approx({1: 1.0, 2: 2.0})


def test_rejects_two_frames_of_one_source_in_a_batch_and_bad_images():
    pipeline, _, _ = make_pipeline(ScriptedDetector(lambda call: []))
    with pytest.raises(ValueError, match="one frame per source"):
        pipeline.process_batch(frames(2, "a"))
    bad = Frame(image=np.zeros((480, 640), dtype=np.uint8), index=0, timestamp_s=0.0, source_id="a")
    with pytest.raises(ValueError, match=r"HxWx3 uint8 RGB, got \(480, 640\) uint8"):
        pipeline.process(bad)


def test_events_new_update_end_and_scorer_forgets_ended_tracks():
    # The face is there for 40 frames, then gone.
    detector = ScriptedDetector(lambda call: ONE_FACE if call < 40 else [])
    scorer = FixedRateScorer(p_for=lambda track_id, n: 0.9, sample_rate_hz=10.0, min_samples=2)
    config = PipelineConfig(update_event_interval_s=0.5, uncertain_margin=0.1)
    pipeline, _, _ = make_pipeline(detector, scorer, every=1, config=config)
    events = []
    results = []
    for frame in frames(45):
        result = pipeline.process(frame)
        results.append(result)
        events.extend(result.events)
    kinds = [event.kind for event in events]
    assert kinds[0] == "track_new"
    assert kinds[-1] == "track_end"
    assert kinds.count("track_new") == 1 and kinds.count("track_end") == 1
    updates = [e for e in events if e.kind == "track_update"]
    # Ready from the 2nd sample (t = 0.1 s); then at most one update per 0.5 s until t = 1.3 s.
    assert [round(e.timestamp_s, 2) for e in updates] == [0.1, 0.6, 1.1]
    assert all(e.data["verdict"] == "FAKE" and e.data["p_fake"] == 0.9 for e in updates)
    assert scorer.forgotten == [1]
    end = events[-1]
    assert end.timestamp_s == pytest.approx(40 / FPS)
    assert end.data["frames"] == 40 and end.data["verdict"] == "FAKE" and end.data["p_fake"] == 0.9
    assert results[20].faces[0].verdict == "FAKE" and results[20].faces[0].ready
    assert results[0].faces[0].verdict == "UNSURE" and math.isnan(results[0].faces[0].p_fake)
    assert results[44].faces == ()


def test_verdict_bands_and_config_threshold_override():
    scores = {1: 0.2, 2: 0.45}
    detector = ScriptedDetector(lambda call: TWO_FACES)
    scorer = FixedRateScorer(p_for=lambda track_id, n: scores[track_id], min_samples=1)
    pipeline, _, _ = make_pipeline(
        detector, scorer, every=1, config=PipelineConfig(uncertain_margin=0.1), threshold=0.5
    )
    verdicts = {face.track_id: face.verdict for face in pipeline.process(frames(1)[0]).faces}
    assert verdicts == {1: "REAL", 2: "UNSURE"}
    scorer2 = FixedRateScorer(p_for=lambda track_id, n: scores[track_id], min_samples=1)
    config = PipelineConfig(threshold=0.3, uncertain_margin=0.05)
    pipeline2, _, _ = make_pipeline(
        detector, scorer2, every=1, config=config, threshold=resolve_threshold(config.threshold, 0.5)
    )
    verdicts2 = {face.track_id: face.verdict for face in pipeline2.process(frames(1)[0]).faces}
    assert verdicts2 == {1: "REAL", 2: "FAKE"}


def test_history_is_bounded_and_in_order():
    values = iter(np.linspace(0.1, 0.9, 100))
    scorer = FixedRateScorer(
        p_for=lambda track_id, n: float(next(values)), sample_rate_hz=30.0, min_samples=1
    )
    pipeline, _, _ = make_pipeline(
        ScriptedDetector(lambda call: ONE_FACE), scorer, every=1, config=PipelineConfig(history_length=5)
    )
    result = None
    for frame in frames(20):
        result = pipeline.process(frame)
    assert result is not None
    history = result.faces[0].history
    assert len(history) == 5
    assert list(history) == sorted(history)
    assert history[-1] == pytest.approx(result.faces[0].p_fake)


class EnrolledScorer(FixedRateScorer):
    """Low p_fake throughout; the comparison with the enrolled person reads
    ``verdict_for(track_id, samples seen)``."""

    def __init__(self, verdict_for: Callable[[int, int], str]) -> None:
        super().__init__(p_for=lambda track_id, n: 0.1, sample_rate_hz=10.0, min_samples=1)
        self._verdict_for = verdict_for

    def update_many(self, items):  # type: ignore[no-untyped-def]
        return [
            dataclasses.replace(
                score,
                reference=ReferenceMatch(0.2, 0.9, self._verdict_for(score.track_id, score.frames_seen), 8),
            )
            for score in super().update_many(items)
        ]


def test_a_sustained_mismatch_with_the_enrolled_person_alerts_once_with_its_reason():
    # Matches for the first 10 samples (1 s), then shows another face on the enrolled head.
    scorer = EnrolledScorer(lambda track_id, n: "match" if n <= 10 else "head_only")
    pipeline, _, _ = make_pipeline(
        ScriptedDetector(lambda call: ONE_FACE),
        scorer,
        every=1,
        alerts=AlertMonitor(threshold=0.8, hysteresis=0.1, sustain_s=1.0),
        reference_alerts=ReferenceAlertMonitor(sustain_s=1.0),
    )
    alerts = [e for frame in frames(90) for e in pipeline.process(frame).events if e.kind == "alert"]
    assert len(alerts) == 1, alerts
    (alert,) = alerts
    assert alert.timestamp_s == pytest.approx(2.0, abs=0.1)  # head_only from 1.0 s, sustained 1 s
    assert alert.data["reason"] == "reference" and alert.data["sustain_s"] == 1.0
    assert alert.data["reference"]["verdict"] == "head_only" and alert.data["p_fake"] == 0.1
    assert pipeline.track_summaries()[0]["alerts"] == 1
    # Without the rule, the same comparison raises nothing.
    quiet, _, _ = make_pipeline(
        ScriptedDetector(lambda call: ONE_FACE), EnrolledScorer(lambda track_id, n: "head_only"), every=1
    )
    assert not [e for frame in frames(90) for e in quiet.process(frame).events if e.kind == "alert"]


def test_a_second_face_that_does_not_match_waits_while_the_enrolled_person_is_there():
    """Two faces: the second reads head_only throughout; the first matches the enrolled person
    for its first 30 samples (3 s), then reads someone else. No alert while the first matches;
    then the second alerts."""
    scorer = EnrolledScorer(
        lambda track_id, n: "head_only" if track_id == 2 else "match" if n <= 30 else "other"
    )
    pipeline, _, _ = make_pipeline(
        ScriptedDetector(lambda call: TWO_FACES),
        scorer,
        every=1,
        reference_alerts=ReferenceAlertMonitor(sustain_s=1.0),
    )
    alerts = [e for frame in frames(150) for e in pipeline.process(frame).events if e.kind == "alert"]
    assert len(alerts) == 1, alerts
    assert alerts[0].track_id == 2 and alerts[0].data["reference"]["verdict"] == "head_only"
    assert alerts[0].timestamp_s == pytest.approx(3.0, abs=0.15)


def test_alert_event_fires_once_after_sustained_high_score():
    scorer = FixedRateScorer(p_for=lambda track_id, n: 0.95, sample_rate_hz=10.0, min_samples=1)
    monitor = AlertMonitor(threshold=0.8, hysteresis=0.1, sustain_s=1.0)
    pipeline, _, _ = make_pipeline(ScriptedDetector(lambda call: ONE_FACE), scorer, every=1, alerts=monitor)
    alerts = [e for frame in frames(90) for e in pipeline.process(frame).events if e.kind == "alert"]
    assert len(alerts) == 1
    assert alerts[0].timestamp_s == pytest.approx(1.0, abs=0.05)
    assert alerts[0].data["threshold"] == 0.8 and alerts[0].data["reason"] == "score"
    assert pipeline.track_summaries()[0]["alerts"] == 1


def test_finish_ends_live_tracks_and_summary_lists_every_track():
    # Track 1 for 10 frames, gone, then a new face (new id from the real tracker).
    def boxes(call):
        return ONE_FACE if call < 10 or call >= 20 else []

    pipeline = Pipeline(
        detector=ScriptedDetector(boxes),
        tracker_factory=lambda source_id: FaceTracker(
            TrackerConfig(min_hits=2, max_age_frames=3, detect_every_n_frames=1), source_id=source_id
        ),
        crop=fake_crop,
        encoder=RecordingEncoder(),
        scorer_factory=lambda: FixedRateScorer(min_samples=1),
        detect_every_n_frames=1,
    )
    events = [e for frame in frames(30) for e in pipeline.process(frame).events]
    events += pipeline.finish()
    ends = [e for e in events if e.kind == "track_end"]
    assert [e.track_id for e in ends] == [1, 2]
    summaries = pipeline.track_summaries()
    assert [(s["track_id"], s["frames"]) for s in summaries] == [(1, 9), (2, 9)]
    assert all(s["verdict"] == "REAL" and s["frames_scored"] >= 3 for s in summaries)
    assert pipeline.finish() == []


def test_stats_collect_per_stage_latency():
    pipeline, _, _ = make_pipeline(ScriptedDetector(lambda call: ONE_FACE), every=2)
    for frame in frames(12):
        pipeline.process(frame)
    figures = pipeline.stats.as_dict()
    assert figures["frames"] == 12
    assert figures["latency_ms"]["detect"]["count"] == 6
    assert figures["latency_ms"]["track"]["count"] == 12
    assert figures["latency_ms"]["total"]["p95"] >= figures["latency_ms"]["total"]["p50"] >= 0


def test_encoding_moves_off_detection_frames_without_lowering_the_sample_rate():
    from engine.heads import build_head
    from engine.scorer import SequenceScorer
    from engine.scorer_config import ScorerConfig

    class IndexRecordingEncoder(RecordingEncoder):
        current_index = -1

        def __init__(self):
            super().__init__()
            self.indices: list[int] = []

        def encode(self, crops):
            self.indices.append(self.current_index)
            return super().encode(crops)

    encoder = IndexRecordingEncoder()
    # The real scorer accepts samples up to half a period early, which leaves room to defer.
    scorer_config = ScorerConfig(window_size=4, sample_rate_hz=8.0, min_samples=1)
    scorer = SequenceScorer(build_head("frame_mean"), scorer_config)
    pipeline, _, _ = make_pipeline(ScriptedDetector(lambda call: ONE_FACE), scorer, every=3, encoder=encoder)
    for frame in frames(150):  # 5 s at 30 fps; the detector runs on frames 0, 3, 6, ...
        encoder.current_index = frame.index
        pipeline.process(frame)
    assert 38 <= len(encoder.indices) <= 41  # still 8 Hz over 5 s
    on_detection_frames = [index for index in encoder.indices if index % 3 == 0]
    # Only the track's first sample (nothing to defer from) shares a frame with detection.
    assert len(on_detection_frames) == 1


def test_calibrated_verdict_bands() -> None:
    from stream.live.verdict import VerdictRule

    rule = VerdictRule(0.7, margin=0.1, real_at_most=0.4)
    assert [rule.verdict(p, True) for p in (0.1, 0.4, 0.41, 0.7, 0.7001, 1.0)] == [
        "REAL",
        "REAL",
        "UNSURE",
        "UNSURE",
        "FAKE",
        "FAKE",
    ]
    assert rule.verdict(0.99, False) == "UNSURE"
    # Saturated scores: a calibrated threshold of 1.0 is allowed (nothing reads FAKE).
    assert VerdictRule(1.0, real_at_most=1.0).verdict(1.0, True) == "REAL"
    with pytest.raises(ValueError, match="real_at_most <= threshold"):
        VerdictRule(0.5, real_at_most=0.6)


def test_threshold_is_resolved_in_one_place():
    assert resolve_threshold(None, 0.42) == 0.42  # the checkpoint's calibrated threshold
    assert resolve_threshold(0.7, 0.42) == 0.7  # the config's, when set
