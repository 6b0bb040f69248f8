"""Head training and group splits on tiny synthetic embedding sequences."""

from __future__ import annotations

import numpy as np
import pytest

from engine.training import (
    HeadTrainingConfig,
    VideoSequence,
    group_folds,
    make_windows,
    method_aucs,
    split_by_group,
    train_head,
)


def synthetic_videos(n_groups: int = 12, seed: int = 0, shift: float = 2.5) -> list[VideoSequence]:
    """Each group holds one real and one fake video; fakes drift along dimension 0."""
    rng = np.random.default_rng(seed)
    videos = []
    for group in range(n_groups):
        identity = rng.normal(size=16)
        for label in (0, 1):
            frames = identity + 0.5 * rng.normal(size=(int(rng.integers(6, 14)), 16))
            frames[:, 0] += shift * label
            videos.append(
                VideoSequence(
                    name=f"g{group}_{label}",
                    label=label,
                    group=f"g{group}",
                    embeddings=frames.astype(np.float32),
                    method="none" if label == 0 else ("A" if group % 2 else "B"),
                )
            )
    return videos


FAST = HeadTrainingConfig(
    head_type="lstm",
    head_params={"hidden_size": 16, "fc_size": 8, "dropout": 0.1},
    window_size=4,
    stride=2,
    max_epochs=12,
    windows_per_epoch=256,
    learning_rate=3e-3,
    patience=4,
)


def test_make_windows_covers_the_sequence_and_pads_short_ones() -> None:
    sequence = np.arange(10, dtype=np.float32)[:, None]
    windows = make_windows(sequence, 4, 3)
    assert windows.shape == (3, 4, 1)
    assert windows[-1, -1, 0] == 9  # the tail is always covered
    short = make_windows(sequence[:2], 4, 1)
    np.testing.assert_array_equal(short[0, :, 0], [0, 0, 0, 1])


def test_group_folds_never_split_a_group_and_every_fold_has_both_classes() -> None:
    videos = synthetic_videos()
    groups = [video.group for video in videos]
    labels = [video.label for video in videos]
    folds = group_folds(groups, labels, 4, seed=3)
    assert sorted(np.concatenate(folds).tolist()) == list(range(len(videos)))
    for fold in folds:
        inside = {groups[i] for i in fold}
        outside = {groups[i] for i in set(range(len(videos))) - set(fold.tolist())}
        assert not inside & outside
        assert {labels[i] for i in fold} == {0, 1}
    train, val = split_by_group(videos, 0.25)
    assert not {video.group for video in train} & {video.group for video in val}
    with pytest.raises(ValueError, match="n_folds"):
        group_folds(groups, labels, 1)


def test_train_head_learns_and_is_deterministic() -> None:
    videos = synthetic_videos()
    train, val = split_by_group(videos, 0.25)
    first = train_head(train, val, FAST, progress=False)
    second = train_head(train, val, FAST, progress=False)
    assert first.val_auc >= 0.9
    assert first.best_epoch == second.best_epoch
    assert [h["loss"] for h in first.history] == [h["loss"] for h in second.history]


def test_method_aucs_compare_each_method_with_all_reals() -> None:
    videos = synthetic_videos(n_groups=2)
    scores = np.array([0.1, 0.9, 0.2, 0.15])  # g0 real, g0 fake B, g1 real, g1 fake A
    assert method_aucs(videos, scores) == {"A": 0.5, "B": 1.0}


def test_training_needs_both_classes() -> None:
    reals = [video for video in synthetic_videos() if video.label == 0]
    with pytest.raises(ValueError, match="real and fake"):
        train_head(reals, [], FAST, progress=False)
