"""Small fakes of the stages around the pipeline (they satisfy stream.contracts' Protocols)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from engine.score import Score
from tracking.detection import Detection
from tracking.track import Track, TrackState


def detection(x1: float, y1: float, x2: float, y2: float, confidence: float = 0.99) -> Detection:
    box = np.array([x1, y1, x2, y2], dtype=np.float32)
    cx, cy, w = (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1
    landmarks = np.array(
        [
            [cx - w / 5, cy - w / 8],
            [cx + w / 5, cy - w / 8],
            [cx, cy],
            [cx - w / 6, cy + w / 5],
            [cx + w / 6, cy + w / 5],
        ],
        dtype=np.float32,
    )
    return Detection(box_xyxy=box, confidence=confidence, landmarks_5x2=landmarks)


class ScriptedDetector:
    """Returns ``boxes_for(frame_call_index)`` and records every call."""

    def __init__(self, boxes_for: Callable[[int], list[tuple[float, float, float, float]]]) -> None:
        self._boxes_for = boxes_for
        self.calls = 0
        self.batch_sizes: list[int] = []

    def detect(self, image: np.ndarray) -> list[Detection]:
        boxes = self._boxes_for(self.calls)
        self.calls += 1
        return [detection(*box) for box in boxes]

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[list[Detection]]:
        self.batch_sizes.append(len(images))
        return [self.detect(image) for image in images]


class ScriptedTracker:
    """Every detection run makes tracks 1..N CONFIRMED at the detected boxes; a run with no
    detections ends them all. Between runs the tracks stay as they were."""

    def __init__(self, source_id: str = "0") -> None:
        self.source_id = source_id
        self.updates: list[list[Detection] | None] = []
        self._tracks: list[Track] = []

    def update(self, detections: list[Detection] | None, timestamp_s: float) -> list[Track]:
        self.updates.append(detections)
        if detections is not None:
            self._tracks = [
                Track(
                    track_id=i + 1,
                    box_xyxy=d.box_xyxy,
                    state=TrackState.CONFIRMED,
                    hits=3,
                    age=len(self.updates),
                    source_id=self.source_id,
                    landmarks_5x2=d.landmarks_5x2,
                )
                for i, d in enumerate(detections)
            ]
        return list(self._tracks)


def fake_crop(image: np.ndarray, tracks: Sequence[Track]) -> np.ndarray:
    """One 160x160 crop per track, filled with the track id (so the encoder can tell them apart)."""
    crops = np.zeros((len(tracks), 160, 160, 3), dtype=np.uint8)
    for i, track in enumerate(tracks):
        crops[i] = track.track_id
    return crops


class RecordingEncoder:
    """Embeds a crop as a unit vector whose first value is the crop's fill value; records batches."""

    backend_name = "fake"
    precision = "fp32"
    weights_id = "fake"

    def __init__(self) -> None:
        self.batch_sizes: list[int] = []

    def encode(self, crops: np.ndarray) -> np.ndarray:
        self.batch_sizes.append(len(crops))
        embeddings = np.zeros((len(crops), 512), dtype=np.float32)
        embeddings[:, 0] = crops[:, 0, 0, 0]
        embeddings[:, 1] = 1.0
        return embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)

    def close(self) -> None:
        pass


class FixedRateScorer:
    """Wants a sample every ``period_s`` per track; p_fake is ``p_for(track_id, n)`` once ``n``
    (samples seen) reaches ``min_samples``. Records forget calls."""

    def __init__(
        self,
        p_for: Callable[[int, int], float] = lambda track_id, n: 0.1,
        sample_rate_hz: float = 10.0,
        min_samples: int = 2,
    ) -> None:
        self.sample_rate_hz = sample_rate_hz
        self._period_s = 1.0 / sample_rate_hz
        self._p_for = p_for
        self._min_samples = min_samples
        self._last: dict[int, float] = {}
        self.seen: dict[int, int] = {}
        self.forgotten: list[int] = []
        self.calls = 0

    def wants_sample(self, track_id: int, timestamp_s: float) -> bool:
        last = self._last.get(track_id)
        return last is None or timestamp_s - last >= self._period_s - 1e-9

    def update_many(self, items: Sequence[tuple[int, np.ndarray, float]]) -> list[Score]:
        self.calls += 1
        scores = []
        for track_id, embedding, timestamp_s in items:
            assert embedding.shape == (512,)
            self._last[track_id] = timestamp_s
            n = self.seen.get(track_id, 0) + 1
            self.seen[track_id] = n
            ready = n >= self._min_samples
            p = self._p_for(track_id, n) if ready else math.nan
            scores.append(Score(track_id, p, n, timestamp_s, ready, p))
        return scores

    def forget(self, track_id: int) -> None:
        self.forgotten.append(track_id)
        self._last.pop(track_id, None)
