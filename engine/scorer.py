"""Streaming sequence scorer: a per-track sliding window of embeddings scored by a head.

Calling contract (single thread, the pipeline core):

- For every live track on every frame, ask ``wants_sample(track_id, timestamp_s)``; only when it
  says True, encode that track's crop and call ``update(track_id, embedding, timestamp_s)``
  (or ``update_many`` for several tracks at once, one head call for all of them).
- Call ``forget(track_id)`` when the tracker ends a track.

Timestamps are stream time in seconds and must not go backwards within one track.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from engine.score import Score
from engine.scorer_config import ScorerConfig

logger = logging.getLogger(__name__)

# Samples may arrive up to this fraction of a period early: with a 30 fps source and 8 Hz sampling
# frames land 33 ms apart, so insisting on a full period would drop the rate to 7.5 Hz.
_EARLY_TOLERANCE = 0.25


class SampleClock:
    """Decides which timestamps of one track are sampled, at a fixed average rate.

    Extraction for training and the live scorer use this same rule, so the head sees windows
    with the spacing it was trained on.
    """

    def __init__(self, sample_rate_hz: float) -> None:
        if not sample_rate_hz > 0:
            raise ValueError(f"sample_rate_hz must be > 0, got {sample_rate_hz!r}")
        self.period_s = 1.0 / sample_rate_hz
        self._next_due_s: float | None = None

    def is_due(self, timestamp_s: float) -> bool:
        """True when a sample at ``timestamp_s`` keeps the track at the target rate."""
        return self._next_due_s is None or timestamp_s >= self._next_due_s - _EARLY_TOLERANCE * self.period_s

    def mark(self, timestamp_s: float) -> None:
        """Record a sample taken at ``timestamp_s``."""
        if self._next_due_s is None or timestamp_s - self._next_due_s > self.period_s:
            # First sample or a long gap: restart the schedule from now instead of catching up.
            self._next_due_s = timestamp_s + self.period_s
        else:
            self._next_due_s = max(self._next_due_s, timestamp_s - _EARLY_TOLERANCE * self.period_s)
            self._next_due_s += self.period_s


@dataclass
class _TrackWindow:
    clock: SampleClock
    embeddings: deque[np.ndarray]
    last_timestamp_s: float = -math.inf
    frames_seen: int = 0
    p_fake: float = math.nan
    p_fake_raw: float = math.nan


class SequenceScorer:
    """Keeps a window of the last W sampled embeddings per track and scores it with a head.

    Args:
        head: a module mapping B x W x D float32 embeddings to B logits (see ``engine.heads``).
        config: sampling, window and smoothing settings.

    Attributes:
        sample_rate_hz: the rate at which the scorer wants each track's embeddings.
        config: the scorer configuration.
    """

    def __init__(self, head: nn.Module, config: ScorerConfig | None = None) -> None:
        self.config = config or ScorerConfig()
        self.sample_rate_hz = self.config.sample_rate_hz
        self._device = torch.device(self.config.device)
        self._head = head.to(self._device).eval()
        self._input_dim = int(getattr(head, "input_dim", 512))
        self._tracks: dict[int, _TrackWindow] = {}

    @property
    def track_ids(self) -> list[int]:
        """Ids of the tracks the scorer currently holds a window for."""
        return list(self._tracks)

    def wants_sample(self, track_id: int, timestamp_s: float) -> bool:
        """True when ``track_id`` is due for a new embedding at ``timestamp_s`` (or is unknown)."""
        window = self._tracks.get(track_id)
        return window is None or window.clock.is_due(timestamp_s)

    def update(self, track_id: int, embedding: np.ndarray, timestamp_s: float) -> Score:
        """Append one embedding (D float32) to the track's window and return its new score."""
        return self.update_many([(track_id, embedding, timestamp_s)])[0]

    def update_many(self, items: Sequence[tuple[int, np.ndarray, float]]) -> list[Score]:
        """Append one embedding to each of several tracks; the ready windows share one head call.

        ``items`` holds ``(track_id, embedding, timestamp_s)``; a track id appears at most once.
        Scores come back in the order of ``items``.
        """
        track_ids = [item[0] for item in items]
        if len(set(track_ids)) != len(track_ids):
            raise ValueError(f"each track may appear once per update_many call, got ids {track_ids}")
        windows = [
            self._append(track_id, embedding, timestamp_s) for track_id, embedding, timestamp_s in items
        ]
        ready = [i for i, window in enumerate(windows) if len(window.embeddings) >= self.config.min_samples]
        if ready:
            probabilities = self._score_windows([windows[i] for i in ready])
            alpha = self.config.ema_alpha
            for i, p_raw in zip(ready, probabilities, strict=True):
                window = windows[i]
                window.p_fake_raw = p_raw
                window.p_fake = (
                    p_raw if math.isnan(window.p_fake) else alpha * p_raw + (1 - alpha) * window.p_fake
                )
        return [
            Score(
                track_id=track_id,
                p_fake=window.p_fake,
                frames_seen=window.frames_seen,
                timestamp_s=float(timestamp_s),
                ready=len(window.embeddings) >= self.config.min_samples,
                p_fake_raw=window.p_fake_raw,
            )
            for (track_id, _, timestamp_s), window in zip(items, windows, strict=True)
        ]

    def forget(self, track_id: int) -> None:
        """Drop a track's window (call when the tracker ends it); unknown ids are ignored."""
        self._tracks.pop(track_id, None)

    def reset(self) -> None:
        """Drop every track's window."""
        self._tracks.clear()

    def score_window(self, embeddings: np.ndarray) -> float:
        """Probability of manipulation of one complete window (W x D), without any track state."""
        batch = self._as_batch(embeddings[None])
        with torch.inference_mode():
            return float(torch.sigmoid(self._head(batch))[0])

    def _append(self, track_id: int, embedding: np.ndarray, timestamp_s: float) -> _TrackWindow:
        vector = np.asarray(embedding, dtype=np.float32)
        if vector.shape != (self._input_dim,):
            raise ValueError(f"embedding must have shape ({self._input_dim},), got {vector.shape}")
        if not math.isfinite(timestamp_s):
            raise ValueError(f"timestamp_s must be finite, got {timestamp_s!r}")
        window = self._tracks.get(track_id)
        if window is None:
            window = _TrackWindow(SampleClock(self.sample_rate_hz), deque(maxlen=self.config.window_size))
            self._tracks[track_id] = window
        if timestamp_s < window.last_timestamp_s:
            raise ValueError(
                f"timestamps of track {track_id} must not go backwards: got {timestamp_s} "
                f"after {window.last_timestamp_s}"
            )
        if timestamp_s - window.last_timestamp_s > self.config.max_gap_s and window.embeddings:
            logger.debug(
                "track %d: %.2f s gap, starting a fresh window",
                track_id,
                timestamp_s - window.last_timestamp_s,
            )
            window.embeddings.clear()
        window.embeddings.append(vector)
        window.clock.mark(timestamp_s)
        window.last_timestamp_s = timestamp_s
        window.frames_seen += 1
        return window

    def _score_windows(self, windows: list[_TrackWindow]) -> list[float]:
        # Windows shorter than W (a track that just became ready) get their own head call, since
        # a batch must share one length.
        by_length: dict[int, list[int]] = {}
        for i, window in enumerate(windows):
            by_length.setdefault(len(window.embeddings), []).append(i)
        probabilities = [math.nan] * len(windows)
        with torch.inference_mode():
            for indices in by_length.values():
                batch = self._as_batch(np.stack([np.stack(windows[i].embeddings) for i in indices]))
                values = torch.sigmoid(self._head(batch)).cpu().numpy()
                for i, value in zip(indices, values, strict=True):
                    probabilities[i] = float(value)
        return probabilities

    def _as_batch(self, windows: np.ndarray) -> torch.Tensor:
        if windows.ndim != 3 or windows.shape[2] != self._input_dim:
            raise ValueError(f"windows must be B x W x {self._input_dim}, got {windows.shape}")
        return torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float32)).to(self._device)
