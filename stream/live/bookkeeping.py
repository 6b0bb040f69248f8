"""What the live chain remembers about each track, and the results and events made from it.

``Pipeline`` schedules the stages; for every processed frame it hands this module the frame's live
tracks and the scores that arrived, and gets back the per-face results and the events
(``track_new``, ``track_update``, ``alert``, ``track_end``). Not thread-safe: the thread that calls
the pipeline owns it.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Mapping
from typing import Any

import numpy as np

from engine.score import ReferenceMatch, Score
from stream.contracts import Event, FaceResult, Frame
from stream.live.alerts import AlertMonitor, ReferenceAlertMonitor
from stream.live.track_record import TrackRecord, reference_data
from stream.live.verdict import VerdictRule
from tracking.track import Track, TrackState

logger = logging.getLogger(__name__)


class TrackBook:
    """Per-track records of a pipeline (all its sources), keyed by ``(source_id, track_id)``.

    Args:
        verdicts: turns a score into REAL / FAKE / UNSURE.
        history_length: score values kept per track for the sparkline and charts.
        update_event_interval_s: at most one track_update event per track per this many seconds
            of stream time (a verdict change is always reported at once).
        hide_lost_after_frames: a LOST track coasting for more than this many frames without a
            detection is left out of the frame's results (the face has likely gone).
        alerts: the alert rule; None for no alert events.
        reference_alerts: the enrolment alert rule; None for none.
    """

    def __init__(
        self,
        *,
        verdicts: VerdictRule,
        history_length: int,
        update_event_interval_s: float,
        hide_lost_after_frames: int,
        alerts: AlertMonitor | None = None,
        reference_alerts: ReferenceAlertMonitor | None = None,
    ) -> None:
        self.verdicts = verdicts
        self._history_length = history_length
        self._update_event_interval_s = update_event_interval_s
        self._hide_lost_after_frames = hide_lost_after_frames
        self._alerts = alerts
        self._reference_alerts = reference_alerts
        self._records: dict[tuple[str, int], TrackRecord] = {}
        self._finished: list[TrackRecord] = []

    def face_results(
        self, frame: Frame, tracks: list[Track], scores: Mapping[int, Score], events: list[Event]
    ) -> tuple[FaceResult, ...]:
        """The frame's per-face results; applies ``scores`` (track_id -> new score) and appends
        the events they cause (a newly confirmed track, a score update, an alert) to ``events``."""
        faces = []
        for track in tracks:
            if track.state is TrackState.LOST and track.frames_since_update > self._hide_lost_after_frames:
                continue
            confirmed = track.state is not TrackState.TENTATIVE
            key = (frame.source_id, track.track_id)
            record = self._records.get(key)
            if record is None and confirmed:
                record = TrackRecord(
                    source_id=frame.source_id,
                    track_id=track.track_id,
                    first_timestamp_s=frame.timestamp_s,
                    last_timestamp_s=frame.timestamp_s,
                    history=deque(maxlen=self._history_length),
                    announced=True,
                )
                self._records[key] = record
                events.append(_event("track_new", frame, track.track_id, {"box_xyxy": _box_list(track)}))
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
                    None if current is None else current.reference,
                )
            )
        return tuple(faces)

    def end_track(self, source_id: str, track_id: int, timestamp_s: float, events: list[Event]) -> None:
        """The track ended: keep its record for the summary and append its track_end event."""
        record = self._records.pop((source_id, track_id), None)
        for monitor in (self._alerts, self._reference_alerts):
            if monitor is not None:
                monitor.forget((source_id, track_id))
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

    def last_timestamp_s(self, source_id: str) -> float:
        """Stream time of the source's latest confirmed frame among its live tracks (0 if none)."""
        return max(
            (r.last_timestamp_s for r in self._records.values() if r.source_id == source_id), default=0.0
        )

    def summaries(self) -> list[dict[str, Any]]:
        """Per track (ended and still live): frames, frames scored, final score and verdict."""
        records = self._finished + list(self._records.values())
        return [record.summary() for record in sorted(records, key=lambda r: (r.source_id, r.track_id))]

    def _apply_score(
        self, record: TrackRecord, score: Score, frame: Frame, track: Track, events: list[Event]
    ) -> None:
        previous = record.score
        record.score = score
        record.frames_scored = score.frames_seen
        if score.ready and not math.isnan(score.p_fake):
            record.history.append(score.p_fake)
        verdict = self.verdicts.verdict(score.p_fake, score.ready)
        changed = verdict != record.verdict or _reference_verdict(previous) != _reference_verdict(score)
        record.verdict = verdict
        if score.ready and (
            changed or frame.timestamp_s - record.last_update_event_s >= self._update_event_interval_s
        ):
            record.last_update_event_s = frame.timestamp_s
            events.append(_event("track_update", frame, track.track_id, _score_data(record, track)))
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
                "reason": "score",
                "threshold": self._alerts.threshold,
                "sustain_s": self._alerts.sustain_s,
            }
            events.append(_event("alert", frame, track.track_id, data))
        match = score.reference
        if (
            self._reference_alerts is not None
            and match is not None
            and self._reference_alerts.update(
                (record.source_id, record.track_id),
                match.verdict,
                frame.timestamp_s,
                held=self._enrolled_person_present(record),
            )
        ):
            record.alerts += 1
            logger.warning(
                "ALERT: %s track %d does not match the enrolled person (%s: inner %.2f, outer %.2f) "
                "for %.1f s",
                record.source_id,
                record.track_id,
                match.verdict,
                match.inner_sim,
                match.outer_sim,
                self._reference_alerts.sustain_s,
            )
            data = _score_data(record, track) | {
                "reason": "reference",
                "sustain_s": self._reference_alerts.sustain_s,
            }
            events.append(_event("alert", frame, track.track_id, data))

    def _enrolled_person_present(self, record: TrackRecord) -> bool:
        """Whether another live track of ``record``'s source matches the enrolled person now."""
        return any(
            other is not record
            and other.source_id == record.source_id
            and other.score is not None
            and other.score.reference is not None
            and other.score.reference.verdict == "match"
            for other in self._records.values()
        )


def _event(kind: str, frame: Frame, track_id: int, data: dict[str, Any]) -> Event:
    return Event(
        kind=kind,
        source_id=frame.source_id,
        track_id=track_id,
        timestamp_s=frame.timestamp_s,
        wall_time=time.time(),
        data=data,
    )


def _face(
    track: Track,
    confirmed: bool,
    p_fake: float,
    ready: bool,
    verdict: str,
    history: tuple[float, ...],
    scored: int,
    reference: ReferenceMatch | None = None,
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
        reference=reference,
    )


def _reference_verdict(score: Score | None) -> str | None:
    return None if score is None or score.reference is None else score.reference.verdict


def _box_list(track: Track) -> list[float]:
    return [round(float(v), 1) for v in track.box_xyxy]


def _score_data(record: TrackRecord, track: Track) -> dict[str, Any]:
    score = record.score
    return {
        "p_fake": None if score is None or math.isnan(score.p_fake) else round(score.p_fake, 4),
        "verdict": record.verdict,
        "frames_scored": record.frames_scored,
        "box_xyxy": _box_list(track),
        **reference_data(score),
    }
