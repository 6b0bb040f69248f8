"""Enrolment: reference thresholds from genuine pairs, the four verdicts, and the scorer wrapper."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from engine.checkpoint import CheckpointError, load_checkpoint
from engine.heads import build_head
from engine.reference import (
    VERDICT_RATE,
    Reference,
    ReferenceError,
    ReferenceScorer,
    ReferenceThresholds,
    calibrate_reference,
)
from engine.scorer import SequenceScorer
from engine.scorer_config import ScorerConfig

DIM = 512


def unit(vector: np.ndarray) -> np.ndarray:
    return (vector / np.linalg.norm(vector)).astype(np.float32)


def part_with_similarity(reference: np.ndarray, similarity: float, rng: np.random.Generator) -> np.ndarray:
    """A unit vector whose cosine to the unit ``reference`` is exactly ``similarity``."""
    noise = rng.normal(size=DIM)
    noise -= (noise @ reference) * reference
    noise = unit(noise)
    return unit(similarity * reference + math.sqrt(1.0 - similarity**2) * noise)


def features_with(reference: Reference, inner: float, outer: float, rng: np.random.Generator) -> np.ndarray:
    return np.concatenate(
        [part_with_similarity(reference.inner, inner, rng), part_with_similarity(reference.outer, outer, rng)]
    )


@pytest.fixture
def rng():
    return np.random.default_rng(7)


@pytest.fixture
def reference(rng):
    return Reference.from_features("alice.jpg", rng.normal(size=(2, 2 * DIM)).astype(np.float32))


THRESHOLDS = ReferenceThresholds(
    inner={0.01: 0.5, 0.05: 0.6}, outer={0.01: 0.7, 0.05: 0.8}, genuine_windows=100, protocol="test"
)


def test_reference_is_the_renormalised_mean_of_its_photos(rng):
    rows = rng.normal(size=(3, 2 * DIM)).astype(np.float32)
    reference = Reference.from_features("two.jpg", rows)
    expected = unit(np.mean([unit(row) for row in rows[:, :DIM]], axis=0))
    assert np.allclose(reference.inner, expected, atol=1e-6)
    assert math.isclose(float(np.linalg.norm(reference.outer)), 1.0, rel_tol=1e-5)
    assert reference.photos == 3
    inner, outer = reference.similarities(np.concatenate([reference.inner, reference.outer])[None] * 5.0)
    assert inner[0] == pytest.approx(1.0, abs=1e-5) and outer[0] == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("shape", [(0, 1024), (2, 512), (1024,)])
def test_reference_refuses_features_that_are_not_inner_outer_evidence(shape):
    with pytest.raises(ReferenceError, match="N x 1024"):
        Reference.from_features("x", np.ones(shape, np.float32))


def test_thresholds_are_lower_order_statistics_of_genuine_windows():
    # 100 genuine windows with inner similarity 0.01 .. 1.00: at 5 %, 5 may lie below the threshold.
    inner = np.arange(1, 101) / 100.0
    outer = inner[::-1].copy()
    thresholds = calibrate_reference(inner, outer, "synthetic")
    assert thresholds.inner[0.05] == pytest.approx(0.06)
    assert thresholds.inner[0.01] == pytest.approx(0.02)
    assert int((inner < thresholds.inner[0.05]).sum()) == 5
    assert int((outer < thresholds.outer[0.01]).sum()) == 1
    assert thresholds.genuine_windows == 100
    with pytest.raises(ValueError, match="one inner and one outer"):
        calibrate_reference(inner, outer[:-1], "synthetic")


@pytest.mark.parametrize(
    ("inner", "outer", "verdict"),
    [(0.9, 0.9, "match"), (0.9, 0.2, "face_only"), (0.1, 0.9, "head_only"), (0.1, 0.2, "other")],
)
def test_the_four_verdicts(inner, outer, verdict):
    assert THRESHOLDS.verdict(inner, outer) == verdict
    assert THRESHOLDS.verdict(math.nan, outer) == "unsure"


def test_the_verdict_uses_the_one_percent_thresholds_unless_told():
    assert VERDICT_RATE == 0.01
    assert THRESHOLDS.verdict(0.55, 0.75) == "match"
    assert THRESHOLDS.verdict(0.55, 0.75, rate=0.05) == "other"


def test_thresholds_round_trip_and_refuse_bad_tables():
    restored = ReferenceThresholds.from_dict(THRESHOLDS.to_dict())
    assert restored == THRESHOLDS
    with pytest.raises(ValueError, match="must be for"):
        ReferenceThresholds(inner={0.05: 0.5}, outer={0.01: 0.7, 0.05: 0.8}, genuine_windows=1, protocol="")
    with pytest.raises(ValueError, match="cosine similarities"):
        ReferenceThresholds(
            inner={0.01: 1.5, 0.05: 0.6}, outer={0.01: 0.7, 0.05: 0.8}, genuine_windows=1, protocol=""
        )


def make_scorer(window: int = 4, min_samples: int = 3) -> SequenceScorer:
    torch.manual_seed(0)
    head = build_head("temporal_conv", input_dim=2 * DIM)
    config = ScorerConfig(window_size=window, sample_rate_hz=4.0, min_samples=min_samples, max_gap_s=1.0)
    return SequenceScorer(head, config)


def test_scorer_scores_as_before_and_adds_the_window_mean_comparison(reference, rng):
    plain, wrapped = make_scorer(), ReferenceScorer(make_scorer(), THRESHOLDS, reference)
    sims = [(0.9, 0.9), (0.9, 0.1), (0.9, 0.1), (0.9, 0.1), (0.9, 0.1)]
    results = []
    for step, (inner, outer) in enumerate(sims):
        features = features_with(reference, inner, outer, rng)
        expected = plain.update(1, features, step * 0.25)
        got = wrapped.update(1, features, step * 0.25)
        assert got.p_fake == pytest.approx(expected.p_fake, nan_ok=True)
        results.append(got.reference)
    assert [r.verdict for r in results[:2]] == ["unsure", "unsure"]
    # Third sample: mean outer (0.9 + 0.1 + 0.1) / 3 = 0.37 < 0.7 while the face matches.
    assert results[2].verdict == "face_only"
    assert results[2].outer_sim == pytest.approx(0.3667, abs=1e-3)
    assert results[2].inner_sim == pytest.approx(0.9, abs=1e-4)
    # Window of 4: the first sample has left it.
    assert results[4].samples == 4 and results[4].outer_sim == pytest.approx(0.1, abs=1e-4)


def test_scorer_tracks_are_independent_and_a_gap_or_forget_starts_afresh(reference, rng):
    scorer = ReferenceScorer(make_scorer(min_samples=1), THRESHOLDS, reference)
    first = scorer.update_many(
        [(1, features_with(reference, 0.9, 0.9, rng), 0.0), (2, features_with(reference, 0.1, 0.9, rng), 0.0)]
    )
    assert [s.reference.verdict for s in first] == ["match", "head_only"]
    # A 5 s gap (max_gap_s 1): the old similarities no longer count.
    after_gap = scorer.update(1, features_with(reference, 0.1, 0.2, rng), 5.0)
    assert after_gap.reference.samples == 1 and after_gap.reference.verdict == "other"
    scorer.forget(2)
    assert 2 not in scorer.track_ids
    again = scorer.update(2, features_with(reference, 0.9, 0.9, rng), 0.5)
    assert again.reference.samples == 1 and again.reference.verdict == "match"


def test_checkpoint_keeps_reference_thresholds_and_refuses_a_corrupt_table(tmp_path):
    from tests.engine.test_checkpoint import make_checkpoint

    assert make_checkpoint().reference is None
    path = make_checkpoint(reference=THRESHOLDS).save(tmp_path / "with_reference.pt")
    assert load_checkpoint(path).reference == THRESHOLDS
    raw = torch.load(path, weights_only=True)
    raw["reference"] = {"inner": {"0.01": 0.5}}
    torch.save(raw, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="unreadable reference thresholds"):
        load_checkpoint(tmp_path / "bad.pt")


def test_the_shipped_model_carries_reference_thresholds_from_genuine_pairs():
    shipped = load_checkpoint()
    assert shipped.reference is not None
    assert shipped.reference.genuine_windows >= 100
    assert 0.0 < shipped.reference.inner[0.01] <= shipped.reference.inner[0.05] < 1.0
    assert 0.0 < shipped.reference.outer[0.01] <= shipped.reference.outer[0.05] < 1.0
    assert "genuine pairs of real faces only" in shipped.reference.protocol


def test_scorer_without_a_reference_passes_scores_through_and_a_new_reference_starts_afresh(reference, rng):
    scorer = ReferenceScorer(make_scorer(min_samples=1), THRESHOLDS)
    assert scorer.update(1, features_with(reference, 0.9, 0.9, rng), 0.0).reference is None
    scorer.set_reference(reference)
    assert scorer.reference is reference
    first = scorer.update(1, features_with(reference, 0.9, 0.1, rng), 0.25).reference
    assert first.samples == 1 and first.verdict == "face_only"
    other = Reference.from_features("bob.jpg", rng.normal(size=(1, 2 * DIM)).astype(np.float32))
    scorer.set_reference(other)
    second = scorer.update(1, features_with(other, 0.95, 0.95, rng), 0.5).reference
    # The window holds only the sample compared with the new person.
    assert second.samples == 1 and second.verdict == "match"
    scorer.set_reference(None)
    assert scorer.update(1, features_with(other, 0.95, 0.95, rng), 0.75).reference is None
