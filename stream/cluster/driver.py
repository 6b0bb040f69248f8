"""The cluster run's driver: starts the actors, pulls every stream's results, feeds the sinks.

One ``step`` per stream is in flight at a time, so each stream's results arrive in order while
the streams run side by side on their actors; the driver waits on whichever finishes first
(``ray.wait``). A stream whose actor dies is asked again with the same cursor: Ray restarts the
actor (``max_restarts``) and queues the call until it is back. A stream whose actor cannot be
started, or dies more often than that, ends with an error for that stream only; the others go on.

The driver checks what it receives against the cursor (frame indices of files and event
sequence numbers contiguous per stream) and logs any gap; the tests assert there is none.
"""

from __future__ import annotations

import logging
import math
import os
import re
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from stream.cluster.encoder_pool import PoolOptions, start_pool
from stream.cluster.stages import StageFactory
from stream.cluster.stream_worker import Cursor, StepResult, StreamSpec, StreamWorker
from stream.contracts import Event, Frame, FrameResult, check_unique_stream_ids
from stream.live.overlay import OverlayStatus, draw_overlay
from stream.live.runner import RunOutcome
from stream.live.stats import RunStats, dropped_percent
from stream.sinks.sink import Sink, close_sinks

logger = logging.getLogger(__name__)

# How long one wait for any stream's result lasts before the loop re-checks stop requests, s.
_WAIT_S = 0.5
# Capture-to-result latencies kept for percentiles.
_MAX_LATENCY_SAMPLES = 8192
# A stream whose worker does not answer is asked again after this pause, seconds...
_RETRY_PAUSE_S = 0.2
# ...for at most this long before the stream fails (Ray declares a lost node dead well before).
_UNAVAILABLE_LIMIT_S = 60.0
# Ray's switch for "no multi-node cluster here": with it off, Ray takes 127.0.0.1 as this node's
# address everywhere (its name says Windows/OSX, its effect is only that).
LOOPBACK_ONLY_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
# Ray starts its workers at nice 15 unless told otherwise (``worker_niceness``). Then the encoder
# pool and every stream run below any ordinary process on the machine: beside a busy browser or
# build, or a second ``deepwatch run``, they get a few percent of a core, and a 3 s clip took over
# 10 minutes beside three busy loops on 2 cores. A local instance starts its workers at the
# priority of the ``deepwatch run`` that started it; the streams then go ``stream_nice`` below
# the pool as before (docs/cluster.md says how to start a cluster's nodes the same way).
RAY_SYSTEM_CONFIG = {"worker_niceness": 0}
# How long a stop waits for the streams' last track_end events, seconds.
_FINISH_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class ClusterOptions:
    """Where and how the streams run.

    Attributes:
        address: ``local`` starts a Ray instance in this process's machine; anything else is the
            address of a running cluster (``ray://host:10001`` or ``host:6379``).
        stream_num_cpus: CPUs each stream actor reserves.
        max_restarts: times Ray restarts a stream actor that died (a node lost, a crash).
        stream_nice: nice levels the stream actors add to their own (``os.nice``, 0..19; the
            kernel caps the result at 19). Where streams and the encoder pool share a node's
            cores, capture and detection then yield the CPU to the shared encoder, so a node
            that falls behind drops frames before it stops scoring faces (the shedding order of
            the in-process run); on a node of their own it changes nothing. ``local`` starts
            Ray's workers at the driver's priority (``RAY_SYSTEM_CONFIG``; nice 0 for a normally
            started run), so the default 4 puts streams at 4 against the pool's 0: about 2.4
            times the CPU share for the pool when both are busy
            (on a cluster left at Ray's own worker nice 15: 19 against 15, the same ratio).
            0 leaves the priority alone.
        pool: the shared encoder pool.
    """

    address: str = "local"
    stream_num_cpus: float = 1.0
    max_restarts: int = 3
    stream_nice: int = 4
    pool: PoolOptions = field(default_factory=PoolOptions)

    def __post_init__(self) -> None:
        if not self.address:
            raise ValueError("the Ray address must be 'local' or a cluster address, got ''")
        if self.stream_num_cpus < 0:
            raise ValueError(f"stream_num_cpus must be >= 0, got {self.stream_num_cpus}")
        if not isinstance(self.max_restarts, int) or self.max_restarts < 0:
            raise ValueError(f"max_restarts must be an integer >= 0, got {self.max_restarts!r}")
        if not isinstance(self.stream_nice, int) or not 0 <= self.stream_nice <= 19:
            raise ValueError(f"stream_nice must be an integer in 0..19, got {self.stream_nice!r}")


