"""Which thresholds the live app uses: calibrated ones from the checkpoint unless the config sets one."""

from __future__ import annotations

import dataclasses

from engine.calibration import Calibration
from stream.app import PipelineComponents
from stream.config import AppConfig
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
    assert pipeline.verdicts.threshold == 0.7 and pipeline.verdicts.real_at_most == 0.6
    assert [pipeline.verdicts.verdict(p, True) for p in (0.6, 0.65, 0.71)] == ["REAL", "UNSURE", "FAKE"]


def test_a_configured_threshold_or_an_uncalibrated_model_uses_the_margin_rule() -> None:
    config = AppConfig()
    configured = dataclasses.replace(config, pipeline=dataclasses.replace(config.pipeline, threshold=0.5))
    app = components(configured, calibrated=True)
    assert (app.threshold, app.real_threshold, app.alert_threshold) == (0.5, None, 0.5)
    assert app.new_pipeline().verdicts.real_at_most is None
    plain = components(config, calibrated=False)
    assert (plain.threshold, plain.real_threshold, plain.alert_threshold) == (0.6, None, 0.6)
