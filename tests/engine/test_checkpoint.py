"""Checkpoint format: round trip, fp16 overrides, encoder mismatch refusal, and the shipped default."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.checkpoint import (
    CheckpointError,
    CropSettings,
    ScorerCheckpoint,
    default_checkpoint_path,
    load_checkpoint,
)
from engine.heads import build_head


def make_checkpoint(**changes: object) -> ScorerCheckpoint:
    torch.manual_seed(0)
    head = build_head("lstm", input_dim=512, hidden_size=16, fc_size=8)
    values: dict[str, object] = {
        "encoder_weights": "casia-webface",
        "encoder_weights_id": "casia-webface@8beef909d988",
        "encoder_overrides": {"block8.conv2d.weight": torch.randn(1792, 384, 1, 1)},
        "head_type": "lstm",
        "head_params": {"input_dim": 512, "hidden_size": 16, "fc_size": 8},
        "head_state": head.state_dict(),
        "window_size": 8,
        "sample_rate_hz": 8.0,
        "threshold": 0.6,
        "threshold_fpr": 0.05,
        "training_summary": {"videos": 3},
        "crop": CropSettings(mode="aligned", margin=0.25, size_px=160),
    }
    values.update(changes)
    return ScorerCheckpoint(**values)  # type: ignore[arg-type]


def test_round_trip_rebuilds_the_same_scorer(tmp_path) -> None:
    checkpoint = make_checkpoint()
    path = checkpoint.save(tmp_path / "model.pt")
    loaded = load_checkpoint(path)
    assert loaded.encoder_weights == "casia-webface"
    assert loaded.changed_layers == ["block8"]
    assert loaded.window_size == 8 and loaded.sample_rate_hz == 8.0
    assert loaded.threshold == 0.6 and loaded.threshold_fpr == 0.05
    assert loaded.training_summary == {"videos": 3}
    # Overrides are stored fp16 and come back float32 within fp16 precision.
    original = checkpoint.encoder_overrides["block8.conv2d.weight"]
    restored = loaded.encoder_overrides["block8.conv2d.weight"]
    assert restored.dtype == torch.float32
    torch.testing.assert_close(restored, original, atol=2e-3, rtol=1e-3)
    assert (
        torch.load(path, weights_only=True)["encoder_overrides"]["block8.conv2d.weight"].dtype
        == torch.float16
    )
    window = np.random.default_rng(0).normal(size=(8, 512)).astype(np.float32)
    expected = checkpoint.build_scorer().score_window(window)
    assert loaded.build_scorer().score_window(window) == pytest.approx(expected, abs=2e-3)
    scorer = loaded.build_scorer()
    assert scorer.config.window_size == 8 and scorer.sample_rate_hz == 8.0


def test_crop_settings_round_trip_and_a_mismatch_names_both(tmp_path) -> None:
    path = make_checkpoint().save(tmp_path / "model.pt")
    assert torch.load(path, weights_only=True)["crop"] == {"mode": "aligned", "margin": 0.25, "size_px": 160}
    loaded = load_checkpoint(path)
    assert loaded.crop == CropSettings("aligned", 0.25, 160)
    loaded.check_crop(CropSettings("aligned", 0.25, 160))
    expected = (
        r"trained on crops with mode aligned, margin 0.25, size 160 px, "
        r"but the config asks for mode box, margin 0.4, size 160 px"
    )
    with pytest.raises(CheckpointError, match=expected):
        loaded.check_crop(CropSettings("box", 0.4, 160))
    with pytest.raises(CheckpointError, match="size 112 px"):
        loaded.check_crop(CropSettings("aligned", 0.25, 112))


def test_a_format_1_file_loads_with_its_crop_not_recorded(tmp_path, caplog) -> None:
    raw = make_checkpoint().to_dict()
    raw["format_version"] = 1
    del raw["crop"]
    torch.save(raw, tmp_path / "old.pt")
    loaded = load_checkpoint(tmp_path / "old.pt")
    assert loaded.crop is None
    with caplog.at_level("WARNING", logger="engine.checkpoint"):
        loaded.check_crop(CropSettings("box", 0.4, 160))
    assert "does not record its crop settings" in caplog.text
    raw["format_version"] = 3
    torch.save(raw, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match=r"format version 3, expected one of \(1, 2\)"):
        load_checkpoint(tmp_path / "future.pt")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (("tight", 0.25, 160), "crop mode must be one of"),
        (("box", -0.1, 160), "crop margin must be in"),
        (("box", 0.25, 8), "crop size_px must be an integer >= 16, got 8"),
    ],
)
def test_bad_crop_settings_are_refused(fields, message) -> None:
    with pytest.raises(CheckpointError, match=message):
        CropSettings(*fields)


def test_encoder_with_other_base_weights_is_refused(tmp_path) -> None:
    path = make_checkpoint().save(tmp_path / "model.pt")
    with pytest.raises(CheckpointError, match=r"casia-webface@8beef909d988.*vggface2@0123456789ab"):
        load_checkpoint(path, encoder_weights="vggface2@0123456789ab")
    checkpoint = load_checkpoint(path, encoder_weights="casia-webface@8beef909d988")
    # A fine-tuned encoder's id carries a "+digest" suffix; only the base part is compared.
    checkpoint.check_encoder("casia-webface@8beef909d988+0123abcd4567")
    with pytest.raises(CheckpointError, match="casia-webface@ffffffffffff"):
        checkpoint.check_encoder("casia-webface@ffffffffffff")


def test_bad_files_are_refused(tmp_path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"format": "other"}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a deepwatch scorer checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    raw = make_checkpoint().to_dict()
    del raw["threshold"]
    torch.save(raw, tmp_path / "partial.pt")
    with pytest.raises(CheckpointError, match="lacks the field 'threshold'"):
        load_checkpoint(tmp_path / "partial.pt")


def test_shipped_default_checkpoint() -> None:
    path = default_checkpoint_path()
    assert path.is_file(), f"the shipped model is missing: {path}"
    checkpoint = load_checkpoint()
    assert checkpoint.encoder_weights == "casia-webface"
    assert checkpoint.head_type == "identity" and checkpoint.window_size == 8
    assert checkpoint.crop is not None and checkpoint.crop.size_px == 160
    # Calibrated on real faces only, with the validated figure and where it came from.
    calibration = checkpoint.calibration
    assert calibration is not None and calibration.real_tracks > 300
    assert 0.5 < calibration.auc < 1.0 and "dev videos" in calibration.auc_protocol
    assert checkpoint.threshold == calibration.track[0.05]
    assert checkpoint.training_summary["photos"]["used"] > 1000
    assert path.stat().st_size < 5e6
    # Inner and outer face of one person read real; of two people, fake.
    scorer = checkpoint.build_scorer()
    rng = np.random.default_rng(0)
    person = rng.normal(size=(checkpoint.window_size, 512)).astype(np.float32)
    person /= np.linalg.norm(person, axis=1, keepdims=True)
    other = np.roll(person, 1, axis=1)
    real_bound, fake_above = calibration.verdict_thresholds()
    assert scorer.score_window(np.concatenate([person, person], axis=1)) <= real_bound
    assert scorer.score_window(np.concatenate([person, -other], axis=1)) > fake_above
    # Its thresholds were also set at int8, on the same held-out reals embedded by the int8 encoder.
    int8 = checkpoint.precision_calibrations["int8"]
    assert int8.encoder_precision == "int8" and int8.real_tracks == calibration.real_tracks
    assert checkpoint.threshold_for("int8") == int8.track[0.05] != checkpoint.threshold
    assert checkpoint.calibration_for("fp32") is calibration
