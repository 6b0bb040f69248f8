"""``deepwatch eval``: score labelled videos with a checkpoint and write a JSON report and ROC PNG."""

from __future__ import annotations

import argparse
import json
import logging
from typing import Any

logger = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="evaluate a scorer checkpoint on labelled videos (JSON report + ROC curve PNG)",
        description=(
            "Extract what is missing from the cache, score every video's main face track with the "
            "checkpoint and write video- and window-level ROC AUC, EER and accuracy at the checkpoint's "
            "threshold, per source and per method, to --report (a ROC PNG and a reliability PNG are written "
            "beside it). With --calibrate, thresholds are read off the set's real videos."
        ),
    )
    parser.add_argument(
        "--manifest", required=True, help="manifest CSV (path,label,group), Celeb-DF or real/+fake/ folder"
    )
    parser.add_argument("--checkpoint", default=None, help="scorer checkpoint (default: the shipped model)")
    parser.add_argument("--report", required=True, help="JSON report to write; the ROC PNG goes beside it")
    parser.add_argument(
        "--backend", default="auto", help="encoder backend: auto, torch, onnxruntime, tensorrt"
    )
    parser.add_argument(
        "--calibrate",
        default=None,
        metavar="OUT.pt",
        help="write a copy of the checkpoint calibrated on this set's real videos (thresholds at 1 %% "
        "and 5 %% false alarms per window and per track) with this set's video AUC",
    )
    parser.add_argument(
        "--images",
        action="store_true",
        help="also score image rows (a photo's face is a one-sample track; by default videos only)",
    )
    parser.add_argument("--split", default="", help="only rows whose manifest 'set' is this (e.g. dev)")
    parser.add_argument(
        "--cache-dir", default=None, help="extraction cache root (default: the user cache dir)"
    )
    from stream.training.progress import add_progress_flags

    add_progress_flags(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from engine.calibration import calibrate
    from engine.checkpoint import load_checkpoint, open_encoder
    from engine.config import EncoderConfig
    from stream.training.datasets import load_media_set
    from stream.training.evaluation import evaluate, plot_reliability, plot_roc
    from stream.training.extract import ExtractConfig, crop_config, extract_media
    from stream.training.progress import show_progress

    checkpoint = load_checkpoint(args.checkpoint)
    try:
        items = load_media_set(args.manifest)
    except ValueError as error:
        raise SystemExit(f"deepwatch eval: {error}") from error
    if args.split:
        items = [item for item in items if item.split == args.split]
        if not items:
            raise SystemExit(f"no rows with set {args.split!r} in {args.manifest}")
    encoder = open_encoder(
        checkpoint, EncoderConfig(weights=checkpoint.encoder_weights, backend=args.backend)
    )
    # The videos are cropped as the model's training crops were (the default for old checkpoints).
    extract_config = ExtractConfig(sample_rate_hz=checkpoint.sample_rate_hz)
    if checkpoint.crop is not None:
        extract_config = ExtractConfig(
            sample_rate_hz=checkpoint.sample_rate_hz, crop=crop_config(checkpoint.crop)
        )
    try:
        results = extract_media(
            items,
            extract_config,
            encoder=encoder,
            encoder_overrides=checkpoint.encoder_overrides,
            progress=show_progress(args),
            cache_dir=Path(args.cache_dir) if args.cache_dir else None,
            include_images=args.images,
        )
    finally:
        encoder.close()
    report = evaluate(results, checkpoint)
    curves = report.pop("_curves")
    real_windows = report.pop("_real_windows")
    report_path = Path(args.report)
    report_path.parent.mkdir(parents=True, exist_ok=True)
    name = Path(str(checkpoint.path)).name
    png = plot_roc(curves, report_path.with_suffix(".png"), f"deepwatch: {name}")
    report["roc_png"] = str(png) if png else None
    reliability = plot_reliability(
        curves, report_path.with_name(report_path.stem + ".reliability.png"), f"reliability: {name}"
    )
    report["reliability_png"] = str(reliability) if reliability else None
    if args.calibrate:
        if not real_windows:
            raise SystemExit(f"deepwatch eval: --calibrate needs real videos with faces in {args.manifest}")
        protocol = f"deepwatch eval on {args.manifest}" + (f" (set {args.split!r})" if args.split else "")
        calibration = calibrate(real_windows, report["video"].get("auc", float("nan")), protocol)
        calibrated = checkpoint.with_calibration(calibration)
        calibrated.save(args.calibrate)
        report["calibrated_checkpoint"] = {"path": str(args.calibrate), **calibration.to_dict()}
    report_path.write_text(json.dumps(report, indent=2))
    video = report["video"]
    logger.info(
        "video AUC %s, EER %s, accuracy %.3f at threshold %.3f (%d real, %d fake, %d unscored)",
        f"{video['auc']:.3f}" if "auc" in video else "n/a",
        f"{video['eer']:.3f}" if "eer" in video else "n/a",
        video.get("accuracy", float("nan")),
        report["threshold"],
        video["real"],
        video["fake"],
        len(report["unscored"]),
    )
    return 0
