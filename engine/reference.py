"""Enrolment: compare every face with the person who should be on the call.

A user who knows who should be on screen (the colleague on a video call, the presenter of a
stream) enrols that person from one or more photos (``deepwatch run --reference PHOTO``). Each
sampled crop's inner face (eyes, nose, mouth) and outer face (head, hair, ears, jaw line,
context) are then compared with the reference's, as ``engine.evidence`` embeds them:

- a live face swap that impersonates the enrolled person puts *their* face on *someone else's*
  head: the inner face matches, the outer does not (``face_only``);
- a swap onto the enrolled person's own video puts someone else's face on their head
  (``head_only``);
- the real person matches in both (``match``); anybody else in neither (``other``).

Similarities are averaged over the scorer's window (the last W samples of the track). A part
matches when its window similarity reaches that part's threshold, read off *genuine* comparisons
only (the same real person in the reference and on screen: ``calibrate_reference``) at a stated
false-alarm rate, as ``engine.calibration`` does for p_fake. The verdict uses the 1 % thresholds
of both parts, so a genuine window fails at most one of them at about 1 % each (2 % together).

Calling contract: ``ReferenceScorer`` wraps a ``SequenceScorer`` whose head reads inner/outer
evidence (1024-d features, ``engine.evidence.EvidenceEncoder``) and is called exactly like it,
from one thread; its scores carry ``Score.reference``.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.calibration import FALSE_ALARM_RATES, threshold_at_false_alarm_rate
from engine.evidence import EMBEDDING_DIM
from engine.score import ReferenceMatch, Score

if TYPE_CHECKING:
    from engine.scorer import SequenceScorer

# The rate whose thresholds decide the reference verdict (per part, per window).
VERDICT_RATE = 0.01


class ReferenceError(ValueError):
    """A reference cannot be made or used (no face in a photo, a model without inner/outer
    evidence, thresholds missing); the message says what was expected."""


def _unit(vector: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    if not norm > 0.0 or not math.isfinite(norm):
        raise ReferenceError("reference embeddings must be finite and non-zero")
    return (vector / norm).astype(np.float32)


@dataclass(frozen=True, eq=False)
class Reference:
    """The enrolled person: unit inner-face and outer-face embeddings (512 float32 each).

    Attributes:
        name: how the person is shown (e.g. the photo's file name); safe to log.
        inner: the mean of the photos' inner-face embeddings, re-normalised.
        outer: the same for the outer face.
        photos: how many photos were enrolled.
    """

    name: str
    inner: np.ndarray
    outer: np.ndarray
    photos: int

    @classmethod
    def from_features(cls, name: str, features: np.ndarray) -> Reference:
        """From N x 1024 evidence features (inner, then outer; ``EvidenceEncoder.encode``)."""
        features = np.asarray(features, np.float32)
        if features.ndim != 2 or features.shape[1] != 2 * EMBEDDING_DIM or len(features) == 0:
            raise ReferenceError(
                f"reference features must be N x {2 * EMBEDDING_DIM} inner/outer evidence with N >= 1, "
                f"got {features.shape}"
            )
        inner = _unit(np.mean([_unit(row) for row in features[:, :EMBEDDING_DIM]], axis=0))
        outer = _unit(np.mean([_unit(row) for row in features[:, EMBEDDING_DIM:]], axis=0))
        return cls(name=name, inner=inner, outer=outer, photos=len(features))

    def similarities(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Cosine similarity of each row's inner and outer part to the reference's (N each)."""
        features = np.asarray(features, np.float32)
        if features.ndim != 2 or features.shape[1] != 2 * EMBEDDING_DIM:
            raise ValueError(f"features must be N x {2 * EMBEDDING_DIM}, got {features.shape}")
        inner = features[:, :EMBEDDING_DIM] / np.linalg.norm(
            features[:, :EMBEDDING_DIM], axis=1, keepdims=True
        )
        outer = features[:, EMBEDDING_DIM:] / np.linalg.norm(
            features[:, EMBEDDING_DIM:], axis=1, keepdims=True
        )
        return inner @ self.inner, outer @ self.outer


def _rates(table: dict[float, float], name: str) -> dict[float, float]:
    if set(table) != set(FALSE_ALARM_RATES):
        raise ValueError(f"reference {name} thresholds must be for {FALSE_ALARM_RATES}, got {sorted(table)}")
    if not all(-1.0 <= value <= 1.0 for value in table.values()):
        raise ValueError(f"reference {name} thresholds must be cosine similarities in [-1, 1], got {table}")
    return table


@dataclass(frozen=True)
class ReferenceThresholds:
    """Per-part lower bounds on the window similarity of a genuine face to its reference.

    Attributes:
        inner, outer: false-alarm rate -> threshold: at most that fraction of genuine windows has
            a similarity strictly below it.
        genuine_windows: how many genuine windows they come from.
        protocol: which data and pairing, in words (the README repeats it).
        encoder_precision: the encoder precision the similarities were measured with.
        measured: figures measured with these thresholds (per check: genuine and impostor rates).
    """

    inner: dict[float, float]
    outer: dict[float, float]
    genuine_windows: int
    protocol: str
    encoder_precision: str = "fp32"
    measured: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _rates(self.inner, "inner")
        _rates(self.outer, "outer")
        if self.encoder_precision not in ("fp32", "int8"):
            raise ValueError(f"encoder_precision must be 'fp32' or 'int8', got {self.encoder_precision!r}")

    def verdict(self, inner_sim: float, outer_sim: float, rate: float = VERDICT_RATE) -> str:
        """One of ``REFERENCE_VERDICTS`` (never ``unsure``) for one window's similarities."""
        if math.isnan(inner_sim) or math.isnan(outer_sim):
            return "unsure"
        face = inner_sim >= self.inner[rate]
        head = outer_sim >= self.outer[rate]
        if face and head:
            return "match"
        if face:
            return "face_only"
        return "head_only" if head else "other"

    def to_dict(self) -> dict[str, Any]:
        return {
            "inner": {str(rate): value for rate, value in self.inner.items()},
            "outer": {str(rate): value for rate, value in self.outer.items()},
            "genuine_windows": self.genuine_windows,
            "protocol": self.protocol,
            "encoder_precision": self.encoder_precision,
            "measured": self.measured,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ReferenceThresholds:
        return cls(
            inner={float(rate): float(value) for rate, value in raw["inner"].items()},
            outer={float(rate): float(value) for rate, value in raw["outer"].items()},
            genuine_windows=int(raw["genuine_windows"]),
            protocol=str(raw["protocol"]),
            encoder_precision=str(raw.get("encoder_precision", "fp32")),
            measured=dict(raw.get("measured", {})),
        )


def calibrate_reference(
    inner_sims: Sequence[float] | np.ndarray,
    outer_sims: Sequence[float] | np.ndarray,
    protocol: str,
    encoder_precision: str = "fp32",
) -> ReferenceThresholds:
    """Thresholds from genuine windows' similarities (one inner and one outer value each).

    The lower-tail twin of ``engine.calibration.threshold_at_false_alarm_rate``: with k =
    floor(rate * n), at most k genuine similarities lie strictly below the threshold.
    """
    inner = np.asarray(inner_sims, np.float64).ravel()
    outer = np.asarray(outer_sims, np.float64).ravel()
    if len(inner) != len(outer):
        raise ValueError(f"one inner and one outer similarity per window, got {len(inner)} and {len(outer)}")
    return ReferenceThresholds(
        inner={rate: -threshold_at_false_alarm_rate(-inner, rate) for rate in FALSE_ALARM_RATES},
        outer={rate: -threshold_at_false_alarm_rate(-outer, rate) for rate in FALSE_ALARM_RATES},
        genuine_windows=len(inner),
        protocol=protocol,
        encoder_precision=encoder_precision,
    )


@dataclass
class _Similarities:
    inner: deque[float]
    outer: deque[float]
    generation: int
    last_timestamp_s: float = -math.inf


class ReferenceScorer:
    """A ``SequenceScorer`` whose scores also say how each track compares with the reference.

    Every embedding the scorer accepts is also compared with the reference; the similarities of
    the track's last ``window_size`` samples are averaged (a gap longer than the scorer's
    ``max_gap_s`` starts afresh, as the scorer's window does), and the verdict is given once
    ``min_samples`` are in (``unsure`` before). With no reference enrolled the scores pass through
    unchanged (``Score.reference`` None).

    ``set_reference`` may be called from another thread (a page enrolling someone while the
    scoring thread runs): the reference and its generation are swapped as one tuple, each
    ``update_many`` reads it once, and a track's similarities from an earlier generation are
    dropped, so a window never mixes two people's references.
    """

    def __init__(
        self, scorer: SequenceScorer, thresholds: ReferenceThresholds, reference: Reference | None = None
    ) -> None:
        self.scorer = scorer
        self.thresholds = thresholds
        self.config = scorer.config
        self.sample_rate_hz = scorer.sample_rate_hz
        self._current: tuple[int, Reference | None] = (0, reference)
        # next() on a count is one step under the GIL: two enrolments at once still get two generations.
        self._generations = itertools.count(1)
        self._tracks: dict[int, _Similarities] = {}

    @property
    def reference(self) -> Reference | None:
        return self._current[1]

    def set_reference(self, reference: Reference | None) -> None:
        """Enrol another person (None: nobody); windows start afresh with the next sample."""
        self._current = (next(self._generations), reference)

    @property
    def track_ids(self) -> list[int]:
        return self.scorer.track_ids

    def wants_sample(self, track_id: int, timestamp_s: float) -> bool:
        return self.scorer.wants_sample(track_id, timestamp_s)

    def update(self, track_id: int, embedding: np.ndarray, timestamp_s: float) -> Score:
        return self.update_many([(track_id, embedding, timestamp_s)])[0]

    def update_many(self, items: Sequence[tuple[int, np.ndarray, float]]) -> list[Score]:
        scores = self.scorer.update_many(items)  # validates shapes, order and uniqueness first
        generation, reference = self._current
        if not items or reference is None:
            return scores
        inner, outer = reference.similarities(np.stack([item[1] for item in items]))
        return [
            replace(score, reference=self._append(track_id, generation, float(i), float(o), timestamp_s))
            for (track_id, _, timestamp_s), score, i, o in zip(items, scores, inner, outer, strict=True)
        ]

    def forget(self, track_id: int) -> None:
        self.scorer.forget(track_id)
        self._tracks.pop(track_id, None)

    def reset(self) -> None:
        self.scorer.reset()
        self._tracks.clear()

    def _append(
        self, track_id: int, generation: int, inner_sim: float, outer_sim: float, timestamp_s: float
    ) -> ReferenceMatch:
        config = self.config
        entry = self._tracks.get(track_id)
        if entry is None or entry.generation != generation:
            entry = _Similarities(
                deque(maxlen=config.window_size), deque(maxlen=config.window_size), generation
            )
            self._tracks[track_id] = entry
        if timestamp_s - entry.last_timestamp_s > config.max_gap_s:
            entry.inner.clear()
            entry.outer.clear()
        entry.inner.append(inner_sim)
        entry.outer.append(outer_sim)
        entry.last_timestamp_s = timestamp_s
        mean_inner = float(np.mean(entry.inner))
        mean_outer = float(np.mean(entry.outer))
        samples = len(entry.inner)
        ready = samples >= config.min_samples
        verdict = self.thresholds.verdict(mean_inner, mean_outer) if ready else "unsure"
        return ReferenceMatch(mean_inner, mean_outer, verdict, samples)
