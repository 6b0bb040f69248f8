"""What the pipeline remembers about each track: for its results, events and the run summary."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any

from engine.score import Score


@dataclass
class TrackRecord:
    """What the pipeline remembers about one track, for results, events and the summary.

    ``frames`` counts the frames on which the track was CONFIRMED (not coasting as LOST).
    """

    source_id: str
    track_id: int
    first_timestamp_s: float
    last_timestamp_s: float
    history: deque[float]
    frames: int = 0
    frames_scored: int = 0
    score: Score | None = None
    verdict: str = "UNSURE"
    announced: bool = False
    alerts: int = 0
    last_update_event_s: float = -math.inf

    def summary(self) -> dict[str, Any]:
        p_fake = None if self.score is None or math.isnan(self.score.p_fake) else round(self.score.p_fake, 4)
        return {
            "source_id": self.source_id,
            "track_id": self.track_id,
            "frames": self.frames,
            "frames_scored": self.frames_scored,
            "first_timestamp_s": round(self.first_timestamp_s, 3),
            "last_timestamp_s": round(self.last_timestamp_s, 3),
            "p_fake": p_fake,
            "ready": bool(self.score is not None and self.score.ready),
            "verdict": self.verdict,
            "alerts": self.alerts,
            **reference_data(self.score),
        }


def reference_data(score: Score | None) -> dict[str, Any]:
    """``{"reference": {...}}`` when the score carries a comparison with the enrolled person, else {}."""
    if score is None or score.reference is None:
        return {}
    return {"reference": score.reference.to_dict()}
