"""Calibration maths on literal numbers, and calibrated checkpoints."""

from __future__ import annotations

import numpy as np
import pytest

from engine.calibration import (
    Calibration,
    calibrate,
    group_counts_at,
    reliability_curve,
    threshold_at_false_alarm_rate,
)
from engine.checkpoint import load_checkpoint
from tests.engine.test_checkpoint import make_checkpoint


def test_100_real_scores_give_the_95th_and_99th_order_statistics() -> None:
    # Scores 0.00, 0.01, ..., 0.99 in shuffled order: s(i) = (i - 1) / 100.
    scores = np.random.default_rng(0).permutation(np.arange(100) / 100)
    five = threshold_at_false_alarm_rate(scores, 0.05)
    one = threshold_at_false_alarm_rate(scores, 0.01)
    assert five == pytest.approx(0.94)  # s(95): s(96)..s(100) = 0.95..0.99 are the 5 false alarms
    assert one == pytest.approx(0.98)  # s(99): only s(100) = 0.99 is above it
    assert int((scores > five).sum()) == 5 and int((scores > one).sum()) == 1


def test_small_and_tied_samples() -> None:
    # Fewer than 1 / rate scores: k = 0, the threshold is the highest real score (no false alarm).
    assert threshold_at_false_alarm_rate([0.2, 0.7, 0.4], 0.05) == 0.7
    # 40 scores at 5 %: k = floor(2.0) = 2, threshold s(38).
    scores = np.arange(1, 41) / 100  # 0.01 .. 0.40
    assert threshold_at_false_alarm_rate(scores, 0.05) == pytest.approx(0.38)
    # Ties can only lower the false alarms: at most k scores are strictly above.
    tied = np.array([0.1] * 10 + [0.9] * 10)
    threshold = threshold_at_false_alarm_rate(tied, 0.05)
    assert threshold == 0.9 and (tied > threshold).sum() == 0
    with pytest.raises(ValueError, match="at least one real score"):
        threshold_at_false_alarm_rate([], 0.05)
    with pytest.raises(ValueError, match=r"rate must be in \(0, 1\)"):
        threshold_at_false_alarm_rate([0.5], 0.0)
    with pytest.raises(ValueError, match="must be finite"):
        threshold_at_false_alarm_rate([0.5, float("nan")], 0.05)


def test_calibrate_per_window_and_per_track() -> None:
    # 20 real tracks of 5 windows; track t's windows are t/100 + (0, .001, .002, .003, .004).
    tracks = [t / 100 + np.arange(5) / 1000 for t in range(20)]
    calibration = calibrate(tracks, auc=0.91, auc_protocol="literal test")
    # 100 windows: k = 5 at 5 % -> s(95) = the 95th window = track 18's 5th = 0.184; k = 1 -> s(99) = 0.193.
    assert calibration.window[0.05] == pytest.approx(0.184)
    assert calibration.window[0.01] == pytest.approx(0.193)
    # 20 track maxima 0.004 .. 0.194: k = 1 at 5 % -> s(19) = 0.184; k = 0 at 1 % -> the top, 0.194.
    assert calibration.track[0.05] == pytest.approx(0.184)
    assert calibration.track[0.01] == pytest.approx(0.194)
    assert (calibration.real_windows, calibration.real_tracks) == (100, 20)
    assert calibration.verdict_thresholds() == pytest.approx((0.184, 0.184))
    assert calibration.alert_threshold == pytest.approx(0.194)
    with pytest.raises(ValueError, match="at least one window each"):
        calibrate([np.zeros(3), np.zeros(0)], 0.5, "x")


def test_reliability_curve_bins() -> None:
    labels = np.array([0, 0, 1, 0, 1, 1, 1])
    scores = np.array([0.05, 0.15, 0.12, 0.55, 0.58, 0.95, 1.0])
    mean_score, fraction_fake, counts = reliability_curve(labels, scores, bins=10)
    np.testing.assert_allclose(mean_score, [0.05, 0.135, 0.565, 0.975])
    np.testing.assert_allclose(fraction_fake, [0.0, 0.5, 0.5, 1.0])
    np.testing.assert_array_equal(counts, [1, 2, 2, 2])


def test_calibrated_checkpoint_round_trip(tmp_path) -> None:
    calibration = Calibration(
        window={0.01: 0.8, 0.05: 0.6},
        track={0.01: 0.9, 0.05: 0.7},
        real_windows=400,
        real_tracks=40,
        auc=0.87,
        auc_protocol="group 5-fold cross-validation of the training set",
    )
    checkpoint = make_checkpoint().with_calibration(calibration)
    assert checkpoint.threshold == 0.7 and checkpoint.threshold_fpr == 0.05
    loaded = load_checkpoint(checkpoint.save(tmp_path / "calibrated.pt"))
    assert loaded.calibration == calibration
    assert loaded.threshold == 0.7
    assert loaded.calibration is not None and loaded.calibration.verdict_thresholds() == (0.6, 0.7)
    assert load_checkpoint(make_checkpoint().save(tmp_path / "plain.pt")).calibration is None
    with pytest.raises(ValueError, match=r"thresholds must be for \(0.01, 0.05\)"):
        Calibration({0.05: 0.5}, {0.01: 0.9, 0.05: 0.7}, 1, 1, 0.5, "x")


def test_groups_raise_each_threshold_to_the_worst_counted_group() -> None:
    # 100 tracks of "calm" faces (scores 0.00..0.099) and 40 of "busy" ones (0.50..0.539), one
    # window each; a 3-track "tiny" group with very high scores is too small to count.
    calm = [np.array([i / 1000]) for i in range(100)]
    busy = [np.array([0.5 + i / 1000]) for i in range(40)]
    tiny = [np.array([0.9]), np.array([0.95]), np.array([0.99])]
    groups = ["calm"] * 100 + ["busy"] * 40 + ["tiny"] * 3
    pooled = calibrate(calm + busy + tiny, 0.7, "pooled")
    fair = calibrate(calm + busy + tiny, 0.7, "groups", groups=groups)
    # Pooled: 143 windows, k = 7 at 5 %: s(136) = busy's 36th = 0.535. Busy alone: 40 windows,
    # k = 2: s(38) = 0.537, which is higher, so it wins; tiny (3 tracks) does not count.
    assert pooled.window[0.05] == pytest.approx(0.535)
    assert fair.window[0.05] == pytest.approx(0.537)
    # At 1 % a group needs 200 tracks to count, so busy's own top (0.539) does not; pooled at 1 %:
    # k = 1 -> s(142) = 0.95.
    assert fair.window[0.01] == pytest.approx(0.95)
    assert not group_counts_at(40, 0.01) and group_counts_at(40, 0.05) and not group_counts_at(39, 0.05)
    assert group_counts_at(200, 0.01)
    assert fair.groups["busy"]["tracks"] == 40
    assert fair.groups["busy"]["window_fa"][0.05] == pytest.approx(2 / 40)
    assert fair.groups["calm"]["window_fa"][0.05] == 0.0
    assert fair.groups["tiny"]["window_fa"][0.05] == 1.0
    assert pooled.groups == {}
    assert Calibration.from_dict(fair.to_dict()) == fair
    with pytest.raises(ValueError, match="must name each of the 143 tracks"):
        calibrate(calm + busy + tiny, 0.7, "x", groups=["calm"])
