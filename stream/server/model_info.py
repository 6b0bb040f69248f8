"""What the page tells its user about the model: the verdict rule and how far scores can be trusted.

A green REAL from a model that does no better than chance misleads; the page shows the figure the
checkpoint was validated with next to every verdict, read from the checkpoint's ``metrics``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Below this held-out ROC AUC a score is little better than a coin toss: say so plainly.
UNRELIABLE_BELOW_AUC = 0.8
# Below this a score is a hint; at or above it, still say what it was measured on.
INDICATIVE_BELOW_AUC = 0.95
NO_FIGURE_NOTE = "no validated figure in this checkpoint: nothing says how far its scores can be trusted"


@dataclass(frozen=True)
class ModelInfo:
    """The verdict rule in use and the model's validated figure, as ``GET /api/model`` sends them.

    The verdict rule is ``stream.verdict.VerdictRule``'s, in one of its two forms:

    - uncalibrated (``real_at_most`` None): FAKE at or above ``threshold + uncertain_margin``,
      REAL below ``threshold - uncertain_margin``, UNSURE between;
    - calibrated on real faces: FAKE above ``threshold``, REAL at or below ``real_at_most``,
      UNSURE between (``uncertain_margin`` unused).

    Attributes:
        threshold: the FAKE threshold on p_fake.
        uncertain_margin: half-width of the uncalibrated UNSURE band, in p_fake.
        real_at_most: the calibrated REAL bound, or None for the uncalibrated rule.
        validated_auc: the checkpoint's held-out video ROC AUC, or None when it records none.
        validated_videos: how many videos that figure was measured on (0 when unknown).
        trust_note: one sentence for the page, e.g. "cross-validated video AUC 0.55 on 69 videos:
            treat scores as unreliable".
    """

    threshold: float = 0.5
    uncertain_margin: float = 0.0
    real_at_most: float | None = None
    validated_auc: float | None = None
    validated_videos: int = 0
    trust_note: str = NO_FIGURE_NOTE

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {self.threshold!r}")
        if not 0.0 <= self.uncertain_margin < 0.5:
            raise ValueError(f"uncertain_margin must be in [0, 0.5), got {self.uncertain_margin!r}")
        if self.real_at_most is not None and not 0.0 <= self.real_at_most <= self.threshold:
            raise ValueError(f"real_at_most must be in [0, threshold], got {self.real_at_most!r}")

    @property
    def unsure_band(self) -> tuple[float, float]:
        """(low, high): REAL below (calibrated: at or below) low, FAKE from (calibrated: above)
        high, UNSURE between; may reach beyond [0, 1], where a verdict never happens."""
        if self.real_at_most is not None:
            return self.real_at_most, self.threshold
        return self.threshold - self.uncertain_margin, self.threshold + self.uncertain_margin

    @property
    def verdict_rule(self) -> str:
        """The rule in one sentence for the page, saying so when a verdict can never happen."""
        low, high = self.unsure_band
        if self.real_at_most is not None:
            real = f"REAL at or below {low:.3f}"
            fake = "FAKE never (threshold 1)" if high >= 1.0 else f"FAKE above {high:.3f}"
            source = f"thresholds calibrated on real faces (FAKE threshold {self.threshold:.3f})"
        else:
            real = "REAL never" if low <= 0.0 else f"REAL below {low:.3f}"
            fake = "FAKE never (threshold + margin is above 1)" if high > 1.0 else f"FAKE from {high:.3f}"
            source = f"this model's threshold {self.threshold:.3f}, margin {self.uncertain_margin:.3f}"
        return (
            f"Verdicts follow {source}: {real}, {fake}, UNSURE between "
            "(and until a face has a full window of samples)."
        )

    @classmethod
    def from_checkpoint(
        cls,
        metrics: Mapping[str, Any],
        *,
        threshold: float,
        uncertain_margin: float,
        real_at_most: float | None = None,
    ) -> ModelInfo:
        """From a checkpoint's ``metrics`` (``video_auc``, ``videos``, as ``deepwatch train``
        records them, and ``figure``, what kind of AUC it is); a checkpoint without them gets
        ``NO_FIGURE_NOTE``."""
        auc = metrics.get("video_auc")
        if isinstance(auc, bool) or not isinstance(auc, (int, float)) or not math.isfinite(auc):
            return cls(threshold=threshold, uncertain_margin=uncertain_margin, real_at_most=real_at_most)
        videos = metrics.get("videos")
        videos = videos if isinstance(videos, int) and not isinstance(videos, bool) and videos > 0 else 0
        label = metrics.get("figure", "cross-validated video AUC")
        figure = f"{label} {auc:.2f}" + (f" on {videos} videos" if videos else "")
        if auc < UNRELIABLE_BELOW_AUC:
            advice = "treat scores as unreliable"
        elif auc < INDICATIVE_BELOW_AUC:
            advice = "a score is a hint, not proof"
        else:
            advice = "measured on its training data's kind of video; other video may score worse"
        return cls(
            threshold=threshold,
            uncertain_margin=uncertain_margin,
            real_at_most=real_at_most,
            validated_auc=float(auc),
            validated_videos=videos,
            trust_note=f"{figure}: {advice}",
        )

    @property
    def trust_level(self) -> str:
        """ "unknown" (no figure), "unreliable", "hint" or "validated", by the AUC bands above."""
        if self.validated_auc is None:
            return "unknown"
        if self.validated_auc < UNRELIABLE_BELOW_AUC:
            return "unreliable"
        return "hint" if self.validated_auc < INDICATIVE_BELOW_AUC else "validated"

    def to_json(self) -> dict[str, Any]:
        return {
            "trust_level": self.trust_level,
            "threshold": self.threshold,
            "uncertain_margin": self.uncertain_margin,
            "real_at_most": self.real_at_most,
            "unsure_low": self.unsure_band[0],
            "unsure_high": self.unsure_band[1],
            "verdict_rule": self.verdict_rule,
            "validated_auc": self.validated_auc,
            "validated_videos": self.validated_videos,
            "trust_note": self.trust_note,
        }
