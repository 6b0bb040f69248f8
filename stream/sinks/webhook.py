"""Forwards alert events to a webhook, without ever blocking the run loop."""

from __future__ import annotations

import base64
import json
import logging
import queue
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from typing import Any

import numpy as np

from stream.contracts import Event, FrameResult
from stream.sinks.events import event_record
from stream.sources.redact import redact

logger = logging.getLogger(__name__)

# How long stop() waits for the webhook thread to send what is queued.
_STOP_TIMEOUT_S = 5.0


class WebhookSink:
    """POSTs every ``alert`` event (as the JSON of ``event_record``) through a ``WebhookNotifier``.

    Starts the notifier's thread on construction; ``close`` stops it.
    """

    needs_annotated = False

    def __init__(self, notifier: WebhookNotifier) -> None:
        self.notifier = notifier
        self.notifier.start()

    @classmethod
    def for_url(cls, url: str, timeout_s: float, queue_size: int) -> WebhookSink:
        """A sink posting to ``url`` (the ``alerts.webhook_*`` settings of the app config)."""
        return cls(WebhookNotifier(url, timeout_s=timeout_s, queue_size=queue_size))

    def write(self, result: FrameResult, annotated: np.ndarray | None) -> None:
        for event in result.events:
            if event.kind == "alert":
                self.notifier.send(event_record(event))

    def write_events(self, events: Sequence[Event]) -> None:
        pass  # only alerts are posted, and they come inside frames

    def close(self) -> None:
        self.notifier.stop()


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
