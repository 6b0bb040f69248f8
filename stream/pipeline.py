"""The pipeline core: detect -> track -> crop -> encode -> score, one frame (per source) at a time.

Calling contract: one thread calls ``process`` (or ``process_batch`` for several sources) with
each source's frames in order, then ``finish`` once at the end. Per source, detection runs on
every ``detect_every_n_frames``-th frame and the tracker predicts in between; only confirmed
tracks that the scorer wants a new sample of are cropped and encoded, all crops of the call in
one encoder batch (across sources too); ended tracks are forgotten by the scorer and reported.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engine.score import Score
from stream.alerts import AlertMonitor
from stream.frame import Frame
from stream.results import Event, FaceResult, FrameResult
from stream.stages import Cropper, Detector, Encoder, Scorer, Tracker
from stream.stats import RunStats
from stream.track_record import TrackRecord
from stream.verdict import VerdictRule
from tracking.face_step import FaceStep
from tracking.track import Track, TrackState

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PipelineConfig:
    """How the pipeline schedules its stages and reports.

    Attributes:
        threshold: p_fake decision threshold; None uses the model's calibrated threshold.
        uncertain_margin: scores within this distance of the threshold are UNSURE.
        history_length: score values kept per track for the sparkline and charts.
        update_event_interval_s: at most one track_update event per track per this many seconds
            of stream time (a verdict change is always reported at once).
        torch_threads: CPU threads torch may use (scorer head, and MTCNN unless the detector
            sets its own); None keeps torch's default. 1 by default: measured on the 2-core
            machine under load, the LSTM head took 51 ms per update with 1 thread and 289 ms
            with 2 (threads spin-waiting for each other).
    """

    threshold: float | None = None
    uncertain_margin: float = 0.1
    history_length: int = 48
    update_event_interval_s: float = 1.0
    torch_threads: int | None = 1

    def __post_init__(self) -> None:
        if self.threshold is not None and not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1) or null, got {self.threshold!r}")
        if not 0.0 <= self.uncertain_margin < 0.5:
            raise ValueError(f"uncertain_margin must be in [0, 0.5), got {self.uncertain_margin!r}")
        if not isinstance(self.history_length, int) or self.history_length < 2:
            raise ValueError(f"history_length must be an integer >= 2, got {self.history_length!r}")
        if not self.update_event_interval_s >= 0:
            raise ValueError(f"update_event_interval_s must be >= 0, got {self.update_event_interval_s!r}")
        if self.torch_threads is not None and (
            isinstance(self.torch_threads, bool)
            or not isinstance(self.torch_threads, int)
            or self.torch_threads < 1
        ):
            raise ValueError(f"torch_threads must be an integer >= 1 or null, got {self.torch_threads!r}")


@dataclass
class _SourceState:
    step: FaceStep
    scorer: Scorer
    live_ids: set[int] = field(default_factory=set)
    last_sample_s: dict[int, float] = field(default_factory=dict)


class Pipeline:
    """Chains the stages; see the module docstring for the calling contract.

    Args:
        detector: finds faces in a frame.
        tracker_factory: makes the tracker of a new source, given its source_id.
        crop: cuts 160 x 160 face crops for tracks.
        encoder: embeds crops.
        scorer_factory: makes the scorer of a new source (track ids are per source).
        detect_every_n_frames: run the detector on every N-th frame of a source (the tracker's
            ``TrackerConfig.detect_every_n_frames``); the tracker predicts on the frames between.
        config: scheduling and reporting settings.
        threshold: the decision threshold used when ``config.threshold`` is None (the model's).
        real_threshold: with ``threshold``, the model's calibrated REAL bound (``VerdictRule``);
            None for the uncalibrated rule. Unused when ``config.threshold`` is set.
        alerts: the alert rule; None for no alert events.
    """

    def __init__(
        self,
        *,
        detector: Detector,
        tracker_factory: Callable[[str], Tracker],
        crop: Cropper,
        encoder: Encoder,
        scorer_factory: Callable[[], Scorer],
        detect_every_n_frames: int = 1,
        config: PipelineConfig | None = None,
        threshold: float = 0.5,
        alerts: AlertMonitor | None = None,
        real_threshold: float | None = None,
    ) -> None:
        if detect_every_n_frames < 1:
            raise ValueError(f"detect_every_n_frames must be >= 1, got {detect_every_n_frames}")
        self.config = config or PipelineConfig()
        self.detect_every_n_frames = detect_every_n_frames
        self._detector = detector
        self._tracker_factory = tracker_factory
        self._crop = crop
        self._encoder = encoder
        self._scorer_factory = scorer_factory
        if self.config.threshold is not None:
            self.verdicts = VerdictRule(self.config.threshold, self.config.uncertain_margin)
        else:
            self.verdicts = VerdictRule(threshold, self.config.uncertain_margin, real_threshold)
        self._alerts = alerts
        self._sources: dict[str, _SourceState] = {}
        self._records: dict[tuple[str, int], TrackRecord] = {}
        self._finished: list[TrackRecord] = []
        self.stats = RunStats()

    # -- per frame -------------------------------------------------------------------------

    def process(self, frame: Frame) -> FrameResult:
        """Run every stage on one frame of one source."""
        return self.process_batch([frame])[0]

    def process_batch(self, frames: Sequence[Frame]) -> list[FrameResult]:
        """Run every stage on one frame from each of several sources, encoding all crops at once."""
        source_ids = [frame.source_id for frame in frames]
        if len(set(source_ids)) != len(source_ids):
            raise ValueError(f"process_batch takes at most one frame per source, got sources {source_ids}")
        started = time.perf_counter()
        timings: list[dict[str, float]] = [{} for _ in frames]
        events: list[list[Event]] = [[] for _ in frames]
        live_tracks: list[list[Track]] = []
        wanted: list[list[Track]] = []
        crops: list[np.ndarray] = []
        for i, frame in enumerate(frames):
            _check_image(frame)
            tracks = self._detect_and_track(frame, timings[i], events[i])
            live_tracks.append(tracks)
            state = self._sources[frame.source_id]
            detected = "detect" in timings[i]
            due = [
                track
                for track in tracks
                if track.state is TrackState.CONFIRMED
                and state.scorer.wants_sample(track.track_id, frame.timestamp_s)
                and not (detected and self._can_defer(state, track.track_id, frame.timestamp_s))
            ]
            for track in due:
                state.last_sample_s[track.track_id] = frame.timestamp_s
            wanted.append(due)
            if due:
                t0 = time.perf_counter()
                crops.append(np.asarray(self._crop(frame.image, due)))
                timings[i]["crop"] = _ms_since(t0)
        embeddings = self._encode(crops, timings, wanted)
        results = []
        offset = 0
        for i, frame in enumerate(frames):
            count = len(wanted[i])
            scores = self._score(frame, wanted[i], embeddings[offset : offset + count], timings[i])
            offset += count
            faces = self._face_results(frame, live_tracks[i], scores, events[i])
            timings[i]["total"] = _ms_since(started)
            self.stats.record(timings[i])
            results.append(
                FrameResult(frame=frame, faces=faces, events=tuple(events[i]), timings_ms=timings[i])
            )
        return results

    def _detect_and_track(self, frame: Frame, timings: dict[str, float], events: list[Event]) -> list[Track]:
        state = self._sources.get(frame.source_id)
        if state is None:
            step = FaceStep(
                self._detector, self._tracker_factory(frame.source_id), self.detect_every_n_frames
            )
            state = _SourceState(step=step, scorer=self._scorer_factory())
            self._sources[frame.source_id] = state
        stepped = state.step.track(frame.image, frame.timestamp_s)
        if stepped.detected:
            timings["detect"] = stepped.detect_ms
        timings["track"] = stepped.track_ms
        # The step reports live tracks only: an id that disappeared has ended.
        tracks = stepped.tracks
        current = {track.track_id for track in tracks}
        for track_id in sorted(state.live_ids - current):
            state.scorer.forget(track_id)
            state.last_sample_s.pop(track_id, None)
            self._end_track(frame.source_id, track_id, frame.timestamp_s, events)
        state.live_ids = current
        return tracks

    def _can_defer(self, state: _SourceState, track_id: int, timestamp_s: float) -> bool:
        """True when a due sample may wait one frame to keep encoding off a detection frame.

        Detection and encoding are the two expensive stages; a frame that runs both is the slow
        tail of the latency. Detection runs on every N-th processed frame, so with N >= 2 the next
        frame is detection-free and the wait is one frame; the scorer keeps its schedule across
        such a small delay, so the sample rate does not drop. A track's first sample, or one
        already two periods late, is not deferred.
        """
        if self.detect_every_n_frames == 1:
            return False
        last_s = state.last_sample_s.get(track_id)
        return last_s is not None and timestamp_s - last_s < 2.0 / state.scorer.sample_rate_hz

    def _encode(
        self, crops: list[np.ndarray], timings: list[dict[str, float]], wanted: list[list[Track]]
    ) -> np.ndarray:
        if not crops:
            return np.zeros((0, 512), dtype=np.float32)
        batch = np.concatenate(crops, axis=0)
        t0 = time.perf_counter()
        embeddings = np.asarray(self._encoder.encode(batch), dtype=np.float32)
        elapsed = _ms_since(t0)
        if embeddings.shape[0] != batch.shape[0]:
            raise ValueError(f"encoder returned {embeddings.shape[0]} embeddings for {batch.shape[0]} crops")
        # The batch is shared: every frame that contributed crops waited for all of it.
        for frame_timings, due in zip(timings, wanted, strict=True):
            if due:
                frame_timings["encode"] = elapsed
        return embeddings

    def _score(
        self, frame: Frame, due: list[Track], embeddings: np.ndarray, timings: dict[str, float]
    ) -> dict[int, Score]:
        if not due:
            return {}
        t0 = time.perf_counter()
        scorer = self._sources[frame.source_id].scorer
        items = [(track.track_id, embeddings[j], frame.timestamp_s) for j, track in enumerate(due)]
        scores = scorer.update_many(items)
        timings["score"] = _ms_since(t0)
        return {score.track_id: score for score in scores}

    def _face_results(
        self, frame: Frame, tracks: list[Track], scores: dict[int, Score], events: list[Event]
    ) -> tuple[FaceResult, ...]:
        faces = []
        for track in tracks:
            if track.state is TrackState.LOST and track.frames_since_update > 2 * self.detect_every_n_frames:
                continue  # coasting for a while without a detection: the face has likely gone
            confirmed = track.state is not TrackState.TENTATIVE
            key = (frame.source_id, track.track_id)
            record = self._records.get(key)
            if record is None and confirmed:
                record = TrackRecord(
                    source_id=frame.source_id,
                    track_id=track.track_id,
                    first_timestamp_s=frame.timestamp_s,
                    last_timestamp_s=frame.timestamp_s,
                    history=deque(maxlen=self.config.history_length),
                    announced=True,
                )
                self._records[key] = record
                events.append(self._event("track_new", frame, track.track_id, {"box_xyxy": _box_list(track)}))
            if record is None:
                faces.append(_face(track, False, math.nan, False, "UNSURE", (), 0))
                continue
            if track.state is TrackState.CONFIRMED:
                record.frames += 1
                record.last_timestamp_s = frame.timestamp_s
            score = scores.get(track.track_id)
            if score is not None:
                self._apply_score(record, score, frame, track, events)
            current = record.score
            p_fake = current.p_fake if current is not None else math.nan
            ready = bool(current is not None and current.ready)
            faces.append(
                _face(
                    track,
                    confirmed,
                    p_fake,
                    ready,
                    record.verdict,
                    tuple(record.history),
                    record.frames_scored,
                )
            )
        return tuple(faces)

    def _apply_score(
        self, record: TrackRecord, score: Score, frame: Frame, track: Track, events: list[Event]
    ) -> None:
        record.score = score
        record.frames_scored = score.frames_seen
        if score.ready and not math.isnan(score.p_fake):
            record.history.append(score.p_fake)
        verdict = self.verdicts.verdict(score.p_fake, score.ready)
        changed = verdict != record.verdict
        record.verdict = verdict
        if score.ready and (
            changed or frame.timestamp_s - record.last_update_event_s >= self.config.update_event_interval_s
        ):
            record.last_update_event_s = frame.timestamp_s
            events.append(self._event("track_update", frame, track.track_id, _score_data(record, track)))
        if self._alerts is not None and self._alerts.update(
            (record.source_id, record.track_id), score.p_fake, score.ready, frame.timestamp_s
        ):
            record.alerts += 1
            logger.warning(
                "ALERT: %s track %d p_fake %.2f past %.2f for %.1f s",
                record.source_id,
                record.track_id,
                score.p_fake,
                self._alerts.threshold,
                self._alerts.sustain_s,
            )
            data = _score_data(record, track) | {
                "threshold": self._alerts.threshold,
                "sustain_s": self._alerts.sustain_s,
            }
            events.append(self._event("alert", frame, track.track_id, data))

    def _end_track(self, source_id: str, track_id: int, timestamp_s: float, events: list[Event]) -> None:
        record = self._records.pop((source_id, track_id), None)
        if self._alerts is not None:
            self._alerts.forget((source_id, track_id))
        if record is None:
            return  # a tentative track that never confirmed: nothing was announced
        self._finished.append(record)
        events.append(
            Event(
                kind="track_end",
                source_id=source_id,
                track_id=track_id,
                timestamp_s=timestamp_s,
                wall_time=time.time(),
                data=record.summary(),
            )
        )

    def _event(self, kind: str, frame: Frame, track_id: int, data: dict[str, Any]) -> Event:
        return Event(
            kind=kind,
            source_id=frame.source_id,
            track_id=track_id,
            timestamp_s=frame.timestamp_s,
            wall_time=time.time(),
            data=data,
        )

    # -- end of run ------------------------------------------------------------------------

    def finish_source(self, source_id: str, timestamp_s: float) -> list[Event]:
        """End every track of a source (its input ended); returns their track_end events."""
        events: list[Event] = []
        state = self._sources.pop(source_id, None)
        if state is None:
            return events
        for track_id in sorted(state.live_ids):
            state.scorer.forget(track_id)
            self._end_track(source_id, track_id, timestamp_s, events)
        return events

    def finish(self) -> list[Event]:
        """End every source's tracks; returns their track_end events. Call once at the end."""
        events: list[Event] = []
        for source_id in list(self._sources):
            last = max(
                (r.last_timestamp_s for r in self._records.values() if r.source_id == source_id), default=0.0
            )
            events.extend(self.finish_source(source_id, last))
        return events

    def track_summaries(self) -> list[dict[str, Any]]:
        """Per track (ended and still live): frames, frames scored, final score and verdict."""
        records = self._finished + list(self._records.values())
        return [record.summary() for record in sorted(records, key=lambda r: (r.source_id, r.track_id))]


def _check_image(frame: Frame) -> None:
    image = frame.image
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        got = f"{image.shape} {image.dtype}" if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"frame image must be HxWx3 uint8 RGB, got {got}")


def _face(
    track: Track,
    confirmed: bool,
    p_fake: float,
    ready: bool,
    verdict: str,
    history: tuple[float, ...],
    scored: int,
) -> FaceResult:
    return FaceResult(
        track_id=track.track_id,
        box_xyxy=np.asarray(track.box_xyxy, dtype=np.float32),
        confirmed=confirmed,
        p_fake=p_fake,
        ready=ready,
        verdict=verdict,
        history=history,
        frames_scored=scored,
    )


def _box_list(track: Track) -> list[float]:
    return [round(float(v), 1) for v in track.box_xyxy]


def _score_data(record: TrackRecord, track: Track) -> dict[str, Any]:
    score = record.score
    return {
        "p_fake": None if score is None or math.isnan(score.p_fake) else round(score.p_fake, 4),
        "verdict": record.verdict,
        "frames_scored": record.frames_scored,
        "box_xyxy": _box_list(track),
    }


def _ms_since(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0
