"""``deepwatch extract``: videos -> face and embedding caches (resumable)."""

from __future__ import annotations

import argparse
import json
import logging
from typing import Any

logger = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "extract",
        help="detect, track, crop and encode the faces of labelled videos into the cache",
        description=(
            "Turn a manifest CSV (path,label,group), a Celeb-DF v2 folder or a folder with real/ and "
            "fake/ into per-video face caches (crops, timestamps, track ids, boxes) and embeddings. "
            "Finished videos are skipped, so an interrupted run resumes."
        ),
    )
    parser.add_argument("source", help="manifest .csv, Celeb-DF v2 folder, or folder with real/ and fake/")
    parser.add_argument(
        "--weights",
        default=None,
        help="encoder base weights (default: the checkpoint's, else casia-webface)",
    )
    parser.add_argument(
        "--checkpoint",
        default=None,
        help="encode with this scorer checkpoint's encoder (its base weights and fine-tuned layers)",
    )
    parser.add_argument(
        "--backend", default="auto", help="encoder backend: auto, torch, onnxruntime, tensorrt"
    )
    parser.add_argument("--no-encode", action="store_true", help="only detect, track and crop")
    parser.add_argument(
        "--images", action="store_true", help="also extract image rows (one sample per face in a photo)"
    )
    parser.add_argument(
        "--sample-rate-hz", type=float, default=8.0, help="face samples per second (default 8)"
    )
    parser.add_argument(
        "--max-samples", type=int, default=64, help="sampled frames per video at most (default 64)"
    )
    parser.add_argument("--cache-dir", default=None, help="cache root (default: the user cache dir)")
    parser.add_argument("--summary", default=None, help="write a JSON summary here")
    from stream.training.progress import add_progress_flags

    add_progress_flags(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import dataclasses
    from pathlib import Path

    import engine
    from stream.training.datasets import load_media_set
    from stream.training.extract import ExtractConfig, crop_config, describe, extract_media
    from stream.training.progress import show_progress

    try:
        items = load_media_set(args.source)
    except ValueError as error:
        raise SystemExit(f"deepwatch extract: {error}") from error
    checkpoint = engine.load_checkpoint(args.checkpoint) if args.checkpoint else None
    config = ExtractConfig(sample_rate_hz=args.sample_rate_hz, max_samples=args.max_samples)
    if checkpoint is not None and checkpoint.crop is not None:
        config = dataclasses.replace(config, crop=crop_config(checkpoint.crop))
    encoder, overrides = None, None
    if not args.no_encode and checkpoint is not None:
        weights = args.weights or checkpoint.encoder_weights
        encoder = engine.open_encoder(checkpoint, engine.EncoderConfig(weights=weights, backend=args.backend))
        overrides = checkpoint.encoder_overrides
    elif not args.no_encode:
        encoder = engine.load_encoder(weights=args.weights or "casia-webface", backend=args.backend)
    try:
        results = extract_media(
            items,
            config,
            encoder=encoder,
            encoder_overrides=overrides,
            progress=show_progress(args),
            cache_dir=Path(args.cache_dir) if args.cache_dir else None,
            include_images=args.images,
        )
    finally:
        if encoder is not None:
            encoder.close()
    summary = describe(results)
    summary["unreadable_files"] = [result.item.name for result in results if result.unreadable]
    logger.info("extract: %s", summary)
    if args.summary:
        Path(args.summary).write_text(json.dumps(summary, indent=2))
    return 0
