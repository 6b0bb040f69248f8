"""One stream as a Ray actor: capture, detection, tracking, crops and scoring of one source.

The actor runs the live ``Pipeline`` for its source, with the shared encoder pool behind a
``PooledEncoder``: for a live source on the pipeline's worker threads (frames never wait for the
pool; a face's score arrives with a later frame), for a file inline (every frame's results
complete). The driver pulls results one ``step`` at a time and passes a ``Cursor`` with
each call: what it has already received (frames, events, track ids). The cursor is what makes a
restart clean. Ray restarts a dead actor (``max_restarts``) by running its constructor again, on
any node that fits; the new incarnation learns from the first cursor where the stream stood, so

- a file resumes at the frame after the last one delivered (earlier frames are read and skipped),
  a live source at its newest frame;
- event sequence numbers continue from the cursor, so the JSONL shows nothing lost or doubled;
- track ids continue above every id delivered, so a new incarnation never reuses an id.

A step whose result never reached the driver is simply asked for again with the same cursor.
Tracker and scorer state do not survive a restart: faces get new tracks after it.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from stream.cluster.encoder_pool import PooledEncoder
from stream.cluster.stages import StageFactory
from stream.contracts import Event, FaceResult
from stream.sources.config import SourceConfig
from stream.sources.spec import open_source

logger = logging.getLogger(__name__)

# How long one step waits for a frame before returning empty-handed (the driver asks again).
_READ_TIMEOUT_S = 0.2


@dataclass(frozen=True)
class StreamSpec:
    """What a stream worker opens: the source string and how to read it."""

    spec: str
    source_id: str
    source_config: SourceConfig = field(default_factory=SourceConfig)
    realtime: bool = False
    loop: bool = False
    want_images: bool = False


@dataclass(frozen=True)
class Cursor:
    """Where the driver stands on a stream: the next frame index (files), event sequence number,
    and the smallest track id not yet used."""

    next_frame_index: int = 0
    next_event_seq: int = 0
    next_track_id: int = 1


@dataclass(frozen=True)
class StepResult:
    """One step of a stream.

    Attributes:
        frame_index, timestamp_s: the frame processed (-1 and NaN when none was ready).
        faces, events: the pipeline's results, track ids already shifted for this incarnation;
            each event's ``data["seq"]`` is its per-stream sequence number.
        image: the frame (H x W x 3 uint8 RGB) when the spec wants images, else None.
        ended: the source ended; ``events`` then holds the track_end events of its last tracks.
        timings_ms: per-stage milliseconds of this frame.
        capture_to_result_ms: for live sources, capture time to the end of processing, measured
            on the worker's clock; NaN otherwise.
        frames_read, frames_dropped: the source's counters in this incarnation.
        live: the source keeps only its newest frame (a camera, a stream, a paced file).
        incarnation: a number that changes when Ray restarts the actor.
        node_id: the Ray node that ran this step.
        enrolled: ``(name, photos)`` of the person this stream's worker enrolled, or None.
    """

    frame_index: int
    timestamp_s: float
    faces: tuple[FaceResult, ...]
    events: tuple[Event, ...]
    image: np.ndarray | None
    ended: bool
    timings_ms: dict[str, float]
    capture_to_result_ms: float
    frames_read: int
    frames_dropped: int
    live: bool
    incarnation: str
    node_id: str
    enrolled: tuple[str, int] | None = None


class StreamWorker:
    """Body of one stream actor (see the module docstring); ``stream.cluster.driver`` starts it.

    The first ``step`` opens the source, so an input that cannot be opened (or fails later)
    raises its ``SourceError`` to the driver as this stream's error; the other streams go on.
    """

    def __init__(self, stream: StreamSpec, stages: StageFactory, encoders: list[Any], nice: int = 0) -> None:
        import ray

        if nice:
            # Before the pipeline starts its threads: Linux keeps a priority per thread, and new
            # threads take their creator's.
            os.nice(nice)
        self._stream = stream
        self._node_id = ray.get_runtime_context().get_node_id()
        self._incarnation = f"{self._node_id[:8]}-{time.time_ns()}"
        self._source = open_source(
            stream.spec,
            stream.source_config,
            realtime=stream.realtime,
            loop=stream.loop,
            source_id=stream.source_id,
        )
        built = stages.new_pipeline(PooledEncoder(encoders, stream.source_id), live=self._source.live)
        self._pipeline = built.pipeline
        self._enrolled = built.enrolled
        self._cursor: Cursor | None = None
        self._track_offset = 0
        self._event_seq = 0
        self._last_timestamp_s = 0.0
        logger.info("stream %s started on node %s", stream.source_id, self._node_id[:8])

    def where(self) -> tuple[str, str]:
        """(node id, incarnation) of this actor."""
        return self._node_id, self._incarnation

    def step(self, cursor: Cursor) -> StepResult:
        """Process the next frame (waiting up to 0.2 s for one); see ``StepResult``."""
        if self._cursor is None:
            self._resume(cursor)
        self._cursor = cursor
        self._event_seq = cursor.next_event_seq
        frame = self._read(cursor)
        if frame is None:
            if not self._source.ended:
                return self._result(-1, float("nan"), (), (), None, {}, ended=False)
            events = self._pipeline.finish_source(self._stream.source_id, self._last_timestamp_s)
            return self._result(-1, float("nan"), (), self._renumber(events), None, {}, ended=True)
        self._last_timestamp_s = frame.timestamp_s
        result = self._pipeline.process(frame)
        latency_ms = float("nan")
        if self._source.live:
            latency_ms = (time.monotonic() - self._source.clock_origin_s - frame.timestamp_s) * 1000.0
        faces = tuple(
            dataclasses.replace(face, track_id=face.track_id + self._track_offset) for face in result.faces
        )
        return self._result(
            frame.index,
            frame.timestamp_s,
            faces,
            self._renumber(list(result.events)),
            frame.image if self._stream.want_images else None,
            dict(result.timings_ms),
            ended=False,
            latency_ms=latency_ms,
        )

    def finish(self, cursor: Cursor) -> tuple[Event, ...]:
        """End the stream now (a stop request): stop the source, return its last track_end events."""
        if self._cursor is None:
            self._cursor = cursor
            return ()  # never started: nothing to end
        self._event_seq = cursor.next_event_seq
        self._source.stop()
        events = self._pipeline.finish_source(self._stream.source_id, self._last_timestamp_s)
        return self._renumber(events)

    def _resume(self, cursor: Cursor) -> None:
        # The first call of an incarnation: open the input; ids continue above what the driver has seen.
        self._source.start()
        self._track_offset = cursor.next_track_id - 1
        if cursor.next_frame_index or cursor.next_event_seq:
            logger.warning(
                "stream %s resumed on node %s at frame %d, event %d",
                self._stream.source_id,
                self._node_id[:8],
                cursor.next_frame_index,
                cursor.next_event_seq,
            )

    def _read(self, cursor: Cursor) -> Any:
        deadline = time.monotonic() + _READ_TIMEOUT_S
        while True:
            frame = self._source.read(max(0.0, deadline - time.monotonic()))
            if frame is None:
                return None
            # A restarted file source reads from its start: skip what was already delivered.
            if self._source.live or frame.index >= cursor.next_frame_index:
                return frame

    def _renumber(self, events: list[Event]) -> tuple[Event, ...]:
        renumbered = []
        for event in events:
            data = dict(event.data)
            if "track_id" in data:
                data["track_id"] = event.track_id + self._track_offset
            data["seq"] = self._event_seq
            self._event_seq += 1
            renumbered.append(
                dataclasses.replace(event, track_id=event.track_id + self._track_offset, data=data)
            )
        return tuple(renumbered)

    def _result(
        self,
        frame_index: int,
        timestamp_s: float,
        faces: tuple[FaceResult, ...],
        events: tuple[Event, ...],
        image: np.ndarray | None,
        timings_ms: dict[str, float],
        *,
        ended: bool,
        latency_ms: float = float("nan"),
    ) -> StepResult:
        return StepResult(
            frame_index=frame_index,
            timestamp_s=timestamp_s,
            faces=faces,
            events=events,
            image=image,
            ended=ended,
            timings_ms=timings_ms,
            capture_to_result_ms=latency_ms,
            frames_read=self._source.frames_read,
            frames_dropped=self._source.frames_dropped,
            live=self._source.live,
            incarnation=self._incarnation,
            node_id=self._node_id,
            enrolled=self._enrolled,
        )
