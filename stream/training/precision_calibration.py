"""Thresholds of a checkpoint's own for another encoder precision (int8), on the same held-out reals.

An int8 encoder moves the embeddings a little, and with them p_fake, so thresholds set on fp32
embeddings do not hold their false-alarm rates at int8 (measured: white UTKFace faces 10.7 %
against 6.7 % at the 5 % window threshold). This re-runs the identity recipe's data path
(``deepwatch train-identity``: the same photos, pseudo-fakes, compression and split, all seeded)
with the encoder at ``--precision``, scores the held-out real photos and clips with the
checkpoint's *unchanged* head, and calibrates on them exactly as training did
(``identity_recipe.calibrate_head``). The result is stored beside the fp32 calibration
(``ScorerCheckpoint.precision_calibrations``); the live app uses the one that matches its encoder.

Run: ``python -m stream.training.precision_calibration --faces ../shared/data/faces/manifest.csv
--clips ../shared/data/manifest.csv --precision int8 --out model.pt`` (the shipped checkpoint
unless ``--checkpoint``; about 30 minutes on a 2-core CPU, cached per precision under
``--cache-dir``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from engine.calibration import Calibration
from engine.checkpoint import ScorerCheckpoint, load_checkpoint, open_encoder
from engine.config import EncoderConfig
from stream.calibration import with_calibration
from stream.training.datasets import load_media_set
from stream.training.evidence_data import PhotoSettings, clip_evidence, photo_evidence, source_faces
from stream.training.extract import ExtractConfig, cache_root, extract_media
from stream.training.identity_recipe import (
    IdentityRecipe,
    calibrate_head,
    fairness_group,
    split_groups,
    split_photo_groups,
)

logger = logging.getLogger(__name__)

# What ``deepwatch train-identity`` swaps into the clips by default (its --source-faces).
SOURCE_FACES = 40


def recipe_of(checkpoint: ScorerCheckpoint) -> IdentityRecipe:
    """The split and window settings the checkpoint was trained with (its training summary)."""
    settings = checkpoint.training_summary.get("settings")
    if not isinstance(settings, dict):
        raise ValueError(
            f"{checkpoint.path} records no identity recipe settings: it was not made by train-identity"
        )
    return IdentityRecipe(
        window_size=int(settings["window_size"]),
        sample_rate_hz=float(settings["sample_rate_hz"]),
        holdout_fraction=float(settings["holdout_fraction"]),
        seed=int(settings["seed"]),
    )


def calibrate_precision(
    checkpoint: ScorerCheckpoint,
    faces_manifest: Path,
    clips_manifest: Path | None,
    precision: str,
    cache_dir: Path,
    progress: bool = False,
) -> tuple[Calibration, dict[str, Any]]:
    """The checkpoint's head calibrated on held-out reals embedded at ``precision``."""
    recipe = recipe_of(checkpoint)
    faces = load_media_set(faces_manifest)
    clips = load_media_set(clips_manifest) if clips_manifest else []
    config = EncoderConfig(weights=checkpoint.encoder_weights, backend="onnxruntime", precision=precision)
    encoder = open_encoder(checkpoint, with_calibration(config))
    if encoder.precision != precision:
        encoder.close()
        raise ValueError(f"the encoder runs {encoder.precision}, not {precision}: nothing to calibrate")
    # The precision is not part of the encoder's weights id, so its features get a cache of their own.
    identity_cache = cache_dir / f"identity-{precision}"
    with encoder:
        photos = photo_evidence(
            faces, encoder, identity_cache, PhotoSettings(seed=recipe.seed), progress=progress
        )
        real_clips = [
            item for item in clips if item.kind == "video" and item.label == 0 and item.split == "real"
        ]
        extracted = extract_media(
            real_clips,
            ExtractConfig(sample_rate_hz=2 * recipe.sample_rate_hz),
            progress=progress,
            cache_dir=cache_dir,
        )
        clip_set = clip_evidence(
            [(result.item, result.faces) for result in extracted if not result.faces.empty],
            source_faces(faces, SOURCE_FACES, recipe.seed),
            encoder,
            seed=recipe.seed,
            progress=progress,
            cache_dir=identity_cache / "clips",
        )
    held_photos = split_photo_groups(photos.groups.tolist(), recipe.holdout_fraction, recipe.seed)
    held_clips = split_groups(clip_set.groups, recipe.holdout_fraction, recipe.seed)
    primary = checkpoint.calibration
    calibration = calibrate_head(
        checkpoint.build_head(),
        photos.real[held_photos],
        [fairness_group(group) for group in photos.groups[held_photos]],
        clip_set,
        held_clips,
        recipe,
        primary.auc if primary is not None else float("nan"),
        f"{primary.auc_protocol if primary is not None else 'not validated'}; thresholds re-set on the same "
        f"held-out reals embedded at {precision}",
    )
    calibration = replace(calibration, encoder_precision=precision)
    report = {
        "precision": precision,
        "held_out_photos": int(held_photos.sum()),
        "held_out_real_clips": int((held_clips & (clip_set.labels == 0)).sum()),
        "calibration": calibration.to_dict(),
        "fp32_calibration": None if primary is None else primary.to_dict(),
    }
    return calibration, report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", help="checkpoint to calibrate (default: the shipped model)")
    parser.add_argument(
        "--faces", type=Path, required=True, help="faces manifest .csv (as for train-identity)"
    )
    parser.add_argument("--clips", type=Path, help="manifest .csv whose real/ clips train-identity used")
    parser.add_argument("--precision", choices=("int8",), default="int8")
    parser.add_argument("--cache-dir", type=Path, help="cache root (default: the user cache dir)")
    parser.add_argument("--out", type=Path, required=True, help="where to write the checkpoint")
    parser.add_argument("--report", type=Path, help="write the thresholds and group rates as JSON here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    checkpoint = load_checkpoint(args.checkpoint)
    calibration, report = calibrate_precision(
        checkpoint,
        args.faces,
        args.clips,
        args.precision,
        args.cache_dir or cache_root(),
        progress=sys.stderr.isatty(),
    )
    checkpoint.with_precision_calibration(calibration).save(args.out)
    text = json.dumps(report, indent=1)
    if args.report:
        args.report.write_text(text)
    print(json.dumps({key: report[key] for key in ("precision", "held_out_photos", "held_out_real_clips")}))
    print(json.dumps({"window": calibration.window, "track": calibration.track}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
