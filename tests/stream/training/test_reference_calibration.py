"""Reference thresholds: AMFD pairing, genuine clip windows, the dev measurements, and real AMFD photos."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from engine.reference import Reference, ReferenceThresholds
from stream.training.datasets import MediaItem, load_manifest
from stream.training.reference_calibration import (
    AMFD_SOURCE,
    Comparison,
    amfd_pairs,
    clip_comparisons,
    dev_measurements,
    photo_comparisons,
    verdict_counts,
)
from tracking.config import CropConfig

DIM = 512
THRESHOLDS = ReferenceThresholds(
    inner={0.01: 0.5, 0.05: 0.6}, outer={0.01: 0.7, 0.05: 0.8}, genuine_windows=10, protocol="test"
)


def item(name: str, source: str = AMFD_SOURCE, label: int = 0) -> MediaItem:
    path = Path(f"/data/{name}")
    return MediaItem(path=path, name=name, label=label, group="g", kind="image", source=source)


def test_amfd_pairs_keep_people_with_a_neutral_and_a_smiling_photo():
    items = [
        item("real/amfd/NF-1001.jpg"),
        item("real/amfd/SF-1001.jpg"),
        item("real/amfd/NM-1002.jpg"),  # no smile: left out
        item("real/amfd/NM-1003.jpg"),
        item("real/amfd/SM-1003.jpg"),
        item("real/aaf/NF-1004.jpg", source="other"),
        item("real/amfd/SF-1004.jpg"),
    ]
    pairs = amfd_pairs(items)
    assert sorted(pairs) == ["1001", "1003"]
    assert pairs["1003"]["S"].path.name == "SM-1003.jpg"


def features(inner_sims, outer_sims, reference: Reference, rng) -> np.ndarray:
    rows = []
    for inner, outer in zip(inner_sims, outer_sims, strict=True):
        parts = []
        for base, sim in ((reference.inner, inner), (reference.outer, outer)):
            noise = rng.normal(size=DIM)
            noise -= (noise @ base) * base
            noise /= np.linalg.norm(noise)
            parts.append(sim * base + np.sqrt(1 - sim**2) * noise)
        rows.append(np.concatenate(parts))
    return np.asarray(rows, np.float32)


def test_clip_windows_enrol_the_first_frame_and_average_later_windows():
    rng = np.random.default_rng(0)
    first = rng.normal(size=(1, 2 * DIM)).astype(np.float32)
    reference = Reference.from_features("clip", first)
    later = features([0.9] * 4 + [0.4] * 4 + [0.1] * 3, [0.8] * 11, reference, rng)
    into = Comparison([], [], [])
    clip_comparisons(np.concatenate([first, later]), 4, "clip", into)
    # 11 later samples make two whole windows of 4; the last 3 are left out.
    assert into.inner == pytest.approx([0.9, 0.4], abs=1e-4)
    assert into.outer == pytest.approx([0.8, 0.8], abs=1e-4)
    clip_comparisons(later[:4], 4, "short", into)  # too short for a reference and a window
    assert len(into.inner) == 2
    assert verdict_counts(THRESHOLDS, into) == {
        "windows": 2,
        "verdicts": {"head_only": 1, "match": 1},
        "match_rate": 0.5,
    }


def extracted(name: str, label: int, rows: np.ndarray) -> SimpleNamespace:
    faces = SimpleNamespace(empty=False, primary_track=lambda: np.arange(len(rows)))
    return SimpleNamespace(item=item(f"dev/{name}.mp4", label=label), faces=faces, embeddings=rows)


def test_dev_measurements_enrol_the_operator_and_score_the_swap():
    rng = np.random.default_rng(1)
    measured_videos = []
    for pair in range(3):
        first = rng.normal(size=(1, 2 * DIM)).astype(np.float32)
        operator = Reference.from_features("op", first)
        left = np.concatenate([first, features([0.8] * 8, [0.9] * 8, operator, rng)])
        right = features([0.2] * 8, [0.9] * 8, operator, rng)  # another face on the operator's head
        measured_videos += [extracted(f"dfl_{pair}_left", 0, left), extracted(f"dfl_{pair}_right", 1, right)]
    report = dev_measurements(measured_videos, THRESHOLDS, window_size=4)
    assert report["dfl_pairs"] == 3
    assert report["dfl_real_windows"]["verdicts"] == {"match": 6}
    assert report["dfl_swap_windows"]["verdicts"] == {"head_only": 6}
    assert report["dfl_video_auc"] == 1.0
    assert report["dfl_swaps_not_matching_by_majority"] == 3
    assert report["dfl_reals_matching_by_majority"] == 3
    assert report["dev_real_self_windows"]["windows"] == 6


@pytest.mark.slow
def test_amfd_photos_of_the_same_person_agree_more_than_strangers(data_dir):
    from engine.checkpoint import load_checkpoint, open_encoder
    from stream.training.evidence_data import default_detector

    people = amfd_pairs(load_manifest(data_dir / "faces" / "manifest.csv"))
    assert len(people) >= 100
    chosen = dict(list(people.items())[:8])
    encoder = open_encoder(load_checkpoint())
    try:
        genuine, attack, other = photo_comparisons(chosen, default_detector(), encoder, CropConfig(), seed=0)
    finally:
        encoder.close()
    assert len(genuine.inner) == len(other.inner) == 8
    assert len(attack.inner) >= 6
    # The enrolled person's smile matches their neutral photo better than a stranger does, in
    # face and head; the impersonation keeps their face (inner) and loses their head (outer).
    assert np.mean(genuine.inner) > np.mean(other.inner) + 0.1
    assert np.mean(genuine.outer) > np.mean(other.outer) + 0.1
    assert np.mean(attack.inner) > np.mean(other.inner)
    assert np.mean(attack.outer) < np.mean(genuine.outer) - 0.1
