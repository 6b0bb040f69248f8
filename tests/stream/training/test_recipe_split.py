"""The recipe's cross-validation never trains on a held-out group, pseudo-fakes included."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from engine.heads import build_head
from engine.training import HeadTrainingConfig, TrainedHead, VideoSequence
from stream.training import recipe
from stream.training.recipe import Clip, FoldModel, TrainingOptions, cross_validate_detector


def clips() -> list[Clip]:
    """12 groups: one real and one fake clip each, and a pseudo-fake of every real clip."""
    rng = np.random.default_rng(0)
    made = []
    for group in range(12):
        for label in (0, 1):
            features = torch.from_numpy(rng.normal(size=(6, 4)).astype(np.float32) + 2.0 * label)
            common = {"group": f"g{group}", "source": "test", "split": ""}
            made.append(
                Clip(
                    name=f"g{group}_{label}",
                    label=label,
                    method="none" if not label else "X",
                    features=features,
                    **common,
                )
            )
            if label == 0:
                made.append(
                    Clip(
                        name=f"g{group}_0#sbi",
                        label=1,
                        method="SBI",
                        features=features + 1.0,
                        pseudo_fake_of=f"g{group}_0",
                        **common,
                    )
                )
    return made


def test_no_group_is_on_both_sides_of_a_fold(monkeypatch: pytest.MonkeyPatch) -> None:
    trained_groups: list[set[str]] = []

    def fake_fit_model(train_clips, base_state, train_from, options, seed, heads, **kwargs):  # type: ignore[no-untyped-def]
        trained_groups.append({clip.group for clip in train_clips})
        torch.manual_seed(seed)
        head = build_head("lstm", input_dim=4, hidden_size=4, fc_size=2).eval()
        trained = {
            name: TrainedHead(head=head, best_epoch=1, val_auc=float("nan"), history=[]) for name in heads
        }
        return FoldModel({}, trained, float("nan")), None

    def fake_sequences(model: Any, test_clips: list[Clip], train_from: str) -> list[VideoSequence]:
        return [
            VideoSequence(c.name, c.label, c.group, c.features.numpy(), c.method, c.source)
            for c in test_clips
        ]

    monkeypatch.setattr(recipe, "fit_model", fake_fit_model)
    monkeypatch.setattr(recipe, "_sequences", fake_sequences)
    all_clips = clips()
    options = TrainingOptions(head=HeadTrainingConfig(window_size=4), cv_folds=3)
    figures = cross_validate_detector(all_clips, {}, "last_linear", options, progress=False)
    assert len(trained_groups) == 3
    groups = {clip.group for clip in all_clips}
    held_out_sets = [groups - trained for trained in trained_groups]
    # Each fold holds out 4 of 12 groups; together the folds hold out every group exactly once.
    assert [len(held_out) for held_out in held_out_sets] == [4, 4, 4]
    assert set().union(*held_out_sets) == groups
    assert sum(len(held_out) for held_out in held_out_sets) == len(groups)
    # Only real (not pseudo-fake) clips are scored, each once, out of fold.
    assert figures["videos"] == 24 and figures["real"] == 12 and figures["fake"] == 12
    assert sorted(figures["scores"]) == sorted(clip.name for clip in all_clips if not clip.pseudo_fake_of)
    assert figures["calibration"]["real_tracks"] == 12
