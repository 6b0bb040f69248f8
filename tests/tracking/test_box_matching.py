"""IoU, centre distance and assignment on literal boxes."""

from __future__ import annotations

import numpy as np
import pytest

from tracking.matching import (
    INFEASIBLE_COST,
    associate,
    centre_distance_matrix,
    iou_matrix,
    match_cost_matrix,
)


def test_iou_matrix_literal_values() -> None:
    a = np.array([[0, 0, 10, 10], [0, 0, 2, 2]], dtype=float)
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]], dtype=float)
    iou = iou_matrix(a, b)
    assert iou.shape == (2, 3)
    np.testing.assert_allclose(iou[0], [1.0, 50 / 150, 0.0])
    np.testing.assert_allclose(iou[1], [4 / 100, 0.0, 0.0])


def test_iou_of_degenerate_boxes_is_zero_not_nan() -> None:
    iou = iou_matrix(np.array([[5, 5, 5, 5]], float), np.array([[5, 5, 5, 5]], float))
    assert iou.tolist() == [[0.0]]


def test_empty_inputs_give_empty_matrices_and_no_matches() -> None:
    assert iou_matrix(np.zeros((0, 4)), np.zeros((3, 4))).shape == (0, 3)
    result = associate(np.zeros((0, 4)), np.array([[0, 0, 1, 1]], float), 0.3, 1.0)
    assert result.matches.shape == (0, 2)
    assert result.unmatched_detections.tolist() == [0]
    result = associate(np.array([[0, 0, 1, 1]], float), np.zeros((0, 4)), 0.3, 1.0)
    assert result.unmatched_tracks.tolist() == [0]


def test_bad_box_arrays_say_expected_versus_got() -> None:
    with pytest.raises(ValueError, match=r"\(N, 4\).*got shape \(3,\)"):
        iou_matrix(np.zeros(3), np.zeros((1, 4)))


def test_centre_distance_is_in_box_sizes() -> None:
    a = np.array([[0, 0, 10, 10]], float)
    b = np.array([[30, 40, 40, 50]], float)  # centres 50 px apart, both boxes 10 px
    np.testing.assert_allclose(centre_distance_matrix(a, b), [[5.0]])


def test_assignment_minimises_total_cost_not_greedy() -> None:
    # Greedy would give track 0 the detection it overlaps most (det 0) and leave track 1 without
    # any; the optimal assignment matches both.
    tracks = np.array([[0, 0, 10, 10], [6, 0, 16, 10]], float)
    detections = np.array([[3, 0, 13, 10], [-3, 0, 7, 10]], float)
    result = associate(tracks, detections, iou_threshold=0.3, max_centre_distance=0.0)
    assert sorted(map(tuple, result.matches.tolist())) == [(0, 1), (1, 0)]


def test_infeasible_pairs_are_never_matched() -> None:
    tracks = np.array([[0, 0, 10, 10]], float)
    detections = np.array([[100, 100, 110, 110]], float)
    cost = match_cost_matrix(tracks, detections, 0.3, 1.0)
    assert cost[0, 0] == INFEASIBLE_COST
    result = associate(tracks, detections, 0.3, 1.0)
    assert result.matches.shape == (0, 2)
    assert result.unmatched_tracks.tolist() == [0] and result.unmatched_detections.tolist() == [0]


def test_overlap_beats_centre_distance_fallback() -> None:
    track = np.array([[0, 0, 20, 20]], float)
    detections = np.array([[25, 0, 45, 20], [8, 0, 28, 20]], float)  # near but apart; overlapping
    cost = match_cost_matrix(track, detections, 0.3, 2.0)
    assert 1.0 <= cost[0, 0] <= 2.0
    assert cost[0, 1] < 1.0
    assert associate(track, detections, 0.3, 2.0).matches.tolist() == [[0, 1]]
