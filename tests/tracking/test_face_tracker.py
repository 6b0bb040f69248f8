"""FaceTracker lifecycle and identity, on literal boxes."""

from __future__ import annotations

import numpy as np
import pytest

from tracking import Detection, FaceTracker, TrackerConfig, TrackState

FPS = 30.0


def face(x1: float, y1: float, x2: float, y2: float, confidence: float = 0.99) -> Detection:
    """A detection with landmarks laid out as MTCNN puts them inside the box."""
    box = np.array([x1, y1, x2, y2], dtype=np.float32)
    layout = np.array([[0.3, 0.4], [0.7, 0.4], [0.5, 0.55], [0.35, 0.75], [0.65, 0.75]], dtype=np.float32)
    landmarks = box[:2] + layout * (box[2:] - box[:2])
    return Detection(box_xyxy=box, confidence=confidence, landmarks_5x2=landmarks.astype(np.float32))


def run(tracker: FaceTracker, frames: list[list[Detection] | None], start_frame: int = 0):
    """Feed one update per frame; return the tracks of every frame."""
    return [tracker.update(dets, (start_frame + i) / FPS) for i, dets in enumerate(frames)]


def test_birth_makes_one_tentative_track() -> None:
    tracker = FaceTracker(TrackerConfig(min_hits=3))
    (tracks,) = run(tracker, [[face(100, 100, 180, 190)]])
    assert len(tracks) == 1
    track = tracks[0]
    assert track.track_id == 1
    assert track.state is TrackState.TENTATIVE
    assert (track.hits, track.age, track.frames_since_update) == (1, 0, 0)
    assert track.source_id == "0"
    np.testing.assert_allclose(track.box_xyxy, [100, 100, 180, 190], atol=1e-4)
    assert track.box_xyxy.dtype == np.float32 and track.box_xyxy.shape == (4,)
    assert track.landmarks_5x2 is not None and track.landmarks_5x2.shape == (5, 2)


def test_confirmation_after_min_hits_consecutive_matches() -> None:
    tracker = FaceTracker(TrackerConfig(min_hits=3))
    history = run(tracker, [[face(100 + 2 * i, 100, 180 + 2 * i, 190)] for i in range(4)])
    states = [tracks[0].state for tracks in history]
    assert states == [TrackState.TENTATIVE, TrackState.TENTATIVE, TrackState.CONFIRMED, TrackState.CONFIRMED]
    assert [tracks[0].track_id for tracks in history] == [1, 1, 1, 1]
    assert history[-1][0].hits == 4


def test_min_hits_one_confirms_at_birth() -> None:
    (tracks,) = run(FaceTracker(min_hits=1), [[face(0, 0, 50, 50)]])
    assert tracks[0].state is TrackState.CONFIRMED


def test_tentative_track_that_misses_ends_and_is_reported_once() -> None:
    tracker = FaceTracker(TrackerConfig(min_hits=3))
    run(tracker, [[face(100, 100, 180, 190)]])
    assert tracker.ended_track_ids() == []
    (tracks,) = run(tracker, [[]], start_frame=1)
    assert tracks == []
    assert tracker.ended_track_ids() == [1]
    run(tracker, [[]], start_frame=2)
    assert tracker.ended_track_ids() == []


def test_predict_only_frames_do_not_count_as_misses() -> None:
    tracker = FaceTracker(TrackerConfig(min_hits=2, max_age_frames=10, detect_every_n_frames=5))
    frames: list[list[Detection] | None] = []
    for i in range(11):
        frames.append([face(100 + 3 * i, 100, 180 + 3 * i, 190)] if i % 5 == 0 else None)
    history = run(tracker, frames)
    assert all(len(tracks) == 1 and tracks[0].track_id == 1 for tracks in history)
    assert history[1][0].state is TrackState.TENTATIVE
    assert history[4][0].state is TrackState.TENTATIVE
    assert history[5][0].state is TrackState.CONFIRMED
    assert history[9][0].frames_since_update == 4
    assert history[10][0].frames_since_update == 0


