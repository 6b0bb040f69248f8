"""Thresholds of a checkpoint's own for int8: the split of training, the unchanged head, the new features."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from stream.training import precision_calibration
from stream.training.evidence_data import ClipEvidence, PhotoEvidence
from stream.training.identity_recipe import IdentityRecipe, split_photo_groups, train_identity

RECIPE = IdentityRecipe(window_size=4, sample_rate_hz=4.0, holdout_fraction=0.25, seed=0)


def evidence(rng: np.random.Generator, shift: float) -> tuple[PhotoEvidence, ClipEvidence]:
    """Photos of 120 people (inner and outer embeddings alike, a little apart) and 8 real clips."""

    def rows(count: int) -> np.ndarray:
        inner = rng.normal(size=(count, 512))
        outer = inner + rng.normal(scale=0.6 + shift, size=(count, 512))
        both = np.concatenate([inner / np.linalg.norm(inner, axis=1, keepdims=True),
                               outer / np.linalg.norm(outer, axis=1, keepdims=True)], axis=1)  # fmt: skip
        return both.astype(np.float32)

    groups = np.array([f"aaf:{n}" for n in range(60)] + [f"amfd:{n}" for n in range(60)])
    photos = PhotoEvidence(rows(120), rows(120), groups, {"photos": 120, "used": 120})
    clips = ClipEvidence(
        [rows(12) for _ in range(8)],
        np.zeros(8, np.int64),
        [f"c{n}#real" for n in range(8)],
        [f"g{n}" for n in range(8)],
    )
    return photos, clips


def test_int8_thresholds_come_from_the_same_held_out_reals_and_the_unchanged_head(monkeypatch, tmp_path):
    rng = np.random.default_rng(0)
    fp32_photos, clips = evidence(rng, 0.0)
    checkpoint, _ = train_identity(fp32_photos, clips, RECIPE, "casia-webface", "casia-webface@x")
    # The same photos embedded at int8: a little noisier, so their scores, and thresholds, move.
    int8_photos, int8_clips = evidence(np.random.default_rng(0), 0.05)
    opened: list[str] = []

    class Encoder:
        precision = "int8"

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return None

        def close(self):
            return None

    def fake_open(chosen, config):
        opened.append(config.precision)
        assert chosen is checkpoint
        return Encoder()

    caches: list[Path] = []
    monkeypatch.setattr(precision_calibration, "open_encoder", fake_open)
    monkeypatch.setattr(precision_calibration, "with_calibration", lambda config: config)
    monkeypatch.setattr(precision_calibration, "load_media_set", lambda path: [])
    monkeypatch.setattr(
        precision_calibration,
        "photo_evidence",
        lambda f, e, cache, settings, progress: caches.append(cache) or int8_photos,
    )
    monkeypatch.setattr(precision_calibration, "extract_media", lambda *a, **k: [])
    monkeypatch.setattr(precision_calibration, "source_faces", lambda *a: [])
    monkeypatch.setattr(precision_calibration, "clip_evidence", lambda *a, **k: int8_clips)
    calibration, report = precision_calibration.calibrate_precision(
        checkpoint, Path("faces.csv"), None, "int8", tmp_path
    )
    assert opened == ["int8"] and caches == [tmp_path / "identity-int8"]
    assert calibration.encoder_precision == "int8"
    held = split_photo_groups(int8_photos.groups.tolist(), RECIPE.holdout_fraction, RECIPE.seed)
    assert (
        report["held_out_photos"]
        == int(held.sum())
        == calibration.real_tracks - report["held_out_real_clips"]
    )
    assert calibration.window != checkpoint.calibration.window  # measured on the int8 features
    # The same call on the fp32 features gives back training's own calibration.
    monkeypatch.setattr(
        precision_calibration, "photo_evidence", lambda f, e, cache, settings, progress: fp32_photos
    )
    monkeypatch.setattr(precision_calibration, "clip_evidence", lambda *a, **k: clips)
    Encoder.precision = "fp32"
    again, _ = precision_calibration.calibrate_precision(
        checkpoint, Path("faces.csv"), None, "fp32", tmp_path
    )
    assert again.window == pytest.approx(checkpoint.calibration.window, abs=1e-3)
    assert again.track == pytest.approx(checkpoint.calibration.track, abs=1e-3)
    stored = checkpoint.with_precision_calibration(calibration)
    assert stored.calibration_for("int8") == calibration


def test_a_checkpoint_without_recipe_settings_is_refused():
    from tests.engine.test_checkpoint import make_checkpoint

    with pytest.raises(ValueError, match="records no identity recipe settings"):
        precision_calibration.recipe_of(make_checkpoint())


def test_an_encoder_that_does_not_run_the_asked_precision_is_refused(monkeypatch, tmp_path):
    photos, clips = evidence(np.random.default_rng(1), 0.0)
    checkpoint, _ = train_identity(photos, clips, RECIPE, "casia-webface", "casia-webface@x")
    closed: list[bool] = []
    fallback = SimpleNamespace(precision="fp32", close=lambda: closed.append(True))
    monkeypatch.setattr(precision_calibration, "open_encoder", lambda chosen, config: fallback)
    monkeypatch.setattr(precision_calibration, "with_calibration", lambda config: config)
    monkeypatch.setattr(precision_calibration, "load_media_set", lambda path: [])
    with pytest.raises(ValueError, match="the encoder runs fp32, not int8"):
        precision_calibration.calibrate_precision(checkpoint, Path("faces.csv"), None, "int8", tmp_path)
    assert closed == [True]
