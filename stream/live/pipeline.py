"""The pipeline core: schedules detect -> track -> crop -> encode -> score for every stream.

Calling contract: one thread calls ``process`` (or ``process_batch`` for several sources, at most
one frame of each) with each source's frames in order, then ``finish`` once at the end. Every
frame of every source is tracked (the Kalman tracker predicts between detections) and gets its
results at once. The expensive stages are shared (``stream.live.batching.SharedStages``): a
source asks for a detection every ``detect_every_n_frames`` frames, and a confirmed track for a
sample at the scorer's rate; the requests of all sources (and of every pipeline attached to the
same stages) run as one detection batch and one encode + score batch.

Two ways to run them:

- inline (the stages not started): each call runs its batches before returning, so a frame's
  detection feeds the tracker on that very frame and its scores are in that frame's result.
  Deterministic; used for files read as fast as possible, and for tests.
- threaded (``SharedStages.start()``): the batches run on worker threads and their results are
  picked up on a later frame of the same source, so no frame waits for MTCNN or the encoder; a
  detection is applied to the tracker on the frame it arrives at (a few frames after the one it
  was made on; the Kalman filter absorbs the small offset), and the load-shedding rule of
  ``stream.live.shedding`` sets each source's detection interval and the sampling rate. A source
  with a detection still in flight does not ask for another. When scoring cannot keep up even so,
  the scoring worker shares what it can do between all tracks of all sources
  (``stream.live.batching``): every track keeps being scored, less often.

What is remembered per track, and the events, are ``stream.live.bookkeeping``'s.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engine.score import Score
from stream.contracts import Cropper, Detector, Encoder, Event, Frame, FrameResult, Scorer, Tracker
from stream.live.alerts import AlertMonitor, ReferenceAlertMonitor
from stream.live.batching import ScoreRequest, SharedStages
from stream.live.bookkeeping import TrackBook
from stream.live.stats import RunStats
from stream.live.verdict import VerdictRule
from tracking.face_step import DetectionSchedule
from tracking.track import Track, TrackState

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PipelineConfig:
    """How the pipeline schedules its stages and reports.

    Attributes:
        threshold: p_fake decision threshold; None uses the model's calibrated threshold (the one
            rule is ``stream.live.verdict.resolve_threshold``; the pipeline takes the result).
        uncertain_margin: scores within this distance of the threshold are UNSURE.
        history_length: score values kept per track for the sparkline and charts.
        update_event_interval_s: at most one track_update event per track per this many seconds
            of stream time (a verdict change is always reported at once).
        torch_threads: CPU threads torch may use (scorer head, and MTCNN unless the detector
            sets its own); None keeps torch's default. 1 by default: measured on the 2-core
            machine under load, the LSTM head took 51 ms per update with 1 thread and 289 ms
            with 2 (threads spin-waiting for each other).
        min_sample_rate_hz: the lowest rate the load-shedding rule may sample a track at, Hz
            (``stream.live.shedding``); at most the model's rate.
        max_detect_factor: the load-shedding rule may stretch each stream's detection interval up
            to this many times the tracker's ``detect_every_n_frames``.
    """

    threshold: float | None = None
    uncertain_margin: float = 0.1
    history_length: int = 48
    update_event_interval_s: float = 1.0
    torch_threads: int | None = 1
    min_sample_rate_hz: float = 2.0
    max_detect_factor: int = 3

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
        if not self.min_sample_rate_hz > 0:
            raise ValueError(f"min_sample_rate_hz must be > 0, got {self.min_sample_rate_hz!r}")
        if (
            isinstance(self.max_detect_factor, bool)
            or not isinstance(self.max_detect_factor, int)
            or (self.max_detect_factor < 1)
        ):
            raise ValueError(f"max_detect_factor must be an integer >= 1, got {self.max_detect_factor!r}")


@dataclass
class _TrackClock:
    rate_hz: float
    clock: Any  # engine.scorer.SampleClock: the scorer's own sampling rule
    last_sample_s: float | None = None


@dataclass
class _SourceState:
    tracker: Tracker
    frames: int = 0
    detection: DetectionSchedule = field(default_factory=DetectionSchedule)
    live_ids: set[int] = field(default_factory=set)
    clocks: dict[int, _TrackClock] = field(default_factory=dict)


class Pipeline:
    """Schedules the stages; see the module docstring for the calling contract.

    Args:
        tracker_factory: makes the tracker of a new source, given its source_id.
        crop: cuts 160 x 160 face crops for tracks.
        stages: the shared detection and scoring stages; None builds inline ones of its own from
            ``detector``, ``encoder`` and ``scorer_factory``.
        detector: finds faces (only without ``stages``).
        encoder: embeds crops (only without ``stages``).
        scorer_factory: makes the scorer (only without ``stages``; called once: one scorer serves
            every source, its track ids made unique by the stages).
        detect_every_n_frames: ask for a detection on every N-th frame of a source (the tracker's
            ``TrackerConfig.detect_every_n_frames``) while the load is light.
        config: scheduling and reporting settings.
        threshold: the decision threshold, resolved by the caller (``verdict.resolve_threshold``).
        alerts: the alert rule; None for no alert events.
        reference_alerts: the enrolment alert rule (``stream.live.alerts``); None for none.
        real_threshold: with ``threshold``, the model's calibrated REAL bound (``VerdictRule``);
            None for the uncalibrated rule (a threshold set in the config, or an old checkpoint).
    """

    def __init__(
        self,
        *,
        tracker_factory: Callable[[str], Tracker],
        crop: Cropper,
        stages: SharedStages | None = None,
        detector: Detector | None = None,
        encoder: Encoder | None = None,
        scorer_factory: Callable[[], Scorer] | None = None,
        detect_every_n_frames: int = 1,
        config: PipelineConfig | None = None,
        threshold: float = 0.5,
        alerts: AlertMonitor | None = None,
        reference_alerts: ReferenceAlertMonitor | None = None,
        real_threshold: float | None = None,
    ) -> None:
        if detect_every_n_frames < 1:
            raise ValueError(f"detect_every_n_frames must be >= 1, got {detect_every_n_frames}")
        if stages is None:
            if detector is None or encoder is None or scorer_factory is None:
                raise ValueError(
                    "Pipeline needs either stages, or a detector, an encoder and a scorer_factory"
                )
            stages = SharedStages(
                detector=detector,
                encoder=encoder,
                scorer=scorer_factory(),
                detect_every_n_frames=detect_every_n_frames,
            )
        self.config = config or PipelineConfig()
        self.detect_every_n_frames = detect_every_n_frames
        # engine.scorer imports torch; the config imports this module and must stay light.
        from engine.scorer import SampleClock

        self._sample_clock = SampleClock
        self.stages = stages
        self._owner = stages.new_owner()
        self._tracker_factory = tracker_factory
        self._crop = crop
        self.book = TrackBook(
            verdicts=VerdictRule(
                threshold,
                self.config.uncertain_margin,
                None if self.config.threshold is not None else real_threshold,
            ),
            history_length=self.config.history_length,
            update_event_interval_s=self.config.update_event_interval_s,
            hide_lost_after_frames=2 * detect_every_n_frames,
            alerts=alerts,
            reference_alerts=reference_alerts,
        )
        self._sources: dict[str, _SourceState] = {}
        self.frames_by_source: dict[str, int] = {}
        # Samples of each source dropped from the scoring queue because newer ones replaced them.
        self.samples_shed_by_source: dict[str, int] = {}
        self.stats = RunStats()

    @property
    def worker_stats(self) -> RunStats | None:
        """Batch timings of the shared stages when they run on worker threads; None when inline."""
        return self.stages.stats if self.stages.started else None

    # -- per frame -------------------------------------------------------------------------

    def process(self, frame: Frame) -> FrameResult:
        """Run every stage on one frame of one source."""
        return self.process_batch([frame])[0]

    def process_batch(self, frames: Sequence[Frame]) -> list[FrameResult]:
        """Process one frame from each of several sources; their requests share the batches."""
        source_ids = [frame.source_id for frame in frames]
        if len(set(source_ids)) != len(source_ids):
            raise ValueError(f"process_batch takes at most one frame per source, got sources {source_ids}")
        for frame in frames:
            _check_image(frame)
        started = time.perf_counter()
        inline = not self.stages.started
        level = self.stages.shedder.current
        timings: list[dict[str, float]] = [{} for _ in frames]
        events: list[list[Event]] = [[] for _ in frames]
        states = [self._state(frame.source_id) for frame in frames]

        # Step 1: ask for detections of the sources that are due.
        detect_every = level.detect_every_n_frames if not inline else self.detect_every_n_frames
        asked = [state.detection.ask(detect_every) for state in states]
        self.stages.detection.submit_many(
            [
                (self._detect_key(frame.source_id), frame.image)
                for frame, did in zip(frames, asked, strict=True)
                if did
            ]
        )
        if inline and any(asked):
            self.stages.detection.run_all()
            for frame_timings, did_ask in zip(timings, asked, strict=True):
                if did_ask:  # the batch is shared: every frame in it waited for all of it
                    frame_timings["detect"] = self.stages.last_timings_ms["detect"]

        # Step 2: track every frame, with the detections that have arrived.
        live_tracks: list[list[Track]] = []
        detected: list[bool] = []
        for i, (frame, state) in enumerate(zip(frames, states, strict=True)):
            delivered = self.stages.detection.take(self._detect_key(frame.source_id))
            detections = None
            if delivered is not None:
                state.detection.delivered()
                detections = delivered.value
                if not inline:
                    self.stages.shedder.observe_detection(delivered.done_s - delivered.submitted_s)
            detected.append(detections is not None)
            live_tracks.append(self._track(frame, state, detections, timings[i], events[i]))

        # Step 3: crop the confirmed tracks that are due for a sample and ask for their scores.
        sample_rate_hz = level.sample_rate_hz if not inline else self.stages.sample_rate_hz
        cropped = [False] * len(frames)
        requests: list[tuple[Hashable, ScoreRequest]] = []
        source_of: dict[Hashable, str] = {}
        for i, (frame, state) in enumerate(zip(frames, states, strict=True)):
            due = self._due_tracks(frame, state, live_tracks[i], sample_rate_hz, defer=inline and detected[i])
            if not due:
                continue
            t0 = time.perf_counter()
            crops = np.asarray(self._crop(frame.image, due))
            timings[i]["crop"] = _ms_since(t0)
            cropped[i] = True
            for track, crop in zip(due, crops, strict=True):
                key = self._score_key(frame.source_id, track.track_id)
                requests.append((key, ScoreRequest(crop, frame.timestamp_s)))
                source_of[key] = frame.source_id
        for key in self.stages.scoring.submit_many(requests):
            self.stages.shedder.observe_shed()
            source_id = source_of[key]
            self.samples_shed_by_source[source_id] = self.samples_shed_by_source.get(source_id, 0) + 1
        if inline and any(cropped):
            self.stages.scoring.run_all()
            for frame_timings, did_crop in zip(timings, cropped, strict=True):
                if did_crop:
                    frame_timings["encode"] = self.stages.last_timings_ms["encode"]
                    frame_timings["score"] = self.stages.last_timings_ms["score"]

        # Step 4: the results, with the scores that have arrived.
        results = []
        for i, frame in enumerate(frames):
            scores = self._arrived_scores(frame.source_id, live_tracks[i], inline)
            faces = self.book.face_results(frame, live_tracks[i], scores, events[i])
            timings[i]["total"] = _ms_since(started)
            self.stats.record(timings[i])
            self.frames_by_source[frame.source_id] = self.frames_by_source.get(frame.source_id, 0) + 1
            results.append(
                FrameResult(frame=frame, faces=faces, events=tuple(events[i]), timings_ms=timings[i])
            )
        return results

    def _state(self, source_id: str) -> _SourceState:
        state = self._sources.get(source_id)
        if state is None:
            state = _SourceState(tracker=self._tracker_factory(source_id))
            self._sources[source_id] = state
        return state

    def _detect_key(self, source_id: str) -> Hashable:
        return (self._owner, source_id)

    def _score_key(self, source_id: str, track_id: int) -> Hashable:
        return (self._owner, source_id, track_id)

    def _track(
        self,
        frame: Frame,
        state: _SourceState,
        detections: list | None,
        timings: dict[str, float],
        events: list[Event],
    ) -> list[Track]:
        state.frames += 1
        t0 = time.perf_counter()
        tracks = state.tracker.update(detections, frame.timestamp_s)
        timings["track"] = _ms_since(t0)
        # The tracker reports live tracks only: an id that disappeared has ended.
        tracks = [track for track in tracks if track.state is not TrackState.ENDED]
        current = {track.track_id for track in tracks}
        ended = sorted(state.live_ids - current)
        for track_id in ended:
            state.clocks.pop(track_id, None)
            self.book.end_track(frame.source_id, track_id, frame.timestamp_s, events)
        self.stages.scoring.forget([self._score_key(frame.source_id, track_id) for track_id in ended])
        state.live_ids = current
        return tracks

    def _due_tracks(
        self, frame: Frame, state: _SourceState, tracks: list[Track], rate_hz: float, *, defer: bool
    ) -> list[Track]:
        due = []
        for track in tracks:
            if track.state is not TrackState.CONFIRMED:
                continue
            entry = state.clocks.get(track.track_id)
            if entry is None or entry.rate_hz != rate_hz:
                last = entry.last_sample_s if entry is not None else None
                entry = state.clocks[track.track_id] = _TrackClock(rate_hz, self._sample_clock(rate_hz), last)
                if last is not None:
                    entry.clock.mark(last)
            if not entry.clock.is_due(frame.timestamp_s):
                continue
            if defer and self._can_defer(entry, frame.timestamp_s):
                continue
            entry.clock.mark(frame.timestamp_s)
            entry.last_sample_s = frame.timestamp_s
            due.append(track)
        return due

    def _can_defer(self, entry: _TrackClock, timestamp_s: float) -> bool:
        """True when a due sample may wait one frame to keep encoding off a detection frame.

        Inline only: detection and encoding are the two expensive stages, and a frame that runs
        both is the slow tail of the latency. Detection runs on every N-th frame, so with N >= 2
        the next frame is detection-free and the wait is one frame; the sample clock keeps its
        schedule across such a small delay, so the sample rate does not drop. A track's first
        sample, or one already two periods late, is not deferred.
        """
        if self.detect_every_n_frames == 1:
            return False
        last_s = entry.last_sample_s
        return last_s is not None and timestamp_s - last_s < 2.0 / entry.rate_hz

    def _arrived_scores(self, source_id: str, tracks: list[Track], inline: bool) -> dict[int, Score]:
        scores: dict[int, Score] = {}
        for track in tracks:
            delivered = self.stages.scoring.take(self._score_key(source_id, track.track_id))
            if delivered is None:
                continue
            if not inline:
                self.stages.shedder.observe_scoring(delivered.done_s - delivered.submitted_s)
            # The scorer knows the track by the stages' id; results carry the tracker's.
            scores[track.track_id] = dataclasses.replace(delivered.value, track_id=track.track_id)
        return scores

    # -- end of run ------------------------------------------------------------------------

    def finish_source(self, source_id: str, timestamp_s: float) -> list[Event]:
        """End every track of a source (its input ended); returns their track_end events."""
        events: list[Event] = []
        state = self._sources.pop(source_id, None)
        if state is None:
            return events
        self.stages.detection.forget([self._detect_key(source_id)])
        self.stages.scoring.forget(
            [self._score_key(source_id, track_id) for track_id in sorted(state.live_ids)]
        )
        for track_id in sorted(state.live_ids):
            self.book.end_track(source_id, track_id, timestamp_s, events)
        return events

    def finish(self) -> list[Event]:
        """End every source's tracks; returns their track_end events. Call once at the end."""
        events: list[Event] = []
        for source_id in list(self._sources):
            events.extend(self.finish_source(source_id, self.book.last_timestamp_s(source_id)))
        return events

    def track_summaries(self) -> list[dict[str, Any]]:
        """Per track (ended and still live): frames, frames scored, final score and verdict."""
        return self.book.summaries()

    def load(self) -> dict[str, object]:
        """The shared stages' load figures (shedding level, batches, shed samples)."""
        return self.stages.describe()


def _check_image(frame: Frame) -> None:
    image = frame.image
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        got = f"{image.shape} {image.dtype}" if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"frame image must be HxWx3 uint8 RGB, got {got}")


def _ms_since(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0
