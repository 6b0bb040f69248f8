"""Forwards alert events to a webhook, without ever blocking the run loop."""

from __future__ import annotations

import numpy as np

from stream.alerts import WebhookNotifier
from stream.results import FrameResult
from stream.sinks.events import event_record


class WebhookSink:
    """POSTs every ``alert`` event (as the JSON of ``event_record``) through a ``WebhookNotifier``.

    Starts the notifier's thread on construction; ``close`` stops it.
    """

    needs_annotated = False

    def __init__(self, notifier: WebhookNotifier) -> None:
        self.notifier = notifier
        self.notifier.start()

    def write(self, result: FrameResult, annotated: np.ndarray | None) -> None:
        for event in result.events:
            if event.kind == "alert":
                self.notifier.send(event_record(event))

    def close(self) -> None:
        self.notifier.stop()
