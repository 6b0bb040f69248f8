"""SequenceScorer: sampling rate, readiness, smoothing, batching, gaps and forgetting."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from engine.scorer import SampleClock, SequenceScorer
from engine.scorer_config import ScorerConfig


class MeanFirstFeature(nn.Module):
    """Logit = mean over the window of the first embedding component (easy to predict by hand)."""

    input_dim = 4

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return x[:, :, 0].mean(dim=1)


def embedding(value: float) -> np.ndarray:
    return np.array([value, 0.0, 0.0, 0.0], np.float32)


def sigmoid(value: float) -> float:
    return 1.0 / (1.0 + math.exp(-value))


def test_sample_clock_keeps_the_target_rate_on_a_30_fps_stream() -> None:
    clock = SampleClock(8.0)
    sampled = []
    for index in range(300):  # 10 s at 30 fps
        timestamp_s = index / 30.0
        if clock.is_due(timestamp_s):
            clock.mark(timestamp_s)
            sampled.append(timestamp_s)
    assert 79 <= len(sampled) <= 81
    gaps = np.diff(sampled)
    assert gaps.min() >= 0.09 and gaps.max() <= 0.134


def test_wants_sample_follows_the_rate_per_track() -> None:
    scorer = SequenceScorer(
        MeanFirstFeature(), ScorerConfig(window_size=4, min_samples=2, sample_rate_hz=10.0)
    )
    assert scorer.wants_sample(1, 0.0)
    scorer.update(1, embedding(0.0), 0.0)
    assert not scorer.wants_sample(1, 0.02)
    assert scorer.wants_sample(1, 0.1)
    assert scorer.wants_sample(2, 0.02)  # another track has its own schedule


def test_scores_become_ready_and_are_smoothed() -> None:
    config = ScorerConfig(window_size=3, min_samples=2, sample_rate_hz=10.0, ema_alpha=0.5)
    scorer = SequenceScorer(MeanFirstFeature(), config)
    first = scorer.update(7, embedding(1.0), 0.0)
    assert not first.ready and math.isnan(first.p_fake) and first.frames_seen == 1
    second = scorer.update(7, embedding(3.0), 0.1)
    assert second.ready and second.p_fake == pytest.approx(sigmoid(2.0))
    third = scorer.update(7, embedding(5.0), 0.2)
    assert third.p_fake_raw == pytest.approx(sigmoid(3.0))
    assert third.p_fake == pytest.approx(0.5 * sigmoid(3.0) + 0.5 * sigmoid(2.0))
    # The window slides: only the last 3 embeddings count.
    fourth = scorer.update(7, embedding(7.0), 0.3)
    assert fourth.p_fake_raw == pytest.approx(sigmoid(5.0))
    assert fourth.frames_seen == 4 and fourth.track_id == 7 and fourth.timestamp_s == 0.3


def test_update_many_matches_single_updates_with_one_head_call() -> None:
    config = ScorerConfig(window_size=3, min_samples=3, sample_rate_hz=10.0)
    single_head, batch_head = MeanFirstFeature(), MeanFirstFeature()
    single, batched = SequenceScorer(single_head, config), SequenceScorer(batch_head, config)
    rng = np.random.default_rng(0)
    for step in range(5):
        values = rng.normal(size=3)
        items = [(track_id, embedding(values[track_id]), step / 10) for track_id in range(3)]
        expected = [single.update(*item) for item in items]
        calls_before = batch_head.calls
        got = batched.update_many(items)
        assert [score.p_fake for score in got] == pytest.approx(
            [score.p_fake for score in expected], nan_ok=True
        )
        if step >= 2:
            assert batch_head.calls - calls_before == 1
    with pytest.raises(ValueError, match="once per update_many"):
        batched.update_many([(0, embedding(0.0), 1.0), (0, embedding(0.0), 1.0)])


def test_gap_restarts_the_window_and_forget_drops_the_track() -> None:
    config = ScorerConfig(window_size=3, min_samples=2, sample_rate_hz=10.0, max_gap_s=0.5)
    scorer = SequenceScorer(MeanFirstFeature(), config)
    scorer.update(1, embedding(1.0), 0.0)
    assert scorer.update(1, embedding(1.0), 0.1).ready
    after_gap = scorer.update(1, embedding(1.0), 2.0)
    assert not after_gap.ready and after_gap.frames_seen == 3
    scorer.forget(1)
    scorer.forget(99)  # unknown ids are ignored
    assert scorer.track_ids == []
    assert scorer.update(1, embedding(1.0), 2.1).frames_seen == 1


def test_bad_inputs_are_refused() -> None:
    scorer = SequenceScorer(MeanFirstFeature(), ScorerConfig(window_size=3, min_samples=2))
    with pytest.raises(ValueError, match="shape \\(4,\\)"):
        scorer.update(1, np.zeros(512, np.float32), 0.0)
    scorer.update(1, embedding(0.0), 1.0)
    with pytest.raises(ValueError, match="must not go backwards"):
        scorer.update(1, embedding(0.0), 0.5)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("window_size", 0, "window_size"),
        ("sample_rate_hz", 0.0, "sample_rate_hz"),
        ("min_samples", 40, "min_samples"),
        ("ema_alpha", 0.0, "ema_alpha"),
        ("max_gap_s", 0.01, "max_gap_s"),
    ],
)
def test_config_validation_names_the_field(field: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ScorerConfig(**{field: value})  # type: ignore[arg-type]
