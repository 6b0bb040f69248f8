"""Thresholds a user can trust: set on real faces only, at a stated false-alarm rate.

A detector's p_fake is not a probability anyone has checked, so its decision thresholds are read
off the scores of held-out *real* faces (no fake is needed, and none can bias them):

- per window: the fraction of real windows whose p_fake is past the threshold is at most the
  rate (1 % or 5 %);
- per track: a track's score is the *highest* p_fake of its windows, so at most the rate of
  real tracks (a face on screen from start to end) is ever past the threshold. The live score is
  a moving average of window scores, never above their maximum, so live tracks raise fewer false
  alarms than this.

Order-statistic convention (``threshold_at_false_alarm_rate``): with real scores sorted
s(1) <= ... <= s(n) and k = floor(rate * n), the threshold is s(n - k) and a score counts as past
it when it is strictly greater. At most k real scores exceed it (exactly k without ties). For 100
real scores and 5 % this is s(95), the 95th order statistic: s(96)..s(100) are the 5 false
alarms. With fewer than 1 / rate scores, k = 0 and the threshold is the highest real score.

How the live app uses the thresholds (``Calibration.verdict_thresholds``; documented in
``configs/default.yaml``):

- FAKE when p_fake is above the 5 % per-track threshold: fewer than 5 % of real tracks ever get
  there;
- REAL when p_fake is at most the 5 % per-window threshold: 95 % of real windows stay there;
- UNSURE in between (a real face's window gets there now and then, a whole real track rarely),
  and while a track has too few samples;
- alerts default to the 1 % per-track threshold: at most 1 % of real tracks ever alert.

Groups (``calibrate(..., groups=...)``): a threshold read off a pooled sample holds for the pool's
mix of people, not for each kind of face in it. Measured on the previous default model: at its
pooled 5 % window threshold, UTKFace photos it never saw raised 19 % false alarms for white people
and 4 % for Asian people, because its pool was mostly East Asian All-Age-Faces. Given a group per real track,
each threshold is the highest of the pooled one and every group's own, where a group counts at a
rate once it has enough tracks that at least ``GROUP_MIN_FALSE_ALARMS`` of them may be past its
threshold (40 tracks at 5 %, 200 at 1 %: with fewer, one odd face would set the threshold), so the
stated rate holds for each measured group, and ``Calibration.groups`` records how many tracks each
group had and its false-alarm rates at the final thresholds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

FALSE_ALARM_RATES = (0.01, 0.05)
# A group's own threshold at a rate counts once this many of its real tracks may be past it.
GROUP_MIN_FALSE_ALARMS = 2
# Fewest real tracks a group needs for its own 5 % thresholds (what a held-out split should keep).
MIN_GROUP_TRACKS = 40


def group_counts_at(tracks: int, rate: float) -> bool:
    """Whether a group of ``tracks`` real tracks is big enough for its own threshold at ``rate``."""
    return math.floor(rate * tracks + 1e-9) >= GROUP_MIN_FALSE_ALARMS


def threshold_at_false_alarm_rate(real_scores: np.ndarray | Sequence[float], rate: float) -> float:
    """The order statistic s(n - k), k = floor(rate * n): at most k real scores are above it.

    See the module docstring for the convention ("past the threshold" is strictly greater).
    """
    if not 0.0 < rate < 1.0:
        raise ValueError(f"rate must be in (0, 1), got {rate!r}")
    scores = np.sort(np.asarray(real_scores, dtype=np.float64).ravel())
    if len(scores) == 0:
        raise ValueError("calibration needs at least one real score, got none")
    if not np.isfinite(scores).all():
        raise ValueError(
            f"real scores must be finite, got {int((~np.isfinite(scores)).sum())} NaN or infinite"
        )
    allowed = math.floor(rate * len(scores) + 1e-9)
    return float(scores[len(scores) - allowed - 1])


@dataclass(frozen=True)
class Calibration:
    """Thresholds on p_fake from held-out real faces, and the validated AUC that goes with them.

    Attributes:
        window: false-alarm rate -> threshold, per window.
        track: false-alarm rate -> threshold, per track (its highest window score).
        real_windows, real_tracks: how many real windows and tracks the thresholds come from.
        auc: the validated video-level ROC AUC of the model (NaN when not measured).
        auc_protocol: where ``auc`` and the real scores come from (data and split), in words.
        groups: group -> {"tracks": n, "window_fa": {rate: fraction}, "track_fa": {rate: fraction}}
            measured at these thresholds (empty when calibrated without groups).
        encoder_precision: the encoder precision the real scores were measured with (``fp32``
            or ``int8``): int8 embeddings move the scores a little, so thresholds hold their
            rates for the precision they were set on (the live app warns on a mismatch).
    """

    window: dict[float, float]
    track: dict[float, float]
    real_windows: int
    real_tracks: int
    auc: float
    auc_protocol: str
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    encoder_precision: str = "fp32"

    def __post_init__(self) -> None:
        if self.encoder_precision not in ("fp32", "int8"):
            raise ValueError(
                f"calibration encoder_precision must be 'fp32' or 'int8', got {self.encoder_precision!r}"
            )
        for name in ("window", "track"):
            table = getattr(self, name)
            if set(table) != set(FALSE_ALARM_RATES):
                raise ValueError(
                    f"calibration {name} thresholds must be for {FALSE_ALARM_RATES}, got {sorted(table)}"
                )
            if not all(0.0 <= value <= 1.0 for value in table.values()):
                raise ValueError(f"calibration {name} thresholds must be probabilities, got {table}")

    def verdict_thresholds(self) -> tuple[float, float]:
        """``(real_at_most, fake_above)`` for the live verdict (see the module docstring)."""
        fake_above = self.track[0.05]
        return min(self.window[0.05], fake_above), fake_above

    @property
    def alert_threshold(self) -> float:
        """The 1 % per-track threshold: at most 1 % of real tracks ever pass it."""
        return self.track[0.01]

    def to_dict(self) -> dict[str, Any]:
        """Plain types for a checkpoint (rates as strings, e.g. "0.05")."""
        return {
            "window": {str(rate): value for rate, value in self.window.items()},
            "track": {str(rate): value for rate, value in self.track.items()},
            "real_windows": self.real_windows,
            "real_tracks": self.real_tracks,
            "auc": self.auc,
            "auc_protocol": self.auc_protocol,
            "groups": {
                name: {
                    "tracks": entry["tracks"],
                    "window_fa": {str(rate): value for rate, value in entry["window_fa"].items()},
                    "track_fa": {str(rate): value for rate, value in entry["track_fa"].items()},
                }
                for name, entry in self.groups.items()
            },
            "encoder_precision": self.encoder_precision,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Calibration:
        return cls(
            window={float(rate): float(value) for rate, value in raw["window"].items()},
            track={float(rate): float(value) for rate, value in raw["track"].items()},
            real_windows=int(raw["real_windows"]),
            real_tracks=int(raw["real_tracks"]),
            auc=float(raw["auc"]),
            auc_protocol=str(raw["auc_protocol"]),
            groups={
                str(name): {
                    "tracks": int(entry["tracks"]),
                    "window_fa": {float(rate): float(value) for rate, value in entry["window_fa"].items()},
                    "track_fa": {float(rate): float(value) for rate, value in entry["track_fa"].items()},
                }
                for name, entry in raw.get("groups", {}).items()
            },
            # Checkpoints from before this field were all calibrated with fp32 embeddings.
            encoder_precision=str(raw.get("encoder_precision", "fp32")),
        )


def calibrate(
    real_window_scores: Sequence[np.ndarray],
    auc: float,
    auc_protocol: str,
    groups: Sequence[str] | None = None,
) -> Calibration:
    """Thresholds from the window scores of real tracks (one array per track, none empty).

    With ``groups`` (one name per track), every threshold is the highest of the pooled one and
    each group's own, over groups big enough at that rate (``group_counts_at``, module docstring).
    """
    tracks = [np.asarray(scores, dtype=np.float64).ravel() for scores in real_window_scores]
    if not tracks or any(len(scores) == 0 for scores in tracks):
        raise ValueError(
            f"calibration needs real tracks with at least one window each, got {[len(s) for s in tracks]}"
        )
    if groups is not None and len(groups) != len(tracks):
        raise ValueError(f"groups must name each of the {len(tracks)} tracks, got {len(groups)} names")
    members = _group_members(groups) if groups is not None else {}
    window, track = {}, {}
    for rate in FALSE_ALARM_RATES:
        counted = [rows for rows in members.values() if group_counts_at(len(rows), rate)]
        window[rate] = _worst_threshold(tracks, counted, rate, per_track=False)
        track[rate] = _worst_threshold(tracks, counted, rate, per_track=True)
    return Calibration(
        window=window,
        track=track,
        real_windows=sum(len(scores) for scores in tracks),
        real_tracks=len(tracks),
        auc=float(auc),
        auc_protocol=auc_protocol,
        groups={
            name: _group_false_alarms([tracks[row] for row in rows], window, track)
            for name, rows in sorted(members.items())
        },
    )


def _group_members(groups: Sequence[str]) -> dict[str, list[int]]:
    members: dict[str, list[int]] = {}
    for row, name in enumerate(groups):
        members.setdefault(str(name), []).append(row)
    return members


def _worst_threshold(
    tracks: list[np.ndarray], counted: list[list[int]], rate: float, per_track: bool
) -> float:
    def threshold(chosen: list[np.ndarray]) -> float:
        scores = np.array([s.max() for s in chosen]) if per_track else np.concatenate(chosen)
        return threshold_at_false_alarm_rate(scores, rate)

    return max([threshold(tracks)] + [threshold([tracks[row] for row in rows]) for rows in counted])


def _group_false_alarms(
    tracks: list[np.ndarray], window: dict[float, float], track: dict[float, float]
) -> dict[str, Any]:
    windows = np.concatenate(tracks)
    highest = np.array([scores.max() for scores in tracks])
    return {
        "tracks": len(tracks),
        "window_fa": {rate: float((windows > value).mean()) for rate, value in window.items()},
        "track_fa": {rate: float((highest > value).mean()) for rate, value in track.items()},
    }


def reliability_curve(
    labels: np.ndarray, scores: np.ndarray, bins: int = 10
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Equal-width bins of p_fake over [0, 1]: mean p_fake, fraction fake and count per bin.

    Empty bins are left out. A perfectly calibrated model has fraction fake == mean p_fake; the
    last bin includes p_fake == 1.
    """
    labels = np.asarray(labels, dtype=np.float64).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if labels.shape != scores.shape or len(labels) == 0:
        raise ValueError(
            f"labels and scores must be 1-D of one non-zero length, got {labels.shape} {scores.shape}"
        )
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    index = np.clip((scores * bins).astype(np.int64), 0, bins - 1)
    counts = np.bincount(index, minlength=bins)
    kept = counts > 0
    mean_score = np.bincount(index, weights=scores, minlength=bins)[kept] / counts[kept]
    fraction_fake = np.bincount(index, weights=labels, minlength=bins)[kept] / counts[kept]
    return mean_score, fraction_fake, counts[kept]


def precision_mismatch(
    calibration: Calibration | None, encoder_precision: str, configured_threshold: float | None
) -> str | None:
    """A warning when the calibrated thresholds in use were set on embeddings of another
    precision than the encoder runs (int8 moves the scores a little); None when they match."""
    if calibration is None or configured_threshold is not None:
        return None
    if calibration.encoder_precision == encoder_precision:
        return None
    return (
        f"the encoder runs {encoder_precision} but the model's thresholds were calibrated on "
        f"{calibration.encoder_precision} embeddings: scores move a little (README, int8 encoder), "
        f"so false alarms may exceed the calibrated rates; set encoder.precision: "
        f"{calibration.encoder_precision} for the stated rates"
    )
