"""Scores: the sequence scorer's output for one track."""

from __future__ import annotations

from dataclasses import dataclass

# What a track's face says about the enrolled person (``engine.reference``):
# match: face and head both look like them; face_only: the face does, the head and context do not
# (their face on someone else: a face swap impersonating them); head_only: the head does, the face
# does not (someone else's face on their head: a swap); other: neither (another person);
# unsure: too few samples yet.
REFERENCE_VERDICTS = ("match", "face_only", "head_only", "other", "unsure")


@dataclass(frozen=True)
class ReferenceMatch:
    """How one track's recent window compares with the enrolled reference person.

    Attributes:
        inner_sim: mean cosine similarity of the window's inner-face embeddings to the
            reference's inner face, in [-1, 1].
        outer_sim: the same for the outer face (head, hair, ears, jaw line, context).
        verdict: one of ``REFERENCE_VERDICTS``.
        samples: how many samples the window held.
    """

    inner_sim: float
    outer_sim: float
    verdict: str
    samples: int

    def to_dict(self) -> dict[str, object]:
        return {
            "inner_sim": round(self.inner_sim, 4),
            "outer_sim": round(self.outer_sim, 4),
            "verdict": self.verdict,
            "samples": self.samples,
        }


@dataclass(frozen=True)
class Score:
    """Authenticity score of one track at one time.

    Attributes:
        track_id: the track scored.
        p_fake: smoothed probability that the face is manipulated, in [0, 1]; NaN until the
            scorer has seen enough frames to say anything (see ``ready``).
        frames_seen: embeddings accepted into this track's window history so far.
        timestamp_s: stream time of the update that produced this score, seconds.
        ready: True once the window holds enough embeddings for a meaningful score.
        p_fake_raw: the unsmoothed probability of the latest window (NaN when not ready).
        reference: the comparison with the enrolled person; None when nobody is enrolled.
    """

    track_id: int
    p_fake: float
    frames_seen: int
    timestamp_s: float
    ready: bool
    p_fake_raw: float
    reference: ReferenceMatch | None = None