def connect(address: str, local_cpus: float = 0.0) -> None:
    """``ray.init`` for ``address``: ``local`` starts a private instance bound to 127.0.0.1
    without a dashboard, declaring at least ``local_cpus`` logical CPUs (every stream actor must
    fit, as every stream's thread fits in one process); otherwise joins the given cluster. Does
    nothing if already connected."""
    if address == "local" and "ray" not in sys.modules:
        # Else Ray resolves loopback addresses to the machine's interface address when its
        # processes connect to each other (read once, when ray is imported).
        os.environ.setdefault(LOOPBACK_ONLY_ENV, "0")
    import ray

    if ray.is_initialized():
        return
    if address == "local":
        ray.init(
            # "local" always starts a new instance, never joins one found running on this machine.
            address="local",
            num_cpus=max(os.cpu_count() or 1, math.ceil(local_cpus)),
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            log_to_driver=True,
            configure_logging=False,
            _system_config=RAY_SYSTEM_CONFIG,
        )
    else:
        ray.init(address=address, configure_logging=False)


@dataclass
class _Stream:
    spec: StreamSpec
    actor: Any
    cursor: Cursor = field(default_factory=Cursor)
    pending: Any = None
    failures: int = 0
    restarts: int = 0
    incarnation: str | None = None
    nodes: list[str] = field(default_factory=list)
    frames_read: int = 0
    frames_dropped: int = 0
    read_before: int = 0
    dropped_before: int = 0
    frames_processed: int = 0
    error: str | None = None
    done: bool = False
    last_result_s: float | None = None
    resume_gaps_s: list[float] = field(default_factory=list)
    last_timestamp_s: float = 0.0
    unavailable_since: float | None = None
    live: bool = False
    retry_at_s: float = 0.0
    enrolled: tuple[str, int] | None = None


