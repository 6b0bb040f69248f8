"""JSON Lines event log (``deepwatch run --events FILE.jsonl``) and the final JSON summary."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from stream.contracts import Event, FrameResult

logger = logging.getLogger(__name__)


def event_record(event: Event) -> dict[str, Any]:
    """The JSON object of one event: kind, source_id, track_id, timestamp_s, wall_time, data."""
    return {
        "kind": event.kind,
        "source_id": event.source_id,
        "track_id": event.track_id,
        "timestamp_s": round(event.timestamp_s, 3),
        "wall_time": round(event.wall_time, 3),
        "data": _jsonable(event.data),
    }


class EventsSink:
    """Appends one JSON object per event (track_new, track_update, alert, track_end; photo_face in
    photo mode) to ``path``.

    Lines are flushed as written, so a tail -f or a crash still sees every event so far.
    """

    needs_annotated = False

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("w", encoding="utf-8")
        self.events_written = 0

    def write(self, result: FrameResult, annotated: np.ndarray | None) -> None:
        self.write_events(result.events)

    def write_events(self, events: Sequence[Event]) -> None:
        if self._file.closed:
            raise ValueError(f"events file {self.path} is already closed")
        for event in events:
            self._file.write(json.dumps(event_record(event)) + "\n")
            self.events_written += 1
        if events:
            self._file.flush()

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()


def write_summary(path: str | Path, summary: dict[str, Any]) -> None:
    """Write the run summary as indented JSON (NaN written as null)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_jsonable(summary), indent=2) + "\n", encoding="utf-8")


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, (np.floating, float)):
        return None if math.isnan(float(value)) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value
