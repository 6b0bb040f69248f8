"""Which thresholds the live app uses: calibrated ones from the checkpoint unless the config sets one."""

from __future__ import annotations

import dataclasses

import pytest

from engine.calibration import Calibration, precision_mismatch
from stream.config import AppConfig
from stream.live.app import PipelineComponents
from tests.engine.test_checkpoint import make_checkpoint

CALIBRATION = Calibration(
    window={0.01: 0.8, 0.05: 0.6},
    track={0.01: 0.9, 0.05: 0.7},
    real_windows=400,
    real_tracks=40,
    auc=0.9,
    auc_protocol="t",
)


def components(config: AppConfig, calibrated: bool) -> PipelineComponents:
    checkpoint = make_checkpoint()
    if calibrated:
        checkpoint = checkpoint.with_calibration(CALIBRATION)
    # The thresholds need neither detector nor encoder.
    return PipelineComponents(config=config, detector=None, encoder=None, checkpoint=checkpoint)  # type: ignore[arg-type]


def test_calibrated_checkpoint_sets_verdict_bands_and_alert_threshold() -> None:
    app = components(AppConfig(), calibrated=True)
    assert (app.threshold, app.real_threshold, app.alert_threshold) == (0.7, 0.6, 0.9)
    pipeline = app.new_pipeline()
    assert pipeline.book.verdicts.threshold == 0.7 and pipeline.book.verdicts.real_at_most == 0.6
    assert [pipeline.book.verdicts.verdict(p, True) for p in (0.6, 0.65, 0.71)] == ["REAL", "UNSURE", "FAKE"]


def test_a_configured_threshold_or_an_uncalibrated_model_uses_the_margin_rule() -> None:
    config = AppConfig()
    configured = dataclasses.replace(config, pipeline=dataclasses.replace(config.pipeline, threshold=0.5))
    app = components(configured, calibrated=True)
    assert (app.threshold, app.real_threshold, app.alert_threshold) == (0.5, None, 0.5)
    assert app.new_pipeline().book.verdicts.real_at_most is None
    plain = components(config, calibrated=False)
    assert (plain.threshold, plain.real_threshold, plain.alert_threshold) == (0.6, None, 0.6)


def test_an_int8_encoder_with_thresholds_set_on_fp32_embeddings_is_warned_about() -> None:
    warning = precision_mismatch(CALIBRATION, "int8", None)
    assert warning is not None and "runs int8" in warning and "calibrated on fp32" in warning
    assert "encoder.precision: fp32" in warning
    assert precision_mismatch(CALIBRATION, "fp32", None) is None
    assert (
        precision_mismatch(dataclasses.replace(CALIBRATION, encoder_precision="int8"), "int8", None) is None
    )
    assert precision_mismatch(CALIBRATION, "int8", 0.5) is None  # a configured threshold is the user's own
    assert precision_mismatch(None, "int8", None) is None


def test_calibration_records_its_encoder_precision_and_old_checkpoints_read_as_fp32() -> None:
    raw = CALIBRATION.to_dict()
    assert raw["encoder_precision"] == "fp32"
    del raw["encoder_precision"]
    assert Calibration.from_dict(raw).encoder_precision == "fp32"
    int8 = dataclasses.replace(CALIBRATION, encoder_precision="int8")
    assert Calibration.from_dict(int8.to_dict()) == int8
    with pytest.raises(ValueError, match="'fp32' or 'int8'"):
        dataclasses.replace(CALIBRATION, encoder_precision="auto")


INT8 = dataclasses.replace(
    CALIBRATION, window={0.01: 0.85, 0.05: 0.65}, track={0.01: 0.95, 0.05: 0.75}, encoder_precision="int8"
)


class PrecisionOnly:
    """An encoder that only says its precision (the thresholds need nothing else)."""

    weights_id = "casia-webface@test"
    backend_name = "none"

    def __init__(self, precision: str) -> None:
        self.precision = precision


def test_an_int8_encoder_uses_the_checkpoints_int8_thresholds_when_it_has_them(tmp_path) -> None:
    from engine.checkpoint import load_checkpoint

    checkpoint = make_checkpoint().with_calibration(CALIBRATION).with_precision_calibration(INT8)
    assert checkpoint.calibration_for("int8") is INT8 and checkpoint.calibration_for("fp32") is CALIBRATION
    assert (checkpoint.threshold_for("int8"), checkpoint.threshold_for("fp32")) == (0.75, 0.7)
    restored = load_checkpoint(checkpoint.save(tmp_path / "two.pt"))
    assert restored.precision_calibrations == {"int8": INT8} and restored.calibration == CALIBRATION
    with pytest.raises(Exception, match="fp32 calibration is the checkpoint's own"):
        checkpoint.with_precision_calibration(CALIBRATION)

    def app(precision: str, with_int8: bool) -> PipelineComponents:
        chosen = checkpoint if with_int8 else make_checkpoint().with_calibration(CALIBRATION)
        return PipelineComponents(
            config=AppConfig(),
            detector=None,  # type: ignore[arg-type]
            encoder=PrecisionOnly(precision),  # type: ignore[arg-type]
            checkpoint=chosen,
        )

    int8_app = app("int8", with_int8=True)
    assert (int8_app.threshold, int8_app.real_threshold, int8_app.alert_threshold) == (0.75, 0.65, 0.95)
    assert int8_app.describe()["calibrated_precision"] == "int8"
    verdicts = int8_app.new_pipeline().book.verdicts
    assert (verdicts.threshold, verdicts.real_at_most) == (0.75, 0.65)
    fp32_app = app("fp32", with_int8=True)
    assert (fp32_app.threshold, fp32_app.real_threshold, fp32_app.alert_threshold) == (0.7, 0.6, 0.9)
    # Without int8 thresholds an int8 encoder keeps the fp32 ones, and is warned about (above).
    old = app("int8", with_int8=False)
    assert (old.threshold, old.real_threshold) == (0.7, 0.6)
    assert old.describe()["calibrated_precision"] == "fp32"