class ClusterRun:
    """Runs sources as Ray actors into local sinks; ``run`` returns a ``RunOutcome`` like ``Runner``.

    Args:
        streams: one spec per source (ids unique).
        stages: builds the pipeline and encoder on the workers.
        sinks: outputs on the driver; ``write`` gets every frame's result in order per stream.
        options: Ray address, resources, restarts and the encoder pool.
        stop_event: set from any thread to end the run cleanly.
        log_interval_s: seconds between periodic INFO lines.
    """

    def __init__(
        self,
        streams: Sequence[StreamSpec],
        stages: StageFactory,
        sinks: Sequence[Sink],
        options: ClusterOptions,
        *,
        stop_event: threading.Event | None = None,
        log_interval_s: float = 5.0,
    ) -> None:
        if not streams:
            raise ValueError("ClusterRun needs at least one stream, got none")
        check_unique_stream_ids([stream.source_id for stream in streams], "stream")
        self._specs = list(streams)
        self._stages = stages
        self._sinks = list(sinks)
        self._options = options
        self.stop_event = stop_event or threading.Event()
        self._log_interval_s = log_interval_s
        self._annotate = any(sink.needs_annotated for sink in self._sinks)
        self._stats = RunStats()
        self._latencies_ms: deque[float] = deque(maxlen=_MAX_LATENCY_SAMPLES)
        self._tracks: dict[tuple[str, int], dict[str, Any]] = {}
        self._streams: dict[str, _Stream] = {}
        self._pool: list[Any] = []
        self._threshold = 0.5
        self._launched_s = time.monotonic()
        self._started_s: float | None = None

    def run(self) -> RunOutcome:
        """Connect to Ray, start the pool and the streams, run until all end or a stop."""
        import ray

        connect(
            self._options.address,
            local_cpus=len(self._specs) * self._options.stream_num_cpus
            + self._options.pool.size * self._options.pool.num_cpus,
        )
        self._threshold = self._stages.threshold()
        self._pool = start_pool(self._stages, self._options.pool)
        stream_class = ray.remote(StreamWorker)
        for spec in self._specs:
            actor = stream_class.options(
                num_cpus=self._options.stream_num_cpus,
                max_restarts=self._options.max_restarts,
                max_task_retries=0,
            ).remote(spec, self._stages, self._pool, nice=self._options.stream_nice)
            self._streams[spec.source_id] = _Stream(spec=spec, actor=actor)
        self._launched_s = time.monotonic()
        self._started_s = None
        try:
            stopped_by = self._loop()
        except KeyboardInterrupt:
            logger.info("interrupted: stopping")
            stopped_by = "interrupt"
        try:
            if stopped_by != "end":
                self._finish_streams()
        finally:
            close_sinks(self._sinks)
            encoder_stats = self._encoder_stats()
            for stream in self._streams.values():
                ray.kill(stream.actor, no_restart=True)
            for worker in self._pool:
                ray.kill(worker, no_restart=True)
        errors = [f"{s.spec.source_id}: {s.error}" for s in self._streams.values() if s.error]
        if errors and stopped_by == "end":
            stopped_by = "error"
        summary = self.summary(stopped_by)
        summary["encoder_pool"] = encoder_stats
        return RunOutcome(stopped_by=stopped_by, errors=errors, summary=summary)

    @property
    def first_result_s(self) -> float | None:
        """``time.monotonic()`` when the first frame's result arrived; None before (Ray and the
        actors' models still starting)."""
        return self._started_s

    def stream_nodes(self) -> dict[str, str | None]:
        """The Ray node id each stream last delivered a result from (None before its first)."""
        return {source_id: (s.nodes[-1] if s.nodes else None) for source_id, s in self._streams.items()}

    # -- the loop ----------------------------------------------------------------------------

    def _loop(self) -> str:
        import ray

        next_log_s = time.monotonic() + self._log_interval_s
        while True:
            active = [s for s in self._streams.values() if not s.done]
            if not active:
                return "end"
            if self.stop_event.is_set():
                return "stop"
            now = time.monotonic()
            for stream in active:
                if stream.pending is None and now >= stream.retry_at_s:
                    stream.pending = stream.actor.step.remote(stream.cursor)
            by_ref = {stream.pending: stream for stream in active if stream.pending is not None}
            if not by_ref:
                time.sleep(_RETRY_PAUSE_S)
                continue
            ready, _ = ray.wait(list(by_ref), num_returns=1, timeout=_WAIT_S)
            for ref in ready:
                stream = by_ref[ref]
                stream.pending = None
                self._receive(stream, ref)
            if time.monotonic() >= next_log_s:
                self._log_progress()
                next_log_s = time.monotonic() + self._log_interval_s

    def _receive(self, stream: _Stream, ref: Any) -> None:
        import ray
        from ray.exceptions import ActorUnavailableError, RayActorError, RayTaskError

        now = time.monotonic()
        try:
            result: StepResult = ray.get(ref)
        except ActorUnavailableError as error:
            # Its node does not answer: Ray either reaches it again or declares the actor dead and
            # restarts it elsewhere. Ask again shortly, for at most _UNAVAILABLE_LIMIT_S.
            if stream.unavailable_since is None:
                stream.unavailable_since = now
                logger.warning("stream %s: its worker does not answer; waiting", stream.spec.source_id)
                self._end_open_tracks(stream, "the stream worker was lost")
            elif now - stream.unavailable_since > _UNAVAILABLE_LIMIT_S:
                self._fail(stream, f"worker unavailable for {_UNAVAILABLE_LIMIT_S:.0f} s: {_cause(error)}")
            stream.retry_at_s = now + _RETRY_PAUSE_S
            return
        except RayActorError as error:
            stream.failures += 1
            if getattr(error, "actor_init_failed", False) or stream.failures > self._options.max_restarts:
                # Its constructor failed (the models could not load), or it is out of restarts.
                self._fail(stream, _cause(error))
            else:
                logger.warning(
                    "stream %s lost its worker (%s); Ray restarts it",
                    stream.spec.source_id,
                    type(error).__name__,
                )
                # Before the next step is asked for, so the new incarnation numbers after these.
                self._end_open_tracks(stream, "the stream worker was lost")
                stream.retry_at_s = now + _RETRY_PAUSE_S
            return
        except RayTaskError as error:
            self._fail(stream, _cause(error))
            return
        stream.unavailable_since = None
        stream.enrolled = result.enrolled or stream.enrolled
        if result.incarnation != stream.incarnation:
            if stream.incarnation is not None:
                stream.restarts += 1
                stream.read_before += stream.frames_read
                stream.dropped_before += stream.frames_dropped
                if stream.last_result_s is not None:
                    stream.resume_gaps_s.append(now - stream.last_result_s)
                logger.warning(
                    "stream %s resumed on node %s (%.1f s without results)",
                    stream.spec.source_id,
                    result.node_id[:8],
                    stream.resume_gaps_s[-1] if stream.resume_gaps_s else math.nan,
                )
            stream.incarnation = result.incarnation
            stream.nodes.append(result.node_id)
        stream.frames_read, stream.frames_dropped = result.frames_read, result.frames_dropped
        stream.live = result.live
        self._check(stream, result)
        stream.cursor = _advance(stream.cursor, result)
        if result.frame_index >= 0 or result.events:
            stream.last_result_s = now
        if result.frame_index >= 0:
            if self._started_s is None:
                self._started_s = now
            stream.last_timestamp_s = result.timestamp_s
            self._write(stream, result)
        elif result.events:
            self._emit_events(list(result.events))
        if result.ended:
            stream.done = True
            logger.info("source %s ended", stream.spec.source_id)

    def _fail(self, stream: _Stream, error: str) -> None:
        stream.error = error
        stream.done = True
        logger.error("stream %s failed: %s", stream.spec.source_id, error)
        self._end_open_tracks(stream, "the stream failed")

    def _check(self, stream: _Stream, result: StepResult) -> None:
        cursor = stream.cursor
        seqs = [event.data.get("seq") for event in result.events]
        expected = list(range(cursor.next_event_seq, cursor.next_event_seq + len(seqs)))
        if seqs != expected:
            logger.error("stream %s: event sequence %s, expected %s", stream.spec.source_id, seqs, expected)
        if result.frame_index >= 0 and not result.live and result.frame_index != cursor.next_frame_index:
            logger.error(
                "stream %s: frame %d, expected %d",
                stream.spec.source_id,
                result.frame_index,
                cursor.next_frame_index,
            )

    def _write(self, stream: _Stream, step: StepResult) -> None:
        image = step.image if step.image is not None else np.zeros((1, 1, 3), np.uint8)
        frame = Frame(
            image=image, index=step.frame_index, timestamp_s=step.timestamp_s, source_id=stream.spec.source_id
        )
        result = FrameResult(frame=frame, faces=step.faces, events=step.events, timings_ms=step.timings_ms)
        stream.frames_processed += 1
        self._stats.record(step.timings_ms)
        if not math.isnan(step.capture_to_result_ms):
            self._latencies_ms.append(step.capture_to_result_ms)
        self._remember(step.events)
        annotated = None
        if self._annotate and step.image is not None:
            status = OverlayStatus(
                fps=self._stats.fps(), dropped_frames=stream.dropped_before + step.frames_dropped
            )
            annotated = draw_overlay(result, status, self._threshold)
        for sink in self._sinks:
            if annotated is None and sink.needs_annotated:
                continue  # this stream's images were not asked for (e.g. --out records the first only)
            sink.write(result, annotated)

    def _emit_events(self, events: list[Event]) -> None:
        self._remember(events)
        for sink in self._sinks:
            write_events = getattr(sink, "write_events", None)
            if write_events is not None:
                write_events(events)

    def _remember(self, events: Sequence[Event]) -> None:
        for event in events:
            key = (event.source_id, event.track_id)
            if event.kind == "track_end":
                self._tracks[key] = {**event.data, "ended": True}
            else:
                previous = self._tracks.get(key, {"source_id": event.source_id, "track_id": event.track_id})
                self._tracks[key] = {**previous, **{k: v for k, v in event.data.items() if k != "seq"}}

    def _end_open_tracks(self, stream: _Stream, reason: str) -> None:
        """Tracks of a lost incarnation never get their own track_end: close them here."""
        events: list[Event] = []
        for (source_id, track_id), record in sorted(self._tracks.items()):
            if source_id != stream.spec.source_id or record.get("ended"):
                continue
            data = {
                "source_id": source_id,
                "track_id": track_id,
                "p_fake": record.get("p_fake"),
                "verdict": record.get("verdict", "UNSURE"),
                "reason": reason,
                "seq": stream.cursor.next_event_seq + len(events),
            }
            events.append(Event("track_end", source_id, track_id, stream.last_timestamp_s, time.time(), data))
        if events:
            stream.cursor = Cursor(
                stream.cursor.next_frame_index,
                stream.cursor.next_event_seq + len(events),
                stream.cursor.next_track_id,
            )
            self._emit_events(events)

    def _finish_streams(self) -> None:
        import ray

        refs = {}
        for stream in self._streams.values():
            if not stream.done:
                refs[stream.actor.finish.remote(stream.cursor)] = stream
        ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=_FINISH_TIMEOUT_S)
        for ref in ready:
            stream = refs[ref]
            try:
                events = list(ray.get(ref))
            except ray.exceptions.RayError as error:
                logger.warning(
                    "stream %s did not finish cleanly: %s", stream.spec.source_id, _one_line(error)
                )
                continue
            stream.cursor = Cursor(
                stream.cursor.next_frame_index,
                stream.cursor.next_event_seq + len(events),
                stream.cursor.next_track_id,
            )
            self._emit_events(events)

    def _encoder_stats(self) -> list[dict[str, Any]]:
        import ray

        try:
            return list(ray.get([worker.stats.remote() for worker in self._pool], timeout=_FINISH_TIMEOUT_S))
        except ray.exceptions.RayError as error:
            logger.warning("encoder pool statistics unavailable: %s", _one_line(error))
            return []

    def _log_progress(self) -> None:
        fps, _ = self._stats.take_window()
        dropped = sum(s.dropped_before + s.frames_dropped for s in self._streams.values())
        restarts = sum(s.restarts for s in self._streams.values())
        logger.info("cluster: fps %.1f | dropped %d | restarts %d", fps, dropped, restarts)

    def summary(self, stopped_by: str) -> dict[str, Any]:
        """The run summary, with ``Runner``'s keys plus restarts, nodes and resume gaps per source."""
        latency: dict[str, float | None] = {"p50": None, "p95": None}
        if self._latencies_ms:
            p50, p95 = np.percentile(np.fromiter(self._latencies_ms, dtype=np.float64), [50, 95])
            latency = {"p50": round(float(p50), 2), "p95": round(float(p95), 2)}
        stats = self._stats.as_dict()
        # From the first frame's result: the actors' start (Ray, model loading) is startup_s.
        started_s = self._started_s if self._started_s is not None else time.monotonic()
        elapsed_s = time.monotonic() - started_s
        return {
            "stopped_by": stopped_by,
            "startup_s": round(started_s - self._launched_s, 3),
            "elapsed_s": round(elapsed_s, 3),
            "frames_processed": stats["frames"],
            "fps": round(stats["frames"] / elapsed_s, 2) if elapsed_s > 0 else math.nan,  # type: ignore[operator]
            "stage_latency_ms": stats["latency_ms"],
            "capture_to_output_ms": latency,
            "sources": [
                {
                    "source_id": s.spec.source_id,
                    "live": s.live,
                    "frames_read": s.read_before + s.frames_read,
                    "frames_processed": s.frames_processed,
                    "frames_dropped": s.dropped_before + s.frames_dropped,
                    "dropped_pct": dropped_percent(
                        s.dropped_before + s.frames_dropped, s.read_before + s.frames_read
                    ),
                    "error": s.error,
                    "restarts": s.restarts,
                    "nodes": s.nodes,
                    "resume_gaps_s": [round(gap, 2) for gap in s.resume_gaps_s],
                    "events": s.cursor.next_event_seq,
                }
                for s in self._streams.values()
            ],
            "tracks": [
                {k: v for k, v in record.items() if k not in ("ended", "seq")}
                for _, record in sorted(self._tracks.items())
            ],
            **self._enrolment(),
        }

    def _enrolment(self) -> dict[str, Any]:
        """``{"model": {"reference": {name, photos}}}`` as the workers enrolled the person (each
        stream enrols the same files), or nothing when nobody was enrolled."""
        enrolled = next((s.enrolled for s in self._streams.values() if s.enrolled), None)
        if enrolled is None:
            return {}
        return {"model": {"reference": {"name": enrolled[0], "photos": enrolled[1]}}}


