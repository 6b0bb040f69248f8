"""Alerts: a track that stays past the threshold for a sustained time, and an optional webhook.

The rule has hysteresis so a score hovering at the threshold does not flap: a track's timer
starts when its score reaches ``threshold``, keeps running while the score stays at or above
``threshold - hysteresis``, and the alert fires once the timer reaches ``sustain_s`` with the
score at or above ``threshold``. After firing, the track re-arms only when its score falls
below ``threshold - hysteresis``.
"""

from __future__ import annotations

import base64
import json
import logging
import queue
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

from stream.sources.redact import redact

logger = logging.getLogger(__name__)

# How long stop() waits for the webhook thread to send what is queued.
_STOP_TIMEOUT_S = 5.0


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


class WebhookNotifier:
    """POSTs JSON payloads to a URL from its own thread; ``send`` never blocks.

    Explicit ``start()`` and ``stop()``; ``stop`` waits up to a few seconds for queued payloads.
    Failures are logged (URL redacted) and counted, never raised into the pipeline.
    """

    def __init__(self, url: str, *, timeout_s: float = 3.0, queue_size: int = 32) -> None:
        # urllib cannot send user:password@ from the URL itself: move it to a Basic auth header.
        self._url, self._headers = _split_credentials(url)
        self._safe_url = redact(url)
        self._timeout_s = timeout_s
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=queue_size)
        self._thread: threading.Thread | None = None
        self.sent = 0
        self.failed = 0
        self.dropped = 0

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("webhook notifier already started")
        self._thread = threading.Thread(target=self._run, name="webhook", daemon=True)
        self._thread.start()

    def send(self, payload: dict[str, Any]) -> bool:
        """Queue ``payload``; False (and counted as dropped) when the queue is full."""
        try:
            self._queue.put_nowait(payload)
        except queue.Full:
            self.dropped += 1
            logger.warning("webhook %s is behind: dropped an alert (%d so far)", self._safe_url, self.dropped)
            return False
        return True

    def stop(self) -> None:
        if self._thread is None:
            return
        try:
            self._queue.put(None, timeout=_STOP_TIMEOUT_S)
        except queue.Full:
            logger.warning("webhook %s: queue still full at stop", self._safe_url)
        self._thread.join(timeout=_STOP_TIMEOUT_S)
        self._thread = None

    def _run(self) -> None:
        while True:
            payload = self._queue.get()
            if payload is None:
                return
            self._post(payload)

    def _post(self, payload: dict[str, Any]) -> None:
        request = urllib.request.Request(
            self._url,
            data=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json", **self._headers},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self._timeout_s) as response:
                response.read()
            self.sent += 1
        except (urllib.error.URLError, OSError, ValueError) as error:
            self.failed += 1
            logger.warning("webhook POST to %s failed: %s", self._safe_url, redact(str(error)))


def _split_credentials(url: str) -> tuple[str, dict[str, str]]:
    """``(url without user:password@, headers carrying them as HTTP Basic auth)``."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None:
        return url, {}
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    user = urllib.parse.unquote(parts.username)
    password = urllib.parse.unquote(parts.password or "")
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc)), {"Authorization": f"Basic {token}"}
