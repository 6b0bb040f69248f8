"""The run loop: sources -> pipeline -> overlay -> sinks, until the inputs end or a stop request.

One thread (the caller's) runs the pipeline's per-frame work; each source reads on its own thread.
With several sources, the newest frame of each is gathered and processed in one ``process_batch``
call, so their requests share the detection and scoring batches (which run on the shared
stages' worker threads for a live pipeline, see ``stream.live.pipeline``). A source that cannot
be opened, or fails mid-run, is reported for that source only; the others go on. Frames a live
source dropped are counted per source and shown in the periodic line and the summary.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from stream.contracts import Event, Frame, FrameResult, check_unique_stream_ids
from stream.live.overlay import OverlayStatus, draw_overlay
from stream.live.stats import RunStats, dropped_percent
from stream.sinks.sink import Sink, close_sinks
from stream.sources.source import Source, SourceError

logger = logging.getLogger(__name__)

# How long one read waits for a frame before the loop re-checks stop requests, seconds.
_READ_TIMEOUT_S = 0.2
# With several sources: pause between polls when none had a frame, seconds.
_POLL_PAUSE_S = 0.002
# Capture-to-output latencies kept for percentiles (bounded for long runs).
_MAX_LATENCY_SAMPLES = 8192


class StopSwitch(Protocol):
    """An output the user can close (the window): the run ends once ``closed`` is True."""

    @property
    def closed(self) -> bool: ...


class RunPipeline(Protocol):
    """What the loop needs from ``stream.live.pipeline.Pipeline``."""

    stats: RunStats
    samples_shed_by_source: dict[str, int]

    @property
    def worker_stats(self) -> RunStats | None: ...

    def load(self) -> dict[str, object]: ...

    def process_batch(self, frames: Sequence[Frame]) -> list[FrameResult]: ...

    def finish_source(self, source_id: str, timestamp_s: float) -> list[Event]: ...

    def finish(self) -> list[Event]: ...

    def track_summaries(self) -> list[dict[str, Any]]: ...


@dataclass
class RunOutcome:
    """How a run ended.

    Attributes:
        stopped_by: "end" (all inputs ended), "interrupt" (Ctrl-C), "window" (closed by the
            user), "stop" (``stop_event``) or "error" (a source failed).
        errors: one line per source that failed.
        summary: the JSON-ready run summary.
    """

    stopped_by: str
    errors: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)


class Runner:
    """Runs sources through a pipeline into sinks.

    Args:
        sources: ``run`` starts them (raising ``SourceError`` if one cannot be opened), unless
            ``sources_started``; it always stops them.
        pipeline: the pipeline core.
        sinks: outputs; the overlay is drawn only if one needs the annotated image.
        threshold: decision threshold drawn in the sparklines.
        log_interval_s: seconds between periodic INFO lines.
        stop_event: set from any thread to end the run cleanly.
        window: an output whose closing ends the run (the window), or None.
        sources_started: the caller started the sources (``run`` then only stops them).
        failed_at_start: source_id -> error of the sources the caller could not start; they are
            reported in the summary and never read.
    """

    def __init__(
        self,
        sources: Sequence[Source],
        pipeline: RunPipeline,
        sinks: Sequence[Sink],
        *,
        threshold: float = 0.5,
        log_interval_s: float = 5.0,
        stop_event: threading.Event | None = None,
        window: StopSwitch | None = None,
        sources_started: bool = False,
        failed_at_start: Mapping[str, str] | None = None,
    ) -> None:
        if not sources:
            raise ValueError("Runner needs at least one source, got none")
        ids = [source.source_id for source in sources]
        check_unique_stream_ids(ids, "source")
        self._sources = list(sources)
        self._pipeline = pipeline
        self._sinks = list(sinks)
        self._threshold = threshold
        self._log_interval_s = log_interval_s
        self.stop_event = stop_event or threading.Event()
        self._window = window
        self._sources_started = sources_started
        self._annotate = any(sink.needs_annotated for sink in self._sinks)
        self._latencies_ms: deque[float] = deque(maxlen=_MAX_LATENCY_SAMPLES)
        self._window_latencies_ms: list[float] = []
        self._last_timestamp_s: dict[str, float] = {}
        self._errors: dict[str, str] = dict(failed_at_start or {})
        self._processed: dict[str, int] = {source_id: 0 for source_id in ids}
        self._window_dropped: dict[str, int] = {source_id: 0 for source_id in ids}
        self._started_s = time.monotonic()

    def run(self) -> RunOutcome:
        """Start the sources, process until they end or a stop, finish, close sinks, summarise.

        Raises ``SourceError`` (after stopping what was started) if a source cannot be opened.
        """
        started: list[Source] = (
            [source for source in self._sources if source.source_id not in self._errors]
            if self._sources_started
            else []
        )
        try:
            if not self._sources_started:
                started = self._start_sources()
            self._started_s = time.monotonic()
            stopped_by = self._loop()
        except KeyboardInterrupt:
            logger.info("interrupted: stopping")
            stopped_by = "interrupt"
        except SourceError:
            for source in started:
                source.stop()
            close_sinks(self._sinks)
            raise
        for source in started:
            source.stop()
        try:
            self._emit_events(self._pipeline.finish())
        finally:
            close_sinks(self._sinks)
        if self._errors and stopped_by == "end":
            stopped_by = "error"
        return RunOutcome(
            stopped_by=stopped_by, errors=list(self._errors.values()), summary=self.summary(stopped_by)
        )

    def _start_sources(self) -> list[Source]:
        """Start every source; one that cannot be opened is reported, the others go on. Raises
        the first ``SourceError`` when none could be opened."""
        started: list[Source] = []
        first_error: SourceError | None = None
        for source in self._sources:
            try:
                source.start()
            except SourceError as error:
                first_error = first_error or error
                self._errors[source.source_id] = str(error)
                logger.error("%s", error)
                continue
            started.append(source)
        if not started and first_error is not None:
            raise first_error
        return started

    def _loop(self) -> str:
        active = [source for source in self._sources if source.source_id not in self._errors]
        next_log_s = time.monotonic() + self._log_interval_s
        while active:
            if self.stop_event.is_set():
                return "stop"
            if self._window is not None and self._window.closed:
                return "window"
            frames: list[Frame] = []
            for source in list(active):
                try:
                    frame = source.read(_READ_TIMEOUT_S if len(active) == 1 else 0)
                except SourceError as error:
                    self._errors[source.source_id] = str(error)
                    frame = None
                    logger.error("%s", error)
                if frame is not None:
                    frames.append(frame)
                elif source.ended or source.source_id in self._errors:
                    active.remove(source)
                    events = self._pipeline.finish_source(
                        source.source_id, self._last_timestamp_s.get(source.source_id, 0.0)
                    )
                    self._emit_events(events)
                    logger.info("source %s ended after %d frames", source.source_id, source.frames_read)
            if frames:
                self._process(frames)
            elif len(active) > 1:
                time.sleep(_POLL_PAUSE_S)
            if time.monotonic() >= next_log_s:
                self._log_progress()
                next_log_s = time.monotonic() + self._log_interval_s
        return "end"

    def _process(self, frames: list[Frame]) -> None:
        by_id = {source.source_id: source for source in self._sources}
        for result in self._pipeline.process_batch(frames):
            frame = result.frame
            source = by_id[frame.source_id]
            self._last_timestamp_s[frame.source_id] = frame.timestamp_s
            self._processed[frame.source_id] += 1
            annotated = None
            if self._annotate:
                status = OverlayStatus(fps=self._pipeline.stats.fps(), dropped_frames=source.frames_dropped)
                annotated = draw_overlay(result, status, self._threshold)
            for sink in self._sinks:
                sink.write(result, annotated)
            if source.live:
                # Live frames carry capture time: this is the capture-to-output latency.
                latency_ms = (time.monotonic() - source.clock_origin_s - frame.timestamp_s) * 1000.0
                self._latencies_ms.append(latency_ms)
                self._window_latencies_ms.append(latency_ms)

    def _emit_events(self, events: list[Event]) -> None:
        if not events:
            return
        for sink in self._sinks:
            sink.write_events(events)
        for event in events:
            if event.kind == "track_end":
                logger.info(
                    "track %s/%d ended: %s p_fake %s over %d frames",
                    event.source_id,
                    event.track_id,
                    event.data.get("verdict"),
                    event.data.get("p_fake"),
                    event.data.get("frames", 0),
                )

    def _log_progress(self) -> None:
        fps, stages = self._pipeline.stats.take_window()
        worker_stats = self._pipeline.worker_stats
        if worker_stats is not None:
            stages |= worker_stats.take_window()[1]
        parts = [f"fps {fps:.1f}"]
        for stage in ("detect", "track", "crop", "encode", "score", "total"):
            if stage in stages:
                p50, p95 = stages[stage]
                parts.append(f"{stage} {p50:.1f}/{p95:.1f} ms")
        if self._window_latencies_ms:
            p50, p95 = np.percentile(self._window_latencies_ms, [50, 95])
            parts.append(f"capture-to-output {p50:.0f}/{p95:.0f} ms")
            self._window_latencies_ms = []
        dropped = []
        shed_by_source = self._pipeline.samples_shed_by_source
        for source in self._sources:
            new = source.frames_dropped - self._window_dropped[source.source_id]
            self._window_dropped[source.source_id] = source.frames_dropped
            dropped.append(f"{source.source_id} {new}/{shed_by_source.get(source.source_id, 0)}")
        parts.append("frames dropped (this interval)/samples shed (so far) " + ", ".join(dropped))
        load = self._pipeline.load()
        parts.append(
            f"load level {load['level']} (detect every {load['detect_every_n_frames']}, "
            f"sample {load['sample_rate_hz']:g} Hz, {load['samples_shed']} samples shed)"
        )
        logger.info("%s (p50/p95)", " | ".join(parts))

    def summary(self, stopped_by: str) -> dict[str, Any]:
        """The JSON-ready run summary: sources, speed, latency, and every track's verdict."""
        latency: dict[str, float | None] = {"p50": None, "p95": None}
        if self._latencies_ms:
            p50, p95 = np.percentile(np.fromiter(self._latencies_ms, dtype=np.float64), [50, 95])
            latency = {"p50": round(float(p50), 2), "p95": round(float(p95), 2)}
        stats = self._pipeline.stats.as_dict()
        worker_stats = self._pipeline.worker_stats
        elapsed_s = time.monotonic() - self._started_s
        return {
            "stopped_by": stopped_by,
            "elapsed_s": round(elapsed_s, 3),
            "frames_processed": stats["frames"],
            "fps": round(stats["frames"] / elapsed_s, 2) if elapsed_s > 0 else math.nan,  # type: ignore[operator]
            "stage_latency_ms": stats["latency_ms"]
            | (
                worker_stats.as_dict()["latency_ms"] if worker_stats is not None else {}  # type: ignore[operator]
            ),
            "load": self._pipeline.load(),
            "capture_to_output_ms": latency,
            "sources": [
                {
                    "source_id": source.source_id,
                    "live": source.live,
                    "frames_read": source.frames_read,
                    "frames_processed": self._processed[source.source_id],
                    "frames_dropped": source.frames_dropped,
                    "dropped_pct": dropped_percent(source.frames_dropped, source.frames_read),
                    "samples_shed": self._pipeline.samples_shed_by_source.get(source.source_id, 0),
                    "error": self._errors.get(source.source_id),
                }
                for source in self._sources
            ],
            "tracks": self._pipeline.track_summaries(),
        }