def test_confirmed_track_coasts_through_missed_detections_and_recovers() -> None:
    tracker = FaceTracker(TrackerConfig(min_hits=3, max_age_frames=10))
    speed = 4.0  # pixels per frame to the right
    moving = [[face(100 + speed * i, 100, 180 + speed * i, 190)] for i in range(10)]
    history = run(tracker, moving)
    assert history[-1][0].state is TrackState.CONFIRMED

    # Five frames where the detector ran and saw nothing: the track is LOST and keeps moving.
    coasting = run(tracker, [[] for _ in range(5)], start_frame=10)
    for offset, tracks in enumerate(coasting, start=1):
        assert len(tracks) == 1
        track = tracks[0]
        assert track.state is TrackState.LOST
        assert track.frames_since_update == offset
        expected_x1 = 100 + speed * (9 + offset)
        assert abs(float(track.box_xyxy[0]) - expected_x1) < 3.0, (offset, track.box_xyxy)

    # The face reappears where constant velocity says it should be: same id, CONFIRMED again.
    (tracks,) = run(tracker, [[face(100 + speed * 15, 100, 180 + speed * 15, 190)]], start_frame=15)
    assert [(t.track_id, t.state) for t in tracks] == [(1, TrackState.CONFIRMED)]
    assert tracker.ids_created == 1


def test_lost_track_ends_after_max_age_and_its_id_is_never_reused() -> None:
    tracker = FaceTracker(TrackerConfig(min_hits=1, max_age_frames=5, detect_every_n_frames=1))
    run(tracker, [[face(100, 100, 180, 190)] for _ in range(3)])
    ended_at = None
    for frame in range(3, 12):
        tracks = tracker.update([], frame / FPS)
        if tracker.ended_track_ids():
            assert tracker.ended_track_ids() == [1]
            assert tracks == []
            ended_at = frame
            break
        assert tracks[0].state is TrackState.LOST
    # Last match at frame 2; frames_since_update exceeds max_age_frames=5 on frame 8.
    assert ended_at == 8

    # The same face at the same place later is a new track with a new id.
    (tracks,) = run(tracker, [[face(100, 100, 180, 190)]], start_frame=12)
    assert [t.track_id for t in tracks] == [2]


def test_no_id_reuse_over_many_births_and_deaths() -> None:
    tracker = FaceTracker(TrackerConfig(min_hits=1, max_age_frames=1, detect_every_n_frames=1))
    seen: list[int] = []
    frame = 0
    for _ in range(20):
        for tracks in run(tracker, [[face(10, 10, 60, 60)], [], []], start_frame=frame):
            seen.extend(t.track_id for t in tracks)
        frame += 3
    assert sorted(set(seen)) == list(range(1, 21))
    assert tracker.ids_created == 20


def test_two_crossing_faces_keep_their_ids() -> None:
    tracker = FaceTracker(TrackerConfig(min_hits=2, max_age_frames=10))
    size = 60.0
    frames = []
    for i in range(41):
        # A walks right, B walks left, both at 8 px per frame; they overlap for ~15 frames.
        a_x = 40 + 8 * i
        b_x = 360 - 8 * i
        frames.append([face(a_x, 100, a_x + size, 100 + size), face(b_x, 112, b_x + size, 112 + size)])
    history = run(tracker, frames)
    first_a = min(history[3], key=lambda t: t.box_xyxy[0]).track_id
    first_b = max(history[3], key=lambda t: t.box_xyxy[0]).track_id
    assert first_a != first_b
    final = history[-1]
    assert len(final) == 2
    after_a = max(final, key=lambda t: t.box_xyxy[0])  # A is now on the right
    after_b = min(final, key=lambda t: t.box_xyxy[0])
    assert (after_a.track_id, after_b.track_id) == (first_a, first_b)
    assert tracker.ids_created == 2


def test_detection_order_does_not_matter_for_identity() -> None:
    tracker = FaceTracker(TrackerConfig(min_hits=1))
    left, right = face(0, 0, 50, 50), face(300, 0, 350, 50)
    run(tracker, [[left, right]])
    (tracks,) = run(tracker, [[right, left]], start_frame=1)
    by_id = {t.track_id: float(t.box_xyxy[0]) for t in tracks}
    assert by_id[1] == pytest.approx(0.0, abs=1.0)
    assert by_id[2] == pytest.approx(300.0, abs=1.0)


def test_centre_distance_fallback_keeps_a_small_fast_face() -> None:
    # A 20 px face moving 24 px per detection: consecutive boxes do not overlap at all.
    def frames() -> list[list[Detection] | None]:
        return [[face(10 + 24 * i, 50, 30 + 24 * i, 70)] for i in range(8)]

    with_fallback = FaceTracker(TrackerConfig(min_hits=1, max_centre_distance=1.5))
    run(with_fallback, frames())
    assert with_fallback.ids_created == 1

    iou_only = FaceTracker(TrackerConfig(min_hits=1, max_centre_distance=0.0))
    run(iou_only, frames())
    assert iou_only.ids_created == 8