def _advance(cursor: Cursor, result: StepResult) -> Cursor:
    track_ids = [face.track_id for face in result.faces] + [event.track_id for event in result.events]
    return Cursor(
        next_frame_index=result.frame_index + 1 if result.frame_index >= 0 else cursor.next_frame_index,
        next_event_seq=cursor.next_event_seq + len(result.events),
        next_track_id=max([cursor.next_track_id - 1, *track_ids]) + 1,
    )


def _cause(error: BaseException) -> str:
    """The user's error behind Ray's wrappers (e.g. the ``SourceError`` of a failed actor start)."""
    import ray

    inner: object = error
    for _ in range(8):
        cause = getattr(inner, "cause", None)
        if not isinstance(cause, BaseException) or cause is inner:
            break
        inner = cause
    if isinstance(inner, BaseException) and not isinstance(inner, ray.exceptions.RayError):
        return _one_line(inner)
    # An actor whose constructor raised carries only the remote traceback's text: its last
    # "SomeError: message" line is the user's error.
    raised = [line for line in str(error).splitlines() if re.match(r"^[\w.]+(Error|Exception): ", line)]
    if raised:
        kind, _, message = raised[-1].partition(": ")
        return _one_line(RuntimeError(f"{kind.rsplit('.', 1)[-1]}: {message}"))
    return _one_line(error)


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text if len(text) <= 300 else text[:297] + "..."
