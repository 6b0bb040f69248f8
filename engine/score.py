"""Scores: the sequence scorer's output for one track."""

from __future__ import annotations

from dataclasses import dataclass


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
    """

    track_id: int
    p_fake: float
    frames_seen: int
    timestamp_s: float
    ready: bool
    p_fake_raw: float
