"""``deepwatch train``: extract what is missing, cross-validate, train and save a scorer checkpoint."""

from __future__ import annotations

import argparse
import json
import logging
from typing import Any

logger = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    from engine.encoder_stages import TRAINABLE_FROM
    from engine.scorer_config import HEAD_NAMES

    parser = subparsers.add_parser(
        "train",
        help="train the detector (encoder fine-tuning + sequence head) on labelled videos",
        description=(
            "Train on a manifest CSV (path,label,group), a Celeb-DF v2 folder or a folder with real/ and "
            "fake/. Splits are by identity group; the reported figures come from group-held-out "
            "cross-validation of the whole recipe, fine-tuning included."
        ),
    )
    parser.add_argument("source", help="manifest .csv, Celeb-DF v2 folder, or folder with real/ and fake/")
    parser.add_argument("--out", required=True, help="checkpoint file to write (.pt)")
    parser.add_argument("--report", default=None, help="write the cross-validation figures to this JSON file")
    parser.add_argument(
        "--weights", default="casia-webface", help="encoder base weights (default casia-webface)"
    )
    parser.add_argument(
        "--finetune-from",
        default="none",
        choices=["none", *TRAINABLE_FROM],
        help="first encoder stage to fine-tune (default none: frozen encoder)",
    )
    parser.add_argument(
        "--finetune-low",
        action="store_true",
        help="also fine-tune the stem through repeat_1 (full forward and backward per crop: slow)",
    )
    parser.add_argument(
        "--pseudo-fakes", action="store_true", help="add self-blended fakes of the real clips"
    )
    parser.add_argument("--head", default="lstm", choices=HEAD_NAMES, help="sequence head (default lstm)")
    parser.add_argument(
        "--head-params", default="{}", help="head parameters as JSON, e.g. '{\"hidden_size\": 128}'"
    )
    parser.add_argument("--window", type=int, default=16, help="embeddings per window (default 16)")
    parser.add_argument("--cv-folds", type=int, default=5, help="group-held-out folds; 0 skips (default 5)")
    parser.add_argument(
        "--cv-split",
        default="",
        help="cross-validate only rows whose manifest 'set' is this (others only train), e.g. dev",
    )
    parser.add_argument("--threshold-fpr", type=float, default=0.05, help="target window FPR (default 0.05)")
    parser.add_argument("--max-crops", type=int, default=32, help="samples per video used (default 32)")
    parser.add_argument("--max-epochs", type=int, default=30, help="head epochs at most (default 30)")
    parser.add_argument(
        "--finetune-epochs", type=int, default=8, help="fine-tuning epochs at most (default 8)"
    )
    parser.add_argument(
        "--finetune-steps", type=int, default=40, help="fine-tuning optimiser steps per epoch (default 40)"
    )
    parser.add_argument(
        "--finetune-batch", type=int, default=32, help="crops per fine-tuning step, half fake (default 32)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--cache-dir", default=None, help="extraction cache root (default: the user cache dir)"
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the run stopped in the output's run folder (<out without .pt>.run/); "
        "refused when any training setting differs",
    )
    parser.add_argument(
        "--device",
        default="auto",
        help="where fine-tuning and the head train: auto (a CUDA GPU if there is one), cpu, cuda, cuda:N",
    )
    from stream.training.progress import add_progress_flags

    add_progress_flags(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dataclasses import asdict
    from pathlib import Path

    import torch

    from engine.devices import bf16_worthwhile, resolve_device
    from engine.finetune import FinetuneConfig
    from engine.snapshots import ResumeError, RunFolder
    from engine.training import HeadTrainingConfig
    from engine.weights import load_weights
    from stream.training.datasets import load_media_set
    from stream.training.extract import ExtractConfig, extract_media
    from stream.training.progress import show_progress
    from stream.training.recipe import TrainingOptions, check_cross_validation, train_detector

    torch.manual_seed(args.seed)
    extract_config = ExtractConfig()
    try:
        head_params = json.loads(args.head_params)
    except json.JSONDecodeError as error:
        raise SystemExit(f"--head-params must be a JSON object, got {args.head_params!r}: {error}") from error
    if args.finetune_low and args.finetune_from == "none":
        raise SystemExit(
            "deepwatch train: --finetune-low needs --finetune-from (e.g. block8), the top that trains with it"
        )
    try:
        options = TrainingOptions(
            head=HeadTrainingConfig(
                head_type=args.head,
                head_params=head_params,
                window_size=args.window,
                max_epochs=args.max_epochs,
                seed=args.seed,
            ),
            finetune=None
            if args.finetune_from == "none"
            else FinetuneConfig(
                train_from=args.finetune_from,
                train_low=args.finetune_low,
                max_epochs=args.finetune_epochs,
                steps_per_epoch=args.finetune_steps,
                batch_size=args.finetune_batch,
                seed=args.seed,
            ),
            pseudo_fakes=args.pseudo_fakes,
            cv_folds=args.cv_folds,
            cv_split=args.cv_split,
            threshold_fpr=args.threshold_fpr,
            max_crops=args.max_crops,
            crop=extract_config.crop,
            seed=args.seed,
        )
        device = resolve_device(args.device)
    except ValueError as error:
        raise SystemExit(f"deepwatch train: {error}") from error
    logger.info(
        "training on %s (bf16 autocast: %s)", device, "on" if bf16_worthwhile(device) else "off, fp32"
    )
    # What must not change between a run and its resumption (the device may).
    run_config = {
        "source": str(Path(args.source).resolve()),
        "weights": args.weights,
        "options": asdict(options),
    }
    try:
        run_path = Path(args.out).with_suffix(".run")
        if run_path == Path(args.out):
            run_path = run_path.with_name(run_path.name + ".run")
        run_folder = RunFolder(run_path, run_config, resume=args.resume)
    except ResumeError as error:
        raise SystemExit(f"deepwatch train: {error}") from error
    try:
        items = load_media_set(args.source)
        check_cross_validation(options, [item.label for item in items])
    except ValueError as error:
        raise SystemExit(f"deepwatch train: {error}") from error
    progress = show_progress(args)
    results = extract_media(
        items,
        extract_config,
        progress=progress,
        cache_dir=Path(args.cache_dir) if args.cache_dir else None,
    )
    base = load_weights(args.weights)
    checkpoint, figures = train_detector(
        results,
        base.state_dict,
        args.weights,
        base.weights_id,
        options,
        progress=progress,
        snapshots=run_folder,
        device=device,
    )
    checkpoint.save(args.out)
    if "video_auc" in figures:
        logger.info(
            "cross-validated video AUC %.3f (per method %s), window AUC %.3f, threshold %.3f at FPR %.2f",
            figures["video_auc"],
            {key: round(value, 3) for key, value in figures["video_auc_per_method"].items()},
            figures["window_auc"],
            checkpoint.threshold,
            checkpoint.threshold_fpr,
        )
    if args.report:
        Path(args.report).write_text(json.dumps(figures, indent=2, default=float))
    return 0
