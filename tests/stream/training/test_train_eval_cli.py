"""``deepwatch train`` and ``deepwatch eval`` end to end on tiny synthetic videos."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.checkpoint import CheckpointError, CropSettings, load_checkpoint
from engine.metrics import roc_auc
from stream.cli import main
from tests.stream.face_videos import write_face_video

pytestmark = pytest.mark.slow

TINY = ["--window", "4", "--max-crops", "8", "--max-epochs", "3", "--no-progress"]
SMALL_HEAD = ["--head-params", '{"hidden_size": 16, "fc_size": 8}']


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """3 real and 3 "fake" (face re-tinted) clips of 2 s, each its own identity group."""
    folder = tmp_path_factory.mktemp("tiny_set")
    rows = []
    for index in range(6):
        label = "fake" if index % 2 else "real"
        tint = (45, -25, -25) if label == "fake" else (0, 0, 0)
        size = (300 + 20 * index, 240)
        write_face_video(folder / f"clip{index}.mp4", frames=16, fps=8.0, size_wh=size, tint=tint)
        rows.append(
            f"clip{index}.mp4,{label},person{index},video,{'tint' if label == 'fake' else 'none'},synthetic"
        )
    manifest = folder / "manifest.csv"
    manifest.write_text("path,label,group,kind,method,source\n" + "\n".join(rows) + "\n")
    return manifest, tmp_path_factory.mktemp("cache")


def test_train_is_deterministic_and_eval_reports(tiny_set: tuple[Path, Path], tmp_path: Path) -> None:
    manifest, cache = tiny_set
    common = ["train", str(manifest), "--cv-folds", "0", "--cache-dir", str(cache), *TINY, *SMALL_HEAD]
    assert main([*common, "--out", str(tmp_path / "a.pt")]) == 0
    assert main([*common, "--out", str(tmp_path / "b.pt")]) == 0
    first, second = load_checkpoint(tmp_path / "a.pt"), load_checkpoint(tmp_path / "b.pt")
    for name, value in first.head_state.items():
        assert torch.equal(value, second.head_state[name]), name
    assert first.threshold == second.threshold
    assert first.encoder_weights == "casia-webface" and first.encoder_weights_id.startswith("casia-webface@")
    assert first.encoder_overrides == {}
    assert first.window_size == 4 and first.training_summary["videos"] == 6
    assert first.crop == CropSettings(mode="aligned", margin=0.25, size_px=160)

    report_path = tmp_path / "report" / "eval.json"
    argv = [
        "eval",
        "--manifest",
        str(manifest),
        "--checkpoint",
        str(tmp_path / "a.pt"),
        "--report",
        str(report_path),
    ]
    assert main([*argv, "--cache-dir", str(cache), "--backend", "torch", "--no-progress"]) == 0
    report = json.loads(report_path.read_text())
    assert report["video"]["real"] == 3 and report["video"]["fake"] == 3
    labels = np.array([video["label"] for video in report["videos"]])
    scores = np.array([video["p_fake"] for video in report["videos"]])
    assert report["video_auc"] == pytest.approx(roc_auc(labels, scores))
    accuracy = ((scores >= report["threshold"]) == labels).mean()
    assert report["video"]["accuracy"] == pytest.approx(accuracy)
    assert set(report["per_method"]) == {"tint"} and set(report["per_source"]) == {"synthetic"}
    assert report["window"]["n"] >= 6 and "eer" in report["window"]
    png = report_path.with_suffix(".png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    reliability = report_path.with_name("eval.reliability.png")
    assert report["reliability_png"] == str(reliability)
    assert reliability.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert report["calibration"] is None  # trained without cross-validation: not calibrated

    # Calibrate on the set's 3 real videos, then evaluate the calibrated copy.
    calibrated_path = tmp_path / "calibrated.pt"
    calibrate_argv = [*argv, "--calibrate", str(calibrated_path)]
    assert main([*calibrate_argv, "--cache-dir", str(cache), "--backend", "torch", "--no-progress"]) == 0
    calibrated = load_checkpoint(calibrated_path)
    calibration = calibrated.calibration
    assert calibration is not None and calibration.real_tracks == 3
    assert calibration.auc == pytest.approx(report["video_auc"])
    assert str(manifest) in calibration.auc_protocol
    # 3 real tracks: k = 0 at 1 % and 5 %, so both track thresholds are the highest real window
    # score, which is also the 1 % window threshold while there are fewer than 100 windows.
    windows = calibration.real_windows
    assert 20 <= windows < 100
    assert calibration.track[0.01] == calibration.track[0.05] == calibration.window[0.01]
    assert calibration.window[0.05] <= calibration.window[0.01]
    assert calibrated.threshold == calibration.track[0.05]
    argv[argv.index(str(tmp_path / "a.pt"))] = str(calibrated_path)
    assert main([*argv, "--cache-dir", str(cache), "--backend", "torch", "--no-progress"]) == 0
    at_five = json.loads(report_path.read_text())["calibration"]["0.05"]
    assert at_five["real_tracks"] == 3 and at_five["real_tracks_past"] == 0
    # k = floor(0.05 * n) real windows are above the 5 % window threshold (no ties in float scores).
    assert at_five["real_window_false_alarm_rate"] == pytest.approx(math.floor(0.05 * windows) / windows)


def test_finetuned_checkpoint_stores_only_the_changed_layers(
    tiny_set: tuple[Path, Path], tmp_path: Path
) -> None:
    manifest, cache = tiny_set
    out = tmp_path / "ft.pt"
    argv = ["train", str(manifest), "--out", str(out), "--cv-folds", "0", "--cache-dir", str(cache), *TINY]
    assert (
        main([*argv, *SMALL_HEAD, "--finetune-from", "block8", "--pseudo-fakes", "--finetune-epochs", "1"])
        == 0
    )
    checkpoint = load_checkpoint(out)
    assert checkpoint.changed_layers == ["block8", "last_bn", "last_linear"]
    assert checkpoint.training_summary["pseudo_fakes"] == 3
    stored = torch.load(out, weights_only=True)["encoder_overrides"]
    assert all(value.dtype == torch.float16 for value in stored.values())
    assert out.stat().st_size < 8e6


def test_low_stage_finetuning_from_the_cli_stores_stem_and_top(
    tiny_set: tuple[Path, Path], tmp_path: Path
) -> None:
    manifest, cache = tiny_set
    out = tmp_path / "low.pt"
    argv = ["train", str(manifest), "--out", str(out), "--cv-folds", "0", "--cache-dir", str(cache), *TINY]
    argv += [*SMALL_HEAD, "--finetune-from", "block8", "--finetune-low", "--finetune-epochs", "1"]
    argv += ["--finetune-steps", "2", "--finetune-batch", "4"]
    assert main(argv) == 0
    checkpoint = load_checkpoint(out)
    assert checkpoint.changed_layers[:2] == ["block8", "conv2d_1a"]
    assert "repeat_1" in checkpoint.changed_layers and "repeat_2" not in checkpoint.changed_layers
    assert checkpoint.training_summary["options"]["finetune"]["train_low"] is True


def test_eval_refuses_a_checkpoint_of_other_base_weights(tiny_set: tuple[Path, Path], tmp_path: Path) -> None:
    manifest, cache = tiny_set
    raw = None
    train = [
        "train",
        str(manifest),
        "--out",
        str(tmp_path / "c.pt"),
        "--cv-folds",
        "0",
        "--cache-dir",
        str(cache),
    ]
    assert main([*train, *TINY, *SMALL_HEAD]) == 0
    raw = torch.load(tmp_path / "c.pt", weights_only=True)
    raw["encoder_weights_id"] = "casia-webface@000000000000"
    torch.save(raw, tmp_path / "other.pt")
    argv = ["eval", "--manifest", str(manifest), "--checkpoint", str(tmp_path / "other.pt")]
    with pytest.raises(CheckpointError, match=r"casia-webface@000000000000.*casia-webface@[0-9a-f]{12}"):
        main([*argv, "--report", str(tmp_path / "r.json"), "--cache-dir", str(cache), "--backend", "torch"])


def test_a_set_of_real_videos_trains_on_its_pseudo_fakes(tiny_set: tuple[Path, Path], tmp_path: Path) -> None:
    """The protocol with no fake in training: real videos and their self-blends only."""
    manifest, cache = tiny_set
    real_rows = [line for line in manifest.read_text().splitlines()[1:] if ",real," in line]
    real_only = manifest.parent / "real_only.csv"
    real_only.write_text("path,label,group,kind,method,source\n" + "\n".join(real_rows) + "\n")
    argv = ["train", str(real_only), "--out", str(tmp_path / "r.pt"), "--cache-dir", str(cache), *TINY]
    with pytest.raises(SystemExit, match=r"cross-validation needs fake videos.*--cv-folds 0"):
        main([*argv, "--pseudo-fakes", "--cv-folds", "2"])
    assert not (tmp_path / "r.pt").exists()
    assert main([*argv, *SMALL_HEAD, "--pseudo-fakes", "--cv-folds", "0"]) == 0
    checkpoint = load_checkpoint(tmp_path / "r.pt")
    summary = checkpoint.training_summary
    assert (summary["real"], summary["fake"], summary["pseudo_fakes"]) == (3, 0, 3)
    # The threshold comes from the real windows alone and lies strictly inside (0, 1).
    assert 0.0 < checkpoint.threshold < 1.0


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--finetune-low"], "--finetune-low needs --finetune-from"),
        (["--finetune-from", "block8", "--finetune-steps", "0"], "steps_per_epoch must be an integer >= 1"),
        (["--cv-folds", "1"], "cv_folds must be 0"),
        (["--head-params", "[1"], "--head-params must be a JSON object"),
    ],
)
def test_bad_training_flags_exit_with_the_reason(tmp_path: Path, flags: list[str], message: str) -> None:
    # Checked before any video is read: the manifest does not even exist.
    with pytest.raises(SystemExit) as exit_info:
        main(["train", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "m.pt"), *flags])
    assert message in str(exit_info.value.code)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_train_on_cuda_without_a_gpu_exits_with_the_reason(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["train", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "m.pt"), "--device", "cuda"])
    assert "device 'cuda' asked for, but torch sees no CUDA GPU here" in str(exit_info.value.code)


def test_resume_refuses_another_configuration_naming_the_difference(tmp_path: Path) -> None:
    out = str(tmp_path / "m.pt")
    with pytest.raises(SystemExit, match=r"nothing to resume: no run in .*m\.run"):
        main(["train", str(tmp_path / "missing.csv"), "--out", out, "--resume"])
    # A run that stopped (here: at reading its manifest) leaves its run folder and configuration.
    with pytest.raises(SystemExit, match="deepwatch train: expected a manifest"):
        main(["train", str(tmp_path / "missing.csv"), "--out", out, "--window", "16"])
    assert (tmp_path / "m.run" / "config.json").is_file()
    with pytest.raises(SystemExit) as exit_info:
        main(["train", str(tmp_path / "missing.csv"), "--out", out, "--window", "8", "--resume"])
    assert "options.head.window_size: 16 (run) vs 8 (now)" in str(exit_info.value.code)
    with pytest.raises(SystemExit, match="deepwatch train: expected a manifest"):
        main(["train", str(tmp_path / "missing.csv"), "--out", out, "--window", "16", "--resume"])


def test_cross_validated_training_stores_a_calibration(tiny_set: tuple[Path, Path], tmp_path: Path) -> None:
    manifest, cache = tiny_set
    out = tmp_path / "cv.pt"
    report = tmp_path / "cv.json"
    argv = ["train", str(manifest), "--out", str(out), "--cv-folds", "3", "--cache-dir", str(cache)]
    assert main([*argv, "--report", str(report), *TINY, *SMALL_HEAD]) == 0
    checkpoint = load_checkpoint(out)
    figures = json.loads(report.read_text())
    calibration = checkpoint.calibration
    assert calibration is not None
    assert calibration.real_tracks == 3 and calibration.auc == pytest.approx(figures["video_auc"])
    assert calibration.auc_protocol.startswith("group 3-fold cross-validation of the training set")
    assert checkpoint.threshold == calibration.track[0.05]
    assert figures["calibration"]["track"]["0.05"] == calibration.track[0.05]
