"""``deepwatch train-identity``: the identity-evidence detector from real faces only (no fake video)."""

from __future__ import annotations

import argparse
import json
import logging
from typing import Any

logger = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "train-identity",
        help="train the identity-evidence detector on real faces and pseudo-fakes only",
        description=(
            "Make cross-person blends of real photos (a faces manifest: path,label,group with many "
            "people) and per-clip swaps of real videos, train the identity head on them, and "
            "calibrate its thresholds on held-out real faces. No fake video is used; measure the "
            "model on labelled videos with `deepwatch eval` and record the figure with "
            "--validated-auc."
        ),
    )
    parser.add_argument(
        "--faces", required=True, help="faces manifest .csv (real photos, one group per person)"
    )
    parser.add_argument(
        "--clips", default=None, help="manifest .csv or folder of videos; its real videos are used"
    )
    parser.add_argument(
        "--clip-set", default="", help="only clip rows whose manifest 'set' is this (e.g. real)"
    )
    parser.add_argument("--out", required=True, help="checkpoint file to write (.pt)")
    parser.add_argument("--report", default=None, help="write the training report to this JSON file")
    parser.add_argument(
        "--stages",
        default="projections",
        help="comma-separated stages to train: projections, sequence; 'none' = training-free score",
    )
    parser.add_argument("--photos", type=int, default=0, help="photos to use at most (default 0 = all)")
    parser.add_argument("--steps", type=int, default=1000, help="projection training steps (default 1000)")
    parser.add_argument(
        "--contrastive-weight", type=float, default=1.0, help="weight of the contrastive loss (default 1)"
    )
    parser.add_argument(
        "--binary-weight",
        type=float,
        default=1.0,
        help="weight of the reals-versus-blends loss (default 1; 0 = learn from real photos alone)",
    )
    parser.add_argument(
        "--sequence-steps", type=int, default=300, help="sequence training steps (default 300)"
    )
    parser.add_argument("--source-faces", type=int, default=40, help="people swapped into clips (default 40)")
    parser.add_argument(
        "--weights", default="casia-webface", help="encoder base weights (default casia-webface)"
    )
    parser.add_argument("--backend", default="auto", help="encoder backend (default auto)")
    parser.add_argument(
        "--validated-auc", type=float, default=float("nan"), help="AUC measured by deepwatch eval"
    )
    parser.add_argument(
        "--auc-protocol", default="not validated", help="what --validated-auc was measured on"
    )
    parser.add_argument("--cache-dir", default=None, help="cache root (default: the user cache dir)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the pseudo-fakes and the split")
    from stream.training.progress import add_progress_flags

    add_progress_flags(parser)
    parser.set_defaults(func=run)


def _stages(text: str) -> tuple[str, ...]:
    from stream.training.identity_recipe import STAGES

    if text.strip() == "none":
        return ()
    stages = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [stage for stage in stages if stage not in STAGES]
    if unknown:
        raise SystemExit(
            f"deepwatch train-identity: --stages must be 'none' or among {', '.join(STAGES)}, got {unknown}"
        )
    return stages


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import numpy as np

    from engine import EncoderConfig, encoder_from_config
    from engine.evidence import EvidenceEncoder
    from stream.training.datasets import load_media_set
    from stream.training.evidence_data import (
        ClipEvidence,
        PhotoSettings,
        clip_evidence,
        photo_evidence,
        source_faces,
    )
    from stream.training.extract import ExtractConfig, cache_root, extract_media
    from stream.training.identity import ProjectionTraining, SequenceTraining
    from stream.training.identity_recipe import IdentityRecipe, train_identity
    from stream.training.progress import show_progress

    stages = _stages(args.stages)
    try:
        recipe = IdentityRecipe(
            stages=stages,
            projection=ProjectionTraining(
                steps=args.steps,
                contrastive_weight=args.contrastive_weight,
                binary_weight=args.binary_weight,
                seed=args.seed,
            ),
            sequence=SequenceTraining(steps=args.sequence_steps, seed=args.seed),
            seed=args.seed,
        )
        settings = PhotoSettings(limit=args.photos, seed=args.seed)
        faces = load_media_set(args.faces)
        clips = load_media_set(args.clips) if args.clips else []
    except ValueError as error:
        raise SystemExit(f"deepwatch train-identity: {error}") from error
    progress = show_progress(args)
    cache = Path(args.cache_dir) if args.cache_dir else cache_root()
    base = encoder_from_config(EncoderConfig(weights=args.weights, backend=args.backend))
    with EvidenceEncoder(base) as encoder:
        try:
            photos = photo_evidence(faces, encoder, cache / "identity", settings, progress=progress)
        except ValueError as error:
            raise SystemExit(f"deepwatch train-identity: {error}") from error
        real_clips = [
            item
            for item in clips
            if item.kind == "video" and item.label == 0 and (not args.clip_set or item.split == args.clip_set)
        ]
        clip_set = ClipEvidence([], np.zeros(0, np.int64), [], [])
        if real_clips:
            # Faces of the clips come from the live per-frame step, at twice the head's rate.
            extracted = extract_media(
                real_clips,
                ExtractConfig(sample_rate_hz=2 * recipe.sample_rate_hz),
                progress=progress,
                cache_dir=cache,
            )
            people = source_faces(faces, args.source_faces, args.seed)
            clip_set = clip_evidence(
                [(result.item, result.faces) for result in extracted if not result.faces.empty],
                people,
                encoder,
                seed=args.seed,
                progress=progress,
                cache_dir=cache / "identity" / "clips",
            )
        weights_id = base.weights_id
    if len(set(clip_set.groups)) < 2 and "sequence" in stages:
        raise SystemExit(
            "deepwatch train-identity: the sequence stage needs real clips of 2 or more groups (--clips)"
        )
    try:
        checkpoint, report = train_identity(
            photos,
            clip_set if clip_set.features else _photo_clips(photos),
            recipe,
            encoder_weights=args.weights,
            encoder_weights_id=weights_id,
            validated_auc=args.validated_auc,
            auc_protocol=args.auc_protocol,
        )
    except ValueError as error:
        raise SystemExit(f"deepwatch train-identity: {error}") from error
    checkpoint.save(args.out)
    report["checkpoint"] = str(args.out)
    if args.report:
        Path(args.report).write_text(json.dumps(report, indent=2, default=str))
    calibration = report["calibration"]
    print(
        f"wrote {args.out}: {report['photos']['used']} photos ({report['photos']['unreadable']} unreadable, "
        f"{report['photos']['no_face']} without a usable face), {len(clip_set.features)} clip versions; "
        f"thresholds at 5 % false alarms: window {calibration['window']['0.05']:.3f}, "
        f"track {calibration['track']['0.05']:.3f}; held-out pseudo-fake AUC "
        f"{report['held_out_pseudo_fake_auc']:.3f}"
    )
    return 0


def _photo_clips(photos: Any) -> Any:
    """Without clips, each photo pair stands in as a one-sample 'clip' (real and its blend)."""
    import numpy as np

    from stream.training.evidence_data import ClipEvidence

    features = [row[None] for row in photos.real] + [row[None] for row in photos.fake]
    labels = np.r_[np.zeros(len(photos.real), np.int64), np.ones(len(photos.fake), np.int64)]
    groups = [str(group) for group in photos.groups] * 2
    names = [f"photo:{group}" for group in groups]
    return ClipEvidence(features, labels, names, groups)
