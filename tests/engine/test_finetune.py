"""Encoder fine-tuning on cached lower features: split points, stored layers, learning a toy task."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.finetune import (
    FinetuneConfig,
    advance_features,
    build_model,
    embed_features,
    finetune_encoder,
    lower_features,
    upper_parameter_names,
)
from engine.inception_resnet_v1 import InceptionResnetV1


@pytest.fixture(scope="module")
def base_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return InceptionResnetV1().state_dict()


def pixels(count: int, seed: int, shift: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.normal(0, 0.3, (count, 3, 160, 160)) + shift).astype(np.float32)


def test_split_points_agree_and_match_the_full_network(base_state: dict[str, torch.Tensor]) -> None:
    model = build_model(base_state)
    batch = pixels(2, 0, 0.0)
    low = lower_features(model, batch, "mixed_7a")
    assert low.shape == (2, 896, 8, 8) and low.dtype == torch.float16
    advanced = advance_features(model, low, "mixed_7a", "block8")
    direct = lower_features(model, batch, "block8")
    torch.testing.assert_close(advanced.float(), direct.float(), atol=0.05, rtol=0.02)
    with torch.inference_mode():
        reference = model(torch.from_numpy(batch)).numpy()
    embeddings = embed_features(model, lower_features(model, batch, "last_linear"), "last_linear")
    np.testing.assert_allclose(embeddings, reference, atol=2e-2)
    assert np.allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-3)
    with pytest.raises(ValueError, match="must not come before"):
        advance_features(model, low, "block8", "mixed_7a")


def test_finetuning_changes_only_upper_layers_and_learns(base_state: dict[str, torch.Tensor]) -> None:
    model = build_model(base_state)
    # Two "videos" per class and split; fakes are brighter.
    crops = np.concatenate([pixels(6, i, 0.4 * (i % 2)) for i in range(8)])
    labels = np.repeat(np.arange(8) % 2, 6)
    video_ids = np.repeat(np.arange(8), 6)
    train_mask = video_ids < 4
    features = lower_features(model, crops, "block8")
    config = FinetuneConfig(train_from="block8", max_epochs=3, steps_per_epoch=5, batch_size=8)
    result = finetune_encoder(model, features, labels, video_ids, train_mask, config, progress=False)
    names = upper_parameter_names(model, "block8")
    assert set(result.overrides) == set(names)
    assert {name.split(".")[0] for name in names} == {"block8", "last_linear", "last_bn"}
    assert result.val_auc == pytest.approx(1.0)
    changed = [name for name in names if not torch.equal(result.overrides[name], base_state[name])]
    assert changed or result.best_epoch == 0
    # The model is left at the kept weights, and nothing below block8 changed.
    state = model.state_dict()
    assert all(
        torch.equal(state[name], base_state[name]) for name in base_state if name.startswith("repeat_3")
    )
    with pytest.raises(ValueError, match="train_from must be one of"):
        FinetuneConfig(train_from="conv2d_1a")


def test_low_stage_finetuning_trains_the_stem_and_top_but_not_the_middle(
    base_state: dict[str, torch.Tensor],
) -> None:
    model = build_model(base_state)
    config = FinetuneConfig(
        train_from="block8", train_low=True, max_epochs=1, steps_per_epoch=2, batch_size=4
    )
    assert config.feature_split == "conv2d_1a"
    crops = np.concatenate([pixels(3, i, 0.4 * (i % 2)) for i in range(4)])
    labels = np.repeat(np.arange(4) % 2, 3)
    video_ids = np.repeat(np.arange(4), 3)
    features = lower_features(model, crops, config.feature_split)
    # The cached features of the whole-network split are the standardised pixels themselves.
    torch.testing.assert_close(features.float(), torch.from_numpy(crops).half().float())
    result = finetune_encoder(
        model, features, labels, video_ids, np.ones(len(labels), bool), config, progress=False
    )
    stages = {name.split(".")[0] for name in result.overrides}
    assert {"conv2d_1a", "conv2d_4b", "repeat_1", "block8", "last_linear", "last_bn"} <= stages
    assert not stages & {"mixed_6a", "repeat_2", "mixed_7a", "repeat_3"}
    assert not torch.equal(result.overrides["conv2d_1a.conv.weight"], base_state["conv2d_1a.conv.weight"])
    state = model.state_dict()
    assert all(
        torch.equal(state[name], base_state[name]) for name in base_state if name.startswith("repeat_2")
    )
