"""Alerts: a track that stays past the threshold for a sustained time (the webhook that posts them
is an output: ``stream.sinks.webhook``).

The rule has hysteresis so a score hovering at the threshold does not flap: a track's timer
starts when its score reaches ``threshold``, keeps running while the score stays at or above
``threshold - hysteresis``, and the alert fires once the timer reaches ``sustain_s`` with the
score at or above ``threshold``. After firing, the track re-arms only when its score falls
below ``threshold - hysteresis``.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable
from dataclasses import dataclass

from stream.sources.redact import redact

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AlertConfig:
    """When alerts fire and where they go.

    Attributes:
        enabled: emit alert events at all.
        threshold: p_fake at or above which a track counts as past the threshold; None uses the
            model's calibrated decision threshold.
        hysteresis: how far below ``threshold`` the score must fall to reset the timer and re-arm.
        sustain_s: how long a track must stay past the threshold before the alert fires, seconds
            of stream time.
        webhook_url: http(s) URL to POST each alert to as JSON; None for no webhook.
        webhook_timeout_s: per-request timeout of the webhook POST, seconds.
        webhook_queue_size: alerts waiting to be posted; beyond this new ones are dropped (and
            counted) so a slow webhook never holds up the pipeline.
    """

    enabled: bool = True
    threshold: float | None = None
    hysteresis: float = 0.1
    sustain_s: float = 2.0
    webhook_url: str | None = None
    webhook_timeout_s: float = 3.0
    webhook_queue_size: int = 32

    def __post_init__(self) -> None:
        if self.threshold is not None and not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1) or null, got {self.threshold!r}")
        if not 0.0 <= self.hysteresis < 1.0:
            raise ValueError(f"hysteresis must be in [0, 1), got {self.hysteresis!r}")
        if not self.sustain_s >= 0:
            raise ValueError(f"sustain_s must be >= 0, got {self.sustain_s!r}")
        if self.webhook_url is not None and not self.webhook_url.lower().startswith(("http://", "https://")):
            raise ValueError(
                f"webhook_url must be an http:// or https:// URL, got {redact(self.webhook_url)!r}"
            )
        if not self.webhook_timeout_s > 0:
            raise ValueError(f"webhook_timeout_s must be > 0, got {self.webhook_timeout_s!r}")
        if self.webhook_queue_size < 1:
            raise ValueError(f"webhook_queue_size must be >= 1, got {self.webhook_queue_size!r}")


@dataclass
class _AlertState:
    above_since_s: float | None = None
    fired: bool = False


class AlertMonitor:
    """Applies the alert rule per track key (e.g. ``(source_id, track_id)``).

    Call ``update`` on every new score of a track, in time order, and ``forget`` when it ends.
    """

    def __init__(self, threshold: float, hysteresis: float, sustain_s: float) -> None:
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {threshold!r}")
        self.threshold = threshold
        self.release_threshold = max(0.0, threshold - hysteresis)
        self.sustain_s = sustain_s
        self._states: dict[Hashable, _AlertState] = {}

    def update(self, key: Hashable, p_fake: float, ready: bool, timestamp_s: float) -> bool:
        """Feed one score; True exactly when the alert fires for ``key`` at this score."""
        if not ready or p_fake != p_fake:  # NaN: nothing to judge yet
            return False
        state = self._states.setdefault(key, _AlertState())
        if p_fake < self.release_threshold:
            state.above_since_s = None
            state.fired = False
            return False
        if state.fired:
            return False
        if state.above_since_s is None:
            if p_fake < self.threshold:
                return False
            state.above_since_s = timestamp_s
        if p_fake >= self.threshold and timestamp_s - state.above_since_s >= self.sustain_s:
            state.fired = True
            return True
        return False

    def is_alerting(self, key: Hashable) -> bool:
        state = self._states.get(key)
        return state is not None and state.fired

    def forget(self, key: Hashable) -> None:
        self._states.pop(key, None)