def test_fallback_does_not_join_faces_of_very_different_size() -> None:
    tracker = FaceTracker(TrackerConfig(min_hits=1, max_centre_distance=2.0))
    run(tracker, [[face(100, 100, 120, 120)]])
    run(tracker, [[face(90, 130, 190, 230)]], start_frame=1)
    assert tracker.ids_created == 2


def test_kalman_smoothing_reduces_box_jitter() -> None:
    rng = np.random.default_rng(0)
    tracker = FaceTracker(TrackerConfig(min_hits=1))
    raw_centres, tracked_centres = [], []
    for i in range(120):
        x = 100 + 2.0 * i
        noise = rng.normal(0.0, 2.0, size=4)  # ~2.5% of the 80 px box
        det = face(x + noise[0], 100 + noise[1], x + 80 + noise[2], 180 + noise[3])
        (track,) = tracker.update([det], i / FPS)
        raw_centres.append((det.box_xyxy[:2] + det.box_xyxy[2:]) / 2)
        tracked_centres.append((track.box_xyxy[:2] + track.box_xyxy[2:]) / 2)

    def jitter(centres: list[np.ndarray]) -> float:
        c = np.array(centres[10:])
        return float(np.linalg.norm(c[2:] - 2 * c[1:-1] + c[:-2], axis=1).mean())

    assert jitter(tracked_centres) < jitter(raw_centres) / 2
    # Smoothing must not lag behind steady motion.
    truth = np.array([[140 + 2.0 * i, 140] for i in range(120)])
    lag = np.linalg.norm(np.array(tracked_centres)[30:] - truth[30:], axis=1).mean()
    assert lag < 2.5


def test_landmarks_ride_on_the_predicted_box() -> None:
    tracker = FaceTracker(TrackerConfig(min_hits=1, landmark_smoothing=0.0))
    for i in range(10):
        tracker.update([face(100 + 5 * i, 100, 180 + 5 * i, 180)], i / FPS)
    (track,) = tracker.update(None, 10 / FPS)
    assert track.landmarks_5x2 is not None
    expected = face(*track.box_xyxy.tolist()).landmarks_5x2
    np.testing.assert_allclose(track.landmarks_5x2, expected, atol=1e-3)
    assert float(track.box_xyxy[0]) == pytest.approx(150.0, abs=1.5)


def test_two_tracker_instances_are_independent() -> None:
    first, second = FaceTracker(source_id="cam-a"), FaceTracker(source_id="cam-b")
    run(first, [[face(0, 0, 50, 50), face(100, 0, 150, 50)]])
    (tracks,) = run(second, [[face(0, 0, 50, 50)]])
    assert [(t.track_id, t.source_id) for t in tracks] == [(1, "cam-b")]
    assert [t.track_id for t in first.tracks()] == [1, 2]
    assert first.ids_created == 2 and second.ids_created == 1


def test_no_faces_at_all_is_fine() -> None:
    tracker = FaceTracker()
    for i in range(5):
        assert tracker.update([], i / FPS) == []
        assert tracker.update(None, (i + 0.5) / FPS) == []
    assert tracker.ended_track_ids() == []


def test_end_all_reports_live_ids_and_keeps_counting() -> None:
    tracker = FaceTracker(TrackerConfig(min_hits=1))
    run(tracker, [[face(0, 0, 50, 50), face(100, 0, 150, 50)]])
    assert tracker.end_all() == [1, 2]
    assert tracker.ended_track_ids() == [1, 2]
    assert tracker.tracks() == []
    (tracks,) = run(tracker, [[face(0, 0, 50, 50)]], start_frame=1)
    assert [t.track_id for t in tracks] == [3]


def test_time_gaps_are_bridged_with_velocity_in_seconds() -> None:
    tracker = FaceTracker(TrackerConfig(min_hits=1, max_age_frames=30))
    for i in range(10):
        tracker.update([face(100 + 6 * i, 100, 180 + 6 * i, 180)], i / FPS)  # 180 px/s
    # A live source dropped frames: the next frame comes 0.2 s later.
    (track,) = tracker.update(None, 9 / FPS + 0.2)
    assert float(track.box_xyxy[0]) == pytest.approx(100 + 6 * 9 + 180 * 0.2, abs=3.0)


