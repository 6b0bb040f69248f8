"""Per-stage latency and throughput figures of a run (for the periodic log line and the summary)."""

from __future__ import annotations

import math
import threading
import time
from collections import defaultdict, deque

import numpy as np

# Samples kept per stage for percentiles: a few minutes at 30 fps, bounded so a long run's memory
# stays flat.
_MAX_SAMPLES = 8192


class RunStats:
    """Collects per-frame stage timings (ms) and counts frames; the batch workers add their batch
    timings from their own threads (``record_stage``), so every method takes a lock."""

    def __init__(self, max_samples: int = _MAX_SAMPLES) -> None:
        self._timings: dict[str, deque[float]] = defaultdict(lambda: deque(maxlen=max_samples))
        self._window: dict[str, list[float]] = defaultdict(list)
        self._totals_ms: dict[str, float] = defaultdict(float)
        self.frames = 0
        self._started_s = time.monotonic()
        self._window_started_s = self._started_s
        self._window_frames = 0
        self._lock = threading.Lock()

    def record(self, timings_ms: dict[str, float]) -> None:
        """Add one frame's stage timings."""
        with self._lock:
            self.frames += 1
            self._window_frames += 1
            for stage, value in timings_ms.items():
                self._add(stage, value)

    def record_stage(self, stage: str, value_ms: float) -> None:
        """Add one timing of a stage that runs apart from the frames (a batch on a worker)."""
        with self._lock:
            self._add(stage, value_ms)

    def _add(self, stage: str, value: float) -> None:
        self._timings[stage].append(value)
        self._window[stage].append(value)
        self._totals_ms[stage] += value

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self._started_s

    def fps(self) -> float:
        elapsed = self.elapsed_s
        return self.frames / elapsed if elapsed > 0 else 0.0

    def percentiles(self, stage: str) -> tuple[float, float]:
        """(p50, p95) in ms of ``stage`` over the kept samples; NaN when the stage never ran."""
        with self._lock:
            values = list(self._timings.get(stage, ()))
        return _percentiles(values)

    def take_window(self) -> tuple[float, dict[str, tuple[float, float]]]:
        """fps and per-stage (p50, p95) since the previous call; starts a new window."""
        with self._lock:
            now = time.monotonic()
            elapsed = now - self._window_started_s
            fps = self._window_frames / elapsed if elapsed > 0 else 0.0
            window, self._window = self._window, defaultdict(list)
            self._window_started_s = now
            self._window_frames = 0
        return fps, {stage: _percentiles(values) for stage, values in window.items()}

    def as_dict(self) -> dict[str, object]:
        """JSON-ready figures for the run summary: per stage p50/p95 over the kept samples, the
        number of frames the stage ran on, and its total milliseconds over the whole run."""
        with self._lock:
            kept = {stage: (list(values), self._totals_ms[stage]) for stage, values in self._timings.items()}
        latency_ms = {}
        for stage in sorted(kept):
            values, total_ms = kept[stage]
            p50, p95 = _percentiles(values)
            latency_ms[stage] = {
                "p50": _rounded(p50),
                "p95": _rounded(p95),
                "count": len(values),
                "total_ms": round(total_ms, 1),
            }
        return {
            "frames": self.frames,
            "elapsed_s": round(self.elapsed_s, 3),
            "fps": round(self.fps(), 2),
            "latency_ms": latency_ms,
        }


def dropped_percent(dropped: int, read: int) -> float:
    """Share of a source's frames read that were dropped, percent (0.0 before any was read)."""
    return round(100.0 * dropped / read, 2) if read else 0.0


def _percentiles(values: object) -> tuple[float, float]:
    array = np.fromiter(values, dtype=np.float64) if not isinstance(values, np.ndarray) else values  # type: ignore[call-overload]
    if array.size == 0:
        return math.nan, math.nan
    p50, p95 = np.percentile(array, [50, 95])
    return float(p50), float(p95)


def _rounded(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 2)
