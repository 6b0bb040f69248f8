"""Alerts: a track that stays past the threshold for a sustained time, or that stops matching the
enrolled person (the webhook that posts them is an output: ``stream.sinks.webhook``).

The score rule has hysteresis so a score hovering at the threshold does not flap: a track's timer
starts when its score reaches ``threshold``, keeps running while the score stays at or above
``threshold - hysteresis``, and the alert fires once the timer reaches ``sustain_s`` with the
score at or above ``threshold``. After firing, the track re-arms only when its score falls
below ``threshold - hysteresis``.

The enrolment rule (``ReferenceAlertMonitor``, with a person enrolled through ``--reference`` or
the page) reads the comparison's verdict the same way: a swap's signature, ``face_only`` (the
enrolled face on another head) or ``head_only`` (another face on the enrolled head), starts the
timer; it keeps running until a window reads ``match``; the alert fires once the timer reaches
``sustain_s`` with the window still reading a swap's signature, and re-arms only at ``match``.
``other`` (neither part matches: another person, who may simply be in the picture too) never
starts it. While another face of the same source matches the enrolled person, the alert waits:
the enrolled person is there, and the face that does not match is someone else's. On the dev
videos another person in the picture read ``head_only`` (their head in the same scene looks
alike to the outer-face embedding), and this rule kept them from alerting. Enrolling someone else
(the page can, mid-session) re-arms every track.
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
        on_reference: also alert when a track stops matching the enrolled person (module
            docstring); only with a person enrolled.
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
    on_reference: bool = True
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

    def step(self, timestamp_s: float, sustain_s: float, *, reset: bool, starts: bool, fires: bool) -> bool:
        """One observation of a sustain rule: ``reset`` re-arms it; otherwise ``starts`` may start
        the timer, and the alert fires (once) when ``fires`` holds ``sustain_s`` after the start."""
        if reset:
            self.above_since_s = None
            self.fired = False
            return False
        if self.fired:
            return False
        if self.above_since_s is None:
            if not starts:
                return False
            self.above_since_s = timestamp_s
        if fires and timestamp_s - self.above_since_s >= sustain_s:
            self.fired = True
            return True
        return False


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
        past = p_fake >= self.threshold
        state = self._states.setdefault(key, _AlertState())
        return state.step(
            timestamp_s, self.sustain_s, reset=p_fake < self.release_threshold, starts=past, fires=past
        )

    def is_alerting(self, key: Hashable) -> bool:
        state = self._states.get(key)
        return state is not None and state.fired

    def forget(self, key: Hashable) -> None:
        self._states.pop(key, None)


# Comparison verdicts that look like a swap of the enrolled person (``engine.reference``).
SWAP_SIGNATURES = frozenset({"face_only", "head_only"})


class ReferenceAlertMonitor:
    """Applies the enrolment rule (module docstring) per track key; feed ``update`` every new
    comparison of a track, in time order, and ``forget`` the key when the track ends."""

    def __init__(self, sustain_s: float) -> None:
        if not sustain_s >= 0:
            raise ValueError(f"sustain_s must be >= 0, got {sustain_s!r}")
        self.sustain_s = sustain_s
        # Each key's state with the enrolment it was built under (``rearm``).
        self._states: dict[Hashable, tuple[int, _AlertState]] = {}
        self._enrolment = 0

    def update(self, key: Hashable, verdict: str, timestamp_s: float, *, held: bool = False) -> bool:
        """True exactly when the alert fires for ``key`` at this comparison; ``held``: another face
        matches the enrolled person now, so the alert waits (the timer keeps running)."""
        swap = verdict in SWAP_SIGNATURES
        enrolment, state = self._states.get(key, (-1, _AlertState()))
        if enrolment != self._enrolment:
            enrolment, state = self._enrolment, _AlertState()
            self._states[key] = (enrolment, state)
        return state.step(
            timestamp_s, self.sustain_s, reset=verdict == "match", starts=swap, fires=swap and not held
        )

    def rearm(self) -> None:
        """Someone else was enrolled: every track starts afresh at its next comparison (safe to
        call from another thread: it only moves a counter)."""
        self._enrolment += 1

    def forget(self, key: Hashable) -> None:
        self._states.pop(key, None)