@pytest.mark.parametrize(
    ("detections", "error", "message"),
    [
        ("face", TypeError, "list of Detection"),
        ([np.zeros(4)], TypeError, "must be a Detection"),
        (
            [Detection(np.array([10, 10, 5, 20], np.float32), 0.9, np.zeros((5, 2), np.float32))],
            ValueError,
            "x2 > x1",
        ),
        (
            [Detection(np.array([0, 0, 10, 10], np.float32), 0.9, np.zeros((4, 2), np.float32))],
            ValueError,
            "landmarks_5x2",
        ),
        (
            [Detection(np.array([0, 0, np.nan, 10], np.float32), 0.9, np.zeros((5, 2), np.float32))],
            ValueError,
            "finite",
        ),
    ],
)
def test_malformed_detections_are_rejected_without_changing_state(
    detections: object, error: type[Exception], message: str
) -> None:
    tracker = FaceTracker(TrackerConfig(min_hits=1))
    run(tracker, [[face(0, 0, 50, 50)]])
    with pytest.raises(error, match=message):
        tracker.update(detections, 1 / FPS)  # type: ignore[arg-type]
    (tracks,) = run(tracker, [[face(1, 0, 51, 50)]], start_frame=1)
    assert [(t.track_id, t.age) for t in tracks] == [(1, 1)]


def test_timestamps_must_not_go_backwards() -> None:
    tracker = FaceTracker()
    tracker.update([], 1.0)
    with pytest.raises(ValueError, match=r"must not decrease: expected >= 1.0, got 0.5"):
        tracker.update([], 0.5)
    with pytest.raises(ValueError, match="finite"):
        tracker.update([], float("nan"))
    tracker.update([], 1.0)  # an equal timestamp is allowed (no motion is predicted)


def test_corrections_are_spread_over_the_detection_interval() -> None:
    paths = {}
    for blend in (True, False):
        tracker = FaceTracker(TrackerConfig(min_hits=1, detect_every_n_frames=3, blend_corrections=blend))
        frames: list[list[Detection] | None] = [
            [face(100, 100, 180, 180)] if i % 3 == 0 else None for i in range(12)
        ]
        # Then the face is found 12 px further right, and stays there.
        frames += [[face(112, 100, 192, 180)] if i % 3 == 0 else None for i in range(6)]
        paths[blend] = np.array([float(tracks[0].box_xyxy[0]) for tracks in run(tracker, frames)])
        assert tracker.ids_created == 1
    blended, direct = paths[True], paths[False]
    np.testing.assert_allclose(blended[:12], direct[:12], atol=1e-4)
    # On the detection frame the unblended box jumps; the blended one takes a third of that jump...
    assert 0 < blended[12] - blended[11] < 0.5 * (direct[12] - direct[11])
    # ...and by the next detection both agree: the Kalman state is the same.
    assert blended[14] == pytest.approx(direct[14], abs=1e-3)
    assert np.abs(np.diff(blended, 2)).max() < 0.6 * np.abs(np.diff(direct, 2)).max()


def test_blending_does_not_change_what_is_matched() -> None:
    # Same detections with and without blending: same ids and states on every frame.
    histories = []
    for blend in (True, False):
        tracker = FaceTracker(TrackerConfig(min_hits=2, detect_every_n_frames=4, blend_corrections=blend))
        frames: list[list[Detection] | None] = [
            [face(20 + 9 * i, 50, 80 + 9 * i, 110), face(400 - 7 * i, 60, 460 - 7 * i, 120)]
            if i % 4 == 0
            else None
            for i in range(40)
        ]
        histories.append([[(t.track_id, t.state) for t in tracks] for tracks in run(tracker, frames)])
    assert histories[0] == histories[1]


def test_landmark_layout_is_smoothed_across_detections() -> None:
    tracker = FaceTracker(TrackerConfig(min_hits=1, landmark_smoothing=0.5))
    box = np.array([100, 100, 200, 200], np.float32)
    layout = np.array([[0.3, 0.4], [0.7, 0.4], [0.5, 0.55], [0.35, 0.75], [0.65, 0.75]])
    tracker.update([Detection(box, 0.99, (box[:2] + layout * 100).astype(np.float32))], 0.0)
    # The next detection has every landmark 10 px (0.1 box) further right.
    moved = Detection(box, 0.99, (box[:2] + np.add(layout, [0.1, 0.0]) * 100).astype(np.float32))
    (track,) = tracker.update([moved], 1 / FPS)
    assert track.landmarks_5x2 is not None
    shift = track.landmarks_5x2 - (track.box_xyxy[:2] + layout * (track.box_xyxy[2:] - track.box_xyxy[:2]))
    np.testing.assert_allclose(shift, np.tile([5.0, 0.0], (5, 1)), atol=0.2)
