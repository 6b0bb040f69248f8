"""Calibration crops for the int8 encoder, made from real face videos with the live crop path."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

import stream.training.calibration_crops as calibration
from engine.backends.int8 import CalibrationError, default_calibration_path
from engine.weights import CACHE_DIR_ENV


def test_without_data_or_cached_crops_the_build_is_refused_naming_what_is_needed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv(calibration.DATA_ENV, str(tmp_path / "no-data-here"))
    assert calibration.default_data_dir() is None
    with pytest.raises(CalibrationError, match=r"\$DEEPWATCH_DATA.*deepwatch weights calibrate --data DIR"):
        calibration.calibration_source()()


@pytest.mark.slow
def test_crops_are_made_from_real_videos_once_and_then_read_from_the_cache(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "cache"))
    with (data_dir / "manifest.csv").open(newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["set"] == "real" and "crowd" not in row["path"]]
    chosen = rows[:3]
    folder = tmp_path / "data"
    folder.mkdir()
    with (folder / "manifest.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(chosen[0]))
        writer.writeheader()
        for row in chosen:
            writer.writerow({**row, "path": str(data_dir / row["path"])})
    made = calibration.calibration_source(folder)()
    assert made.crops.dtype == np.uint8 and made.crops.shape[1:] == (160, 160, 3)
    assert 32 <= len(made.crops) <= 3 * calibration.CROPS_PER_VIDEO
    assert set(made.groups) == {row["group"] for row in chosen}
    # Faces, not blank frames: aligned crops of a lit face have texture.
    assert float(made.crops.reshape(len(made.crops), -1).std(axis=1).min()) > 10
    cached = default_calibration_path(tmp_path / "cache")
    assert cached.is_file()

    def refuse(*args: object) -> None:
        raise AssertionError("the crops were made again although they are cached")

    monkeypatch.setattr(calibration, "make_calibration_set", refuse)
    again = calibration.calibration_source(folder)()
    assert np.array_equal(again.crops, made.crops) and again.groups == made.groups


def test_the_live_app_points_int8_at_the_cached_crops_only_when_it_may_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import engine.backends.int8 as int8_build
    import stream.calibration as live
    from engine.config import EncoderConfig

    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path))
    monkeypatch.setattr(live, "cpu_flags", lambda: frozenset({"avx2"}))
    int8 = EncoderConfig(precision="int8")
    assert live.with_calibration(int8) == int8  # nothing cached: the build will say what is missing
    cached = default_calibration_path(tmp_path)
    int8_build.save_calibration_file(
        cached, int8_build.CalibrationSet(np.zeros((32, 160, 160, 3), np.uint8), (), "zeros")
    )
    assert live.with_calibration(int8).calibration == str(cached)
    assert live.with_calibration(EncoderConfig()).calibration is None  # fp32
    assert live.with_calibration(EncoderConfig(precision="auto")).calibration is None  # no VNNI here
    monkeypatch.setattr(live, "cpu_flags", lambda: frozenset({"avx512_vnni"}))
    assert live.with_calibration(EncoderConfig(precision="auto")).calibration == str(cached)
    own = EncoderConfig(precision="int8", calibration="mine.npz")
    assert live.with_calibration(own) == own
