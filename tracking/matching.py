"""Assigning detections to tracks: IoU, a centre-distance fallback, and the Hungarian solver."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

# Pairs that are not allowed to match get this cost; it is far above any real cost (at most 2).
INFEASIBLE_COST = 1e6

# The centre-distance fallback is for a face that moved fast, not one that changed size: a
# detection more than this many times larger or smaller than the track is a different face.
MAX_FALLBACK_SIZE_RATIO = 2.0


@dataclass(frozen=True, eq=False)
class Assignment:
    """Result of matching tracks (rows) to detections (columns).

    Attributes:
        matches: int array (K, 2) of (track index, detection index) pairs.
        unmatched_tracks: int array of track indices without a detection.
        unmatched_detections: int array of detection indices without a track.
    """

    matches: np.ndarray
    unmatched_tracks: np.ndarray
    unmatched_detections: np.ndarray


def _as_boxes(boxes: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(boxes, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != 4:
        raise ValueError(f"{name} must be an (N, 4) array of x1, y1, x2, y2 boxes, got shape {array.shape}")
    return array


def iou_matrix(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """Intersection over union of every box in ``boxes_a`` (N, 4) with every box in ``boxes_b`` (M, 4).

    Boxes are x1, y1, x2, y2 in any common unit. Returns float64 (N, M); 0 where a union is empty.
    """
    a = _as_boxes(boxes_a, "boxes_a")[:, None, :]
    b = _as_boxes(boxes_b, "boxes_b")[None, :, :]
    inter_w = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0.0, None)
    inter_h = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0.0, None)
    intersection = inter_w * inter_h
    area_a = np.clip(a[..., 2] - a[..., 0], 0.0, None) * np.clip(a[..., 3] - a[..., 1], 0.0, None)
    area_b = np.clip(b[..., 2] - b[..., 0], 0.0, None) * np.clip(b[..., 3] - b[..., 1], 0.0, None)
    union = area_a + area_b - intersection
    return np.divide(intersection, union, out=np.zeros_like(intersection), where=union > 0)


def _sizes(boxes: np.ndarray) -> np.ndarray:
    widths = np.clip(boxes[:, 2] - boxes[:, 0], 1e-6, None)
    heights = np.clip(boxes[:, 3] - boxes[:, 1], 1e-6, None)
    return np.sqrt(widths * heights)


def centre_distance_matrix(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """Distance between box centres divided by the pair's mean box size (sqrt(w * h)), (N, M)."""
    a = _as_boxes(boxes_a, "boxes_a")
    b = _as_boxes(boxes_b, "boxes_b")
    centres_a = (a[:, :2] + a[:, 2:]) / 2
    centres_b = (b[:, :2] + b[:, 2:]) / 2
    distance = np.linalg.norm(centres_a[:, None, :] - centres_b[None, :, :], axis=2)
    mean_size = (_sizes(a)[:, None] + _sizes(b)[None, :]) / 2
    return distance / mean_size


def match_cost_matrix(
    track_boxes: np.ndarray,
    detection_boxes: np.ndarray,
    iou_threshold: float,
    max_centre_distance: float,
) -> np.ndarray:
    """Cost of assigning each detection to each track; ``INFEASIBLE_COST`` where not allowed.

    Overlapping pairs (IoU >= ``iou_threshold``) cost ``1 - IoU`` (< 1). Other pairs whose centres
    are within ``max_centre_distance`` box sizes and whose sizes differ by at most
    ``MAX_FALLBACK_SIZE_RATIO`` cost ``1 + distance / max_centre_distance`` (in [1, 2]), so any
    overlap beats the fallback when both are possible.
    """
    iou = iou_matrix(track_boxes, detection_boxes)
    cost = np.full(iou.shape, INFEASIBLE_COST)
    overlapping = iou >= iou_threshold
    cost[overlapping] = 1.0 - iou[overlapping]
    if max_centre_distance > 0 and iou.size:
        distance = centre_distance_matrix(track_boxes, detection_boxes)
        size_ratio = (
            _sizes(_as_boxes(track_boxes, "track_boxes"))[:, None]
            / _sizes(_as_boxes(detection_boxes, "detection_boxes"))[None, :]
        )
        similar_size = (size_ratio <= MAX_FALLBACK_SIZE_RATIO) & (size_ratio >= 1 / MAX_FALLBACK_SIZE_RATIO)
        near = ~overlapping & similar_size & (distance <= max_centre_distance)
        cost[near] = 1.0 + distance[near] / max_centre_distance
    return cost


def associate(
    track_boxes: np.ndarray,
    detection_boxes: np.ndarray,
    iou_threshold: float,
    max_centre_distance: float,
) -> Assignment:
    """Match tracks to detections with the minimum total cost (``match_cost_matrix``).

    Solved with scipy's ``linear_sum_assignment``; a pair whose cost is infeasible is never
    returned as a match.
    """
    tracks = _as_boxes(track_boxes, "track_boxes")
    detections = _as_boxes(detection_boxes, "detection_boxes")
    cost = match_cost_matrix(tracks, detections, iou_threshold, max_centre_distance)
    rows, cols = linear_sum_assignment(cost) if cost.size else (np.array([], int), np.array([], int))
    feasible = cost[rows, cols] < INFEASIBLE_COST
    matches = np.stack([rows[feasible], cols[feasible]], axis=1).astype(np.intp).reshape(-1, 2)
    return Assignment(
        matches=matches,
        unmatched_tracks=np.setdiff1d(np.arange(len(tracks)), matches[:, 0]).astype(np.intp),
        unmatched_detections=np.setdiff1d(np.arange(len(detections)), matches[:, 1]).astype(np.intp),
    )
