"""FaceStep and DetectionSchedule: the per-frame detect -> track rule of live pipeline and extraction."""

from __future__ import annotations

import numpy as np
import pytest

from tests.tracking.test_face_tracker import face
from tracking import Detection, FaceTracker, TrackerConfig, TrackState
from tracking.face_step import DetectionSchedule, FaceStep


class CountingDetector:
    """Returns one face moving 2 px right per call, and counts the frames it saw."""

    def __init__(self) -> None:
        self.frame_values: list[int] = []

    def detect(self, image: np.ndarray) -> list[Detection]:
        self.frame_values.append(int(image[0, 0, 0]))
        x = 100 + 2 * len(self.frame_values)
        return [face(x, 100, x + 80, 190)]


def frame(value: int) -> np.ndarray:
    return np.full((240, 320, 3), value, np.uint8)


def test_detects_every_nth_frame_from_the_first_and_tracks_every_frame() -> None:
    detector = CountingDetector()
    step = FaceStep(detector, FaceTracker(TrackerConfig(min_hits=2, detect_every_n_frames=3)), 3)
    results = [step.track(frame(i), i / 30.0) for i in range(7)]
    assert detector.frame_values == [0, 3, 6]
    assert [result.detected for result in results] == [True, False, False, True, False, False, True]
    assert all(result.detect_ms == 0.0 for result in results if not result.detected)
    assert [len(result.tracks) for result in results] == [1] * 7
    assert [result.tracks[0].track_id for result in results] == [1] * 7
    # Predicted on the frames between detections; confirmed at the second detection (min_hits=2).
    assert [result.tracks[0].frames_since_update for result in results] == [0, 1, 2, 0, 1, 2, 0]
    assert results[2].tracks[0].state is TrackState.TENTATIVE
    assert results[3].tracks[0].state is TrackState.CONFIRMED


def test_ended_tracks_are_not_reported() -> None:
    class OneThenNothing:
        calls = 0

        def detect(self, image: np.ndarray) -> list[Detection]:
            self.calls += 1
            return [face(100, 100, 180, 190)] if self.calls == 1 else []

    step = FaceStep(
        OneThenNothing(), FaceTracker(TrackerConfig(min_hits=1, max_age_frames=1, detect_every_n_frames=1)), 1
    )
    counts = [len(step.track(frame(0), i / 30.0).tracks) for i in range(4)]
    assert counts[0] == 1 and counts[-1] == 0


@pytest.mark.parametrize("every", [0, -1, 1.5])
def test_bad_detection_interval_is_refused(every: object) -> None:
    with pytest.raises(ValueError, match=f"detect_every_n_frames must be an integer >= 1, got {every!r}"):
        FaceStep(CountingDetector(), FaceTracker(), every)  # type: ignore[arg-type]


def test_detection_schedule_waits_for_the_one_in_flight_and_follows_a_changed_interval() -> None:
    schedule = DetectionSchedule()
    asked = [schedule.ask(3) for _ in range(5)]  # the first result never comes back
    assert asked == [True, False, False, False, False]
    schedule.delivered()
    assert schedule.ask(3)  # overdue: asked on the next frame once the result is in
    schedule.delivered()
    assert [schedule.ask(3) for _ in range(3)] == [False, False, True]
    schedule.delivered()
    # The shedding rule stretched the interval to 5, then restored 2.
    assert [schedule.ask(5) for _ in range(5)] == [False, False, False, False, True]
    schedule.delivered()
    assert [schedule.ask(2) for _ in range(2)] == [False, True]
