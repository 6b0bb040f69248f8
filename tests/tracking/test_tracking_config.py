"""Validation of the tracking stage's configs."""

from __future__ import annotations

import dataclasses

import pytest

from tracking import CropConfig, DetectorConfig, FaceTracker, TrackerConfig


def test_defaults_are_valid_and_frozen() -> None:
    for config in (DetectorConfig(), TrackerConfig(), CropConfig()):
        with pytest.raises(dataclasses.FrozenInstanceError):
            config.__setattr__(dataclasses.fields(config)[0].name, None)


def test_thresholds_from_yaml_lists_become_tuples() -> None:
    config = DetectorConfig(thresholds=[0.5, 0.6, 0.7])  # type: ignore[arg-type]
    assert config.thresholds == (0.5, 0.6, 0.7)
    hash(config)


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (lambda: DetectorConfig(min_face_size_px=0), r"DetectorConfig.min_face_size_px must be in .* got 0"),
        (lambda: DetectorConfig(thresholds=(0.6, 0.7)), r"DetectorConfig.thresholds must be 3 numbers"),
        (lambda: DetectorConfig(thresholds=(0.6, 1.5, 0.7)), r"DetectorConfig.thresholds\[1\].*got 1.5"),
        (lambda: DetectorConfig(pyramid_factor=1.0), r"DetectorConfig.pyramid_factor .* got 1.0"),
        (lambda: DetectorConfig(max_side_px=320.5), r"DetectorConfig.max_side_px must be an int"),
        (lambda: DetectorConfig(max_side_px=10), r"DetectorConfig.max_side_px must be in \[24"),
        (lambda: DetectorConfig(num_threads=0), r"DetectorConfig.num_threads must be in \[1, 1024\], got 0"),
        (lambda: TrackerConfig(min_hits=0), r"TrackerConfig.min_hits must be in \[1, 1000\], got 0"),
        (lambda: TrackerConfig(min_hits=True), r"TrackerConfig.min_hits must be an int"),
        (lambda: TrackerConfig(max_age_frames=2, detect_every_n_frames=5), r"max_age_frames must be >= "),
        (lambda: TrackerConfig(iou_threshold=1.0), r"TrackerConfig.iou_threshold"),
        (lambda: TrackerConfig(measurement_noise=float("nan")), r"TrackerConfig.measurement_noise"),
        (lambda: TrackerConfig(landmark_smoothing=1.0), r"TrackerConfig.landmark_smoothing"),
        (lambda: TrackerConfig(blend_corrections="yes"), r"TrackerConfig.blend_corrections must be true"),
        (
            lambda: CropConfig(mode="tight"),
            r"CropConfig.mode must be one of \('box', 'aligned'\), got 'tight'",
        ),
        (lambda: CropConfig(size_px=8), r"CropConfig.size_px"),
        (lambda: CropConfig(margin=-0.1), r"CropConfig.margin must be in \[0.0, 3.0\], got -0.1"),
        (lambda: CropConfig(margin="wide"), r"CropConfig.margin must be a number"),
    ],
)
def test_bad_values_name_the_field_and_the_value(factory, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=message):
        factory()


def test_keyword_overrides_go_through_validation() -> None:
    assert FaceTracker(min_hits=5).config.min_hits == 5
    with pytest.raises(ValueError, match=r"TrackerConfig\.min_hits"):
        FaceTracker(min_hits=-1)
    with pytest.raises(TypeError):
        FaceTracker(no_such_field=1)
