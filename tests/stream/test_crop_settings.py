"""The live app refuses a config whose crops differ from the ones the checkpoint was trained on."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from engine.checkpoint import CropSettings, ScorerCheckpoint
from engine.heads import build_head
from stream.app import SetupError, load_components
from stream.config import load_config
from tests.stream.conftest import assert_clean_failure, run_cli, small_config


def checkpoint_with_crop(tmp_path, crop: CropSettings | None) -> str:
    torch.manual_seed(0)
    params = {"hidden_size": 8, "num_layers": 1, "fc_size": 4}
    checkpoint = ScorerCheckpoint(
        encoder_weights="casia-webface",
        encoder_weights_id="",
        encoder_overrides={},
        head_type="lstm",
        head_params=params,
        head_state=build_head("lstm", **params).state_dict(),
        window_size=4,
        sample_rate_hz=8.0,
        threshold=0.5,
        threshold_fpr=0.05,
        crop=crop,
    )
    return str(checkpoint.save(tmp_path / "model.pt"))


def test_load_components_names_both_crop_settings(tmp_path) -> None:
    path = checkpoint_with_crop(tmp_path, CropSettings("box", 0.4, 160))
    config = load_config(small_config(tmp_path))
    config = dataclasses.replace(config, model=dataclasses.replace(config.model, checkpoint=path))
    assert (config.crop.mode, config.crop.margin, config.crop.size_px) == ("aligned", 0.25, 160)
    with pytest.raises(SetupError) as error:
        load_components(config)
    assert str(error.value) == (
        f"checkpoint {path} was trained on crops with mode box, margin 0.4, size 160 px, but the config "
        "asks for mode aligned, margin 0.25, size 160 px; set crop to the checkpoint's settings or use a "
        "checkpoint trained on these crops"
    )


def test_run_with_mismatched_crops_exits_non_zero_at_start_up(tmp_path) -> None:
    path = checkpoint_with_crop(tmp_path, CropSettings("aligned", 0.25, 160))
    config = small_config(tmp_path, "crop:\n  margin: 0.5\n")
    completed = run_cli("run", "demo:1", "--config", str(config), "--checkpoint", path, timeout_s=300)
    assert_clean_failure(
        completed,
        r"crops with mode aligned, margin 0.25, size 160 px, but the config asks for mode aligned, "
        r"margin 0.5, size 160 px",
    )
