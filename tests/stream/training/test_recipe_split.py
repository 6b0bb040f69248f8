"""The recipe's cross-validation never trains on a held-out group, pseudo-fakes included."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from engine.finetune import FinetuneConfig, FinetuneResult
from engine.heads import build_head
from engine.training import HeadTrainingConfig, TrainedHead, VideoSequence
from stream.training import recipe
from stream.training.recipe import Clip, FoldModel, TrainingOptions, cross_validate_detector, fit_model


def clips(labels: tuple[int, ...] = (0, 1)) -> list[Clip]:
    """12 groups: a clip of each of ``labels`` each, and a pseudo-fake of every real clip."""
    rng = np.random.default_rng(0)
    made = []
    for group in range(12):
        for label in labels:
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


@pytest.mark.parametrize("labels", [(0,), (0, 1)])
def test_validation_has_fakes_and_never_a_training_clip(
    monkeypatch: pytest.MonkeyPatch, labels: tuple[int, ...]
) -> None:
    """With real videos only (trained on their pseudo-fakes), the held-out groups' pseudo-fakes are
    what early stopping scores against; with real fakes they stay out. Neither ever trains."""
    seen: dict[str, Any] = {}

    def fake_finetune(model, features, labels, video_ids, train_mask, config, **kwargs):  # type: ignore[no-untyped-def]
        seen["finetune"] = (np.asarray(labels), np.asarray(video_ids), np.asarray(train_mask))
        return FinetuneResult(overrides={}, classifier={}, best_epoch=1, val_auc=0.5, history=[])

    def fake_train_head(train_videos, val_videos, config, **kwargs):  # type: ignore[no-untyped-def]
        seen["head"] = (list(train_videos), list(val_videos))
        head = build_head("lstm", input_dim=4, hidden_size=4, fc_size=2).eval()
        return TrainedHead(head=head, best_epoch=1, val_auc=0.5, history=[])

    def fake_sequences(model: Any, clips: list[Clip], train_from: str) -> list[VideoSequence]:
        return [
            VideoSequence(c.name, c.label, c.group, c.features.numpy(), c.method, c.source) for c in clips
        ]

    monkeypatch.setattr(recipe, "build_model", lambda state: torch.nn.Identity())
    monkeypatch.setattr(recipe, "finetune_encoder", fake_finetune)
    monkeypatch.setattr(recipe, "train_head", fake_train_head)
    monkeypatch.setattr(recipe, "_sequences", fake_sequences)
    all_clips = clips(labels)
    options = TrainingOptions(head=HeadTrainingConfig(window_size=4), finetune=FinetuneConfig())
    fit_model(all_clips, {}, "repeat_3", options, 0, {"main": options.head}, progress=False)

    crop_labels, video_ids, train_mask = seen["finetune"]
    held_rows = ~train_mask
    held_videos = [all_clips[i] for i in sorted(set(video_ids[held_rows].tolist()))]
    trained_videos = [all_clips[i] for i in sorted(set(video_ids[train_mask].tolist()))]
    held_groups = {clip.group for clip in held_videos}
    assert held_groups and not held_groups & {clip.group for clip in trained_videos}
    # Validation holds both classes: the real fakes when there are some, else the pseudo-fakes.
    assert set(crop_labels[held_rows].tolist()) == {0, 1}
    assert any(clip.pseudo_fake_of for clip in held_videos) == (labels == (0,))
    train_sequences, val_sequences = seen["head"]
    assert {s.label for s in val_sequences} == {0, 1}
    assert {s.group for s in val_sequences} == held_groups
    assert not held_groups & {s.group for s in train_sequences}


def test_cross_validation_of_real_videos_only_is_refused_before_training() -> None:
    options = TrainingOptions(head=HeadTrainingConfig(window_size=4), cv_folds=3)
    with pytest.raises(ValueError, match=r"cross-validation needs fake videos.*--cv-folds 0"):
        recipe.train_on_clips(clips((0,)), {}, "casia-webface", "id", options, progress=False)
