"""The load-shedding rule: when the shared stages fall behind, do less of the expensive work, in a
fixed order, so that every stream keeps every frame and latency stays bounded.

The frame path (track, crop, draw) never waits for detection or scoring, so a machine that falls
behind shows it as results that come back late, not as late frames. The rule watches how long the
shared workers take to return a request (turnaround) and whether requests were replaced before they
ran (shed), over windows of ``WINDOW_S``:

- scoring late: scoring turnaround (p90) exceeded one sample period: stretch the detection
  interval one step, if it can still grow (late results alone never lower the sampling rate:
  the scorer may still keep up, only later, and measured on this 2-core CPU with 2 streams,
  lowering the rate on lateness cost 0.5 Hz of scores per face for nothing);
- scoring behind: a scoring request was shed (the scorer did not keep up): go one level down
  (which stretches detection while it can, else lowers the sampling rate);
- detection behind: detection turnaround (p90) exceeded ``DETECTION_BUDGET_S``: stretch the
  detection interval one step, if it can still grow (a slow detector never lowers the sampling);
- calm: for ``CALM_WINDOWS`` windows in a row nothing was shed and scoring turnaround stayed under
  half a period (and, to shorten the detection interval again, detection under half its budget):
  go one level back up.

The levels, in order: first each stream's detection interval grows (base N, then 2N, ... up to
``max_detect_factor`` x N frames; the Kalman tracker predicts in between), then the sampling rate
of every track falls in steps of a quarter of the model's rate down to ``min_sample_rate_hz``.
Recovery climbs back in the reverse order. Every stream and every track gets the same level.
Past the last level (or with a sampling floor at the model's rate, where there is no rate level)
the scoring worker sheds the oldest waiting samples and shares its batches between tracks, least
recently served first (``stream.live.batching``), so every track is still scored, less often;
none starves.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np

# Length of one observation window, seconds: long enough for a few batches at the slowest level.
WINDOW_S = 1.0
# Calm windows in a row before recovering a level: slower up than down, so it does not oscillate.
CALM_WINDOWS = 3
# A detection returned later than this is too stale to correct the tracks well (a face moving at
# half its width per second has moved 10 % of its box), seconds.
DETECTION_BUDGET_S = 0.2


@dataclass(frozen=True)
class ShedLevel:
    """What every stream does at one level: detect every ``detect_every_n_frames`` frames, sample
    each track at ``sample_rate_hz``."""

    level: int
    detect_every_n_frames: int
    sample_rate_hz: float


def shed_levels(
    detect_every_n_frames: int, max_detect_factor: int, sample_rate_hz: float, min_sample_rate_hz: float
) -> list[ShedLevel]:
    """The levels from full service (index 0) to the most shed, in the order of the rule."""
    if detect_every_n_frames < 1 or max_detect_factor < 1:
        raise ValueError(
            f"detect_every_n_frames and max_detect_factor must be >= 1, got "
            f"{detect_every_n_frames} and {max_detect_factor}"
        )
    if not 0 < min_sample_rate_hz <= sample_rate_hz:
        raise ValueError(
            f"min_sample_rate_hz must be in (0, {sample_rate_hz}] (the model rate), got {min_sample_rate_hz}"
        )
    levels = [(detect_every_n_frames * factor, sample_rate_hz) for factor in range(1, max_detect_factor + 1)]
    step = sample_rate_hz / 4
    rate = sample_rate_hz - step
    while rate > min_sample_rate_hz + 1e-9:
        levels.append((detect_every_n_frames * max_detect_factor, rate))
        rate -= step
    if min_sample_rate_hz < sample_rate_hz:
        levels.append((detect_every_n_frames * max_detect_factor, min_sample_rate_hz))
    return [ShedLevel(i, n, rate) for i, (n, rate) in enumerate(levels)]


class LoadShedder:
    """Applies the rule of the module docstring. ``observe_*`` may be called from the worker
    threads; ``current`` from any thread.

    Args:
        levels: from ``shed_levels``.
        clock: monotonic seconds (tests pass a fake).
    """

    def __init__(self, levels: list[ShedLevel], clock: object = time.monotonic) -> None:
        if not levels:
            raise ValueError("LoadShedder needs at least one level")
        self.levels = levels
        # The first levels only stretch detection (they keep the full sampling rate).
        self._detection_levels = sum(
            1 for level in levels if level.sample_rate_hz == levels[0].sample_rate_hz
        )
        self._clock = clock
        self._lock = threading.Lock()
        self._index = 0
        self._window_started_s: float = self._now()
        self._detect_turnarounds: list[float] = []
        self._score_turnarounds: list[float] = []
        self._shed = 0
        self._calm_windows = 0
        self.changes = 0

    @property
    def current(self) -> ShedLevel:
        return self.levels[self._index]

    def observe_detection(self, turnaround_s: float) -> None:
        with self._lock:
            self._detect_turnarounds.append(turnaround_s)
            self._maybe_decide()

    def observe_scoring(self, turnaround_s: float) -> None:
        with self._lock:
            self._score_turnarounds.append(turnaround_s)
            self._maybe_decide()

    def observe_shed(self) -> None:
        """A scoring request was replaced by a newer one before it ran."""
        with self._lock:
            self._shed += 1
            self._maybe_decide()

    def _now(self) -> float:
        return float(self._clock())  # type: ignore[operator]

    def _maybe_decide(self) -> None:
        now = self._now()
        if now - self._window_started_s < WINDOW_S:
            return
        level = self.levels[self._index]
        score_budget_s = 1.0 / level.sample_rate_hz
        detect_p90 = _p90(self._detect_turnarounds)
        score_p90 = _p90(self._score_turnarounds)
        scoring_behind = self._shed > 0
        scoring_late = score_p90 > score_budget_s
        detection_behind = detect_p90 > DETECTION_BUDGET_S
        scoring_calm = not scoring_behind and score_p90 < score_budget_s / 2
        detection_calm = detect_p90 < DETECTION_BUDGET_S / 2
        last_detection_level = self._detection_levels - 1
        can_stretch = self._index < last_detection_level
        if scoring_behind or ((scoring_late or detection_behind) and can_stretch):
            self._calm_windows = 0
            if self._index < len(self.levels) - 1:
                self._index += 1
                self.changes += 1
        elif scoring_calm and (self._index > last_detection_level or detection_calm):
            self._calm_windows += 1
            if self._calm_windows >= CALM_WINDOWS and self._index > 0:
                self._index -= 1
                self.changes += 1
                self._calm_windows = 0
        else:
            self._calm_windows = 0
        self._window_started_s = now
        self._detect_turnarounds = []
        self._score_turnarounds = []
        self._shed = 0


def _p90(values: list[float]) -> float:
    return float(np.percentile(values, 90)) if values else 0.0
