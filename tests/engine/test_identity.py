"""The converted casia-webface weights are right: crops of the same person are closer than crops of
different people, on real talking-head clips (each clip one person; the manifest's group names it)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import rankdata

from tests.engine.conftest import FIGURES
from tests.engine.face_crops import FaceCrop

MIN_ROC_AUC = 0.98


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Probability that a random positive scores above a random negative (Mann-Whitney U)."""
    ranks = rankdata(scores)
    n_positive = int(positive.sum())
    n_negative = len(scores) - n_positive
    return float((ranks[positive].sum() - n_positive * (n_positive + 1) / 2) / (n_positive * n_negative))


def test_roc_auc_helper_on_literal_values() -> None:
    assert roc_auc(np.array([0.9, 0.8, 0.1, 0.2]), np.array([True, True, False, False])) == 1.0
    assert roc_auc(np.array([0.1, 0.2, 0.9, 0.8]), np.array([True, True, False, False])) == 0.0
    assert roc_auc(np.array([0.5, 0.5]), np.array([True, False])) == 0.5


@pytest.mark.slow
def test_same_person_pairs_separate_from_different_person_pairs(
    talking_head_crops: list[FaceCrop], talking_head_embeddings: np.ndarray
) -> None:
    people = np.array([c.person for c in talking_head_crops])
    clips = np.array([c.clip for c in talking_head_crops])
    similarity = talking_head_embeddings @ talking_head_embeddings.T
    upper = np.triu_indices(len(people), k=1)
    same_person = (people[:, None] == people[None, :])[upper]
    scores = similarity[upper]
    auc = roc_auc(scores, same_person)
    # The two clips of one person (different recordings) count as same-person pairs too.
    cross_clip_same = ((people[:, None] == people[None, :]) & (clips[:, None] != clips[None, :]))[upper]
    FIGURES["same- vs different-person ROC AUC (casia-webface, talking-head clips)"] = (
        f"{auc:.4f} over {int(same_person.sum())} same / {int((~same_person).sum())} different pairs, "
        f"{len(set(people))} people, {len(people)} crops; mean cosine same {scores[same_person].mean():.3f}, "
        f"different {scores[~same_person].mean():.3f}"
    )
    print(FIGURES)
    assert len(set(people)) >= 20
    assert cross_clip_same.any()
    assert auc >= MIN_ROC_AUC
