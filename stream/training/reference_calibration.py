"""Reference thresholds for enrolment (``engine.reference``), set on genuine pairs of real faces only.

Genuine comparisons (the enrolled person is the one on screen), from the training data:

- American Multiracial Face Database: the neutral photo (``N*``) enrolled, the same person's
  smiling photo (``S*``) on screen; one "window" of one sample per person;
- ``real/`` clips: the clip's first sampled frame enrolled (one still, as a photo would be), then
  every later non-overlapping window of the checkpoint's size from the same face track.

Both pairings come from one session (same light, hair and clothes), so a reference photo taken on
another day matches less well than these: expect more genuine faces to fail than the stated rate.

What the thresholds do is measured on (``measured`` in the checkpoint and the report):

- impersonation pseudo-fakes: person B's smiling face pasted onto person A's neutral photo with
  the cross-person blend of ``stream.training.blends``, B enrolled (B's smile is also B's genuine
  sample above, so this row is not held out from calibration);
- other people: A's smiling photo with B enrolled;
- with ``--dev-manifest``: the DeepFaceLive dev pairs (``dfl_*_left`` real, ``_right`` the live
  swap of the same scene), the left clip's first sampled frame enrolled (the operator, as a user
  would enrol the person at the start of a call); and every real dev video against its own
  first frame. No dev video sets any threshold.

Run: ``python -m stream.training.reference_calibration --faces ../shared/data/faces/manifest.csv
--clips ../shared/data/manifest.csv --dev-manifest ../shared/data/manifest.csv --out model.pt``
(the default checkpoint when ``--checkpoint`` is not given).
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from engine.checkpoint import ScorerCheckpoint, load_checkpoint, open_encoder
from engine.config import EncoderConfig
from engine.evidence import identity_disagreement
from engine.metrics import roc_auc
from engine.reference import VERDICT_RATE, Reference, ReferenceThresholds, calibrate_reference
from stream.training import blends
from stream.training.datasets import MediaItem, load_manifest
from stream.training.evidence_data import (
    PhotoSettings,
    aligned_crop,
    default_detector,
    largest_face,
    read_photo,
)
from stream.training.extract import ExtractConfig, crop_config, extract_media
from tracking.config import CropConfig

logger = logging.getLogger(__name__)

AMFD_SOURCE = "RealityBending/FakeFace"
# AMFD file names: N (neutral) or S (smiling), F/M, then the person's number.
_AMFD_NAME = re.compile(r"^(?P<pose>[NS])[FM]-(?P<person>\d+)$")


@dataclass
class Comparison:
    """Window similarities to a reference: one row per window, with what it is."""

    inner: list[float]
    outer: list[float]
    labels: list[str]

    def add(self, inner: float, outer: float, label: str) -> None:
        self.inner.append(float(inner))
        self.outer.append(float(outer))
        self.labels.append(label)


def _empty() -> Comparison:
    return Comparison([], [], [])


def amfd_pairs(items: Sequence[MediaItem]) -> dict[str, dict[str, MediaItem]]:
    """person -> {"N": item, "S": item} for the AMFD people with both photos."""
    people: dict[str, dict[str, MediaItem]] = {}
    for item in items:
        match = _AMFD_NAME.match(item.path.stem)
        if item.source == AMFD_SOURCE and item.label == 0 and match:
            people.setdefault(match["person"], {})[match["pose"]] = item
    return {person: poses for person, poses in sorted(people.items()) if set(poses) == {"N", "S"}}


def _photo_face(
    item: MediaItem, detector: Any, settings: PhotoSettings
) -> tuple[np.ndarray, np.ndarray] | None:
    image = read_photo(item, settings)
    if image is None:
        return None
    marks = largest_face(detector, image)
    return None if marks is None else (image, marks)


def photo_comparisons(
    people: dict[str, dict[str, MediaItem]], detector: Any, encoder: Any, crop: CropConfig, seed: int
) -> tuple[Comparison, Comparison, Comparison]:
    """(genuine, impersonation, other) comparisons of the AMFD people (see the module docstring)."""
    settings = PhotoSettings(crop=crop)
    faces: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    for person, poses in people.items():
        found = {pose: _photo_face(item, detector, settings) for pose, item in poses.items()}
        if all(face is not None for face in found.values()):
            faces[person] = {pose: face for pose, face in found.items() if face is not None}
    names = sorted(faces)
    if len(names) < 2:
        raise ValueError(f"reference calibration needs AMFD photos of at least 2 people, found {len(names)}")

    def features(image: np.ndarray, marks: np.ndarray) -> np.ndarray:
        return np.asarray(encoder.encode(aligned_crop(image, marks, crop)[None]), np.float32)

    embedded = {
        person: {pose: features(*face) for pose, face in poses.items()} for person, poses in faces.items()
    }
    genuine, attack, other = _empty(), _empty(), _empty()
    rng = np.random.default_rng(seed)
    for index, enrolled in enumerate(names):
        reference = Reference.from_features(enrolled, embedded[enrolled]["N"])
        inner, outer = reference.similarities(embedded[enrolled]["S"])
        genuine.add(inner[0], outer[0], f"amfd:{enrolled}")
        head = names[(index + 1 + int(rng.integers(len(names) - 1))) % len(names)]
        inner, outer = reference.similarities(embedded[head]["S"])
        other.add(inner[0], outer[0], f"amfd:{head} as {enrolled}")
        target, target_marks = faces[head]["N"]
        source, source_marks = faces[enrolled]["S"]
        fake, _ = blends.cross_person_blend(
            target, target_marks, source, source_marks, blends.sample_cross_parameters(rng)
        )
        marks = largest_face(detector, fake)
        if marks is None:
            continue
        inner, outer = reference.similarities(features(fake, marks))
        attack.add(inner[0], outer[0], f"amfd:{enrolled} face on {head}")
    return genuine, attack, other


def clip_comparisons(features: np.ndarray, window_size: int, label: str, into: Comparison) -> None:
    """Enrol the first row of a track's T x 1024 features; add each later non-overlapping window."""
    if len(features) < 1 + window_size:
        return
    reference = Reference.from_features(label, features[:1])
    inner, outer = reference.similarities(features[1:])
    for start in range(0, len(inner) - window_size + 1, window_size):
        into.add(inner[start : start + window_size].mean(), outer[start : start + window_size].mean(), label)


def _track_features(result: Any) -> np.ndarray | None:
    if result.embeddings is None or result.faces.empty:
        return None
    indices = result.faces.primary_track()
    return None if len(indices) == 0 else np.asarray(result.embeddings[indices], np.float32)


def verdict_counts(
    thresholds: ReferenceThresholds, comparison: Comparison, rate: float = VERDICT_RATE
) -> dict[str, Any]:
    verdicts = [
        thresholds.verdict(i, o, rate) for i, o in zip(comparison.inner, comparison.outer, strict=True)
    ]
    counts = Counter(verdicts)
    total = len(verdicts)
    return {
        "windows": total,
        "verdicts": dict(sorted(counts.items())),
        "match_rate": round(counts["match"] / total, 4) if total else None,
    }


def mismatch(thresholds: ReferenceThresholds, inner: np.ndarray, outer: np.ndarray) -> np.ndarray:
    """How far the worse part falls below its 1 % threshold (> 0: not a match); for ROC curves."""
    return np.maximum(thresholds.inner[VERDICT_RATE] - inner, thresholds.outer[VERDICT_RATE] - outer)


def dev_measurements(
    results: Sequence[Any], thresholds: ReferenceThresholds, window_size: int
) -> dict[str, Any]:
    """DeepFaceLive pairs with the operator enrolled, and every real dev video against itself."""
    by_name = {Path(result.item.name).stem: result for result in results}
    pairs = sorted(name[: -len("_left")] for name in by_name if name.endswith("_left"))
    pairs = [name for name in pairs if f"{name}_right" in by_name]
    real_self, left, right = _empty(), _empty(), _empty()
    video_scores: list[float] = []
    baseline_scores: list[float] = []
    video_labels: list[int] = []
    per_video: dict[str, dict[str, Any]] = {}
    for name in pairs:
        left_features = _track_features(by_name[f"{name}_left"])
        right_features = _track_features(by_name[f"{name}_right"])
        if left_features is None or right_features is None or len(left_features) < 1 + window_size:
            continue
        reference = Reference.from_features(name, left_features[:1])
        for label, features, into in ((0, left_features[1:], left), (1, right_features, right)):
            inner, outer = reference.similarities(features)
            windows = [
                (inner[s : s + window_size].mean(), outer[s : s + window_size].mean())
                for s in range(0, len(inner) - window_size + 1, window_size)
            ]
            for i, o in windows:
                into.add(i, o, name)
            if windows:
                window_array = np.asarray(windows)
                video_scores.append(
                    float(np.mean(mismatch(thresholds, window_array[:, 0], window_array[:, 1])))
                )
                # The same samples without a reference: the training-free identity score.
                baseline_scores.append(float(np.mean(identity_disagreement(features))))
                video_labels.append(label)
                verdicts = Counter(thresholds.verdict(i, o) for i, o in windows)
                per_video[f"{name}_{'right' if label else 'left'}"] = dict(verdicts)
    for result in results:
        track = _track_features(result)
        if result.item.label == 0 and track is not None:
            clip_comparisons(track, window_size, Path(result.item.name).stem, real_self)
    labels = np.asarray(video_labels)
    return {
        "dfl_pairs": len(pairs),
        "dfl_real_windows": verdict_counts(thresholds, left),
        "dfl_swap_windows": verdict_counts(thresholds, right),
        "dfl_video_auc": round(roc_auc(labels, np.asarray(video_scores)), 4)
        if len(set(video_labels)) == 2
        else None,
        "dfl_video_auc_without_reference": round(roc_auc(labels, np.asarray(baseline_scores)), 4)
        if len(set(video_labels)) == 2
        else None,
        "dfl_swaps_not_matching_by_majority": sum(
            1
            for name, verdicts in per_video.items()
            if name.endswith("_right") and verdicts.get("match", 0) * 2 < sum(verdicts.values())
        ),
        "dfl_reals_matching_by_majority": sum(
            1
            for name, verdicts in per_video.items()
            if name.endswith("_left") and verdicts.get("match", 0) * 2 > sum(verdicts.values())
        ),
        "dev_real_self_windows": verdict_counts(thresholds, real_self),
        "at_5_percent": {
            "dfl_real_windows": verdict_counts(thresholds, left, 0.05),
            "dfl_swap_windows": verdict_counts(thresholds, right, 0.05),
            "dev_real_self_windows": verdict_counts(thresholds, real_self, 0.05),
        },
        "per_video": per_video,
    }


def calibrate_checkpoint(
    checkpoint: ScorerCheckpoint,
    faces_manifest: Path,
    clips_manifest: Path | None,
    dev_manifest: Path | None,
    cache_dir: Path | None,
    seed: int = 0,
    progress: bool = True,
) -> tuple[ScorerCheckpoint, dict[str, Any]]:
    """The checkpoint with reference thresholds, and the report of what they do."""
    if checkpoint.crop is None:
        raise ValueError(f"{checkpoint.path} records no crop settings: re-save it with them first")
    crop = crop_config(checkpoint.crop)
    encoder = open_encoder(checkpoint, EncoderConfig(weights=checkpoint.encoder_weights))
    if getattr(encoder, "output_dim", 0) != 1024:
        encoder.close()
        raise ValueError(f"{checkpoint.path}: reference thresholds need a model on inner/outer evidence")
    window = checkpoint.window_size
    extract_config = ExtractConfig(sample_rate_hz=checkpoint.sample_rate_hz, crop=crop)
    try:
        genuine, attack, other = photo_comparisons(
            amfd_pairs(load_manifest(faces_manifest)), default_detector(), encoder, crop, seed
        )
        photo_genuine = len(genuine.inner)
        if clips_manifest is not None:
            clips = [item for item in load_manifest(clips_manifest) if item.name.startswith("real/")]
            for result in extract_media(
                clips, extract_config, encoder=encoder, progress=progress, cache_dir=cache_dir
            ):
                features = _track_features(result)
                if features is not None:
                    clip_comparisons(features, window, Path(result.item.name).stem, genuine)
        dev_results = None
        if dev_manifest is not None:
            dev = [item for item in load_manifest(dev_manifest) if item.name.startswith("dev/")]
            dev_results = extract_media(
                dev, extract_config, encoder=encoder, progress=progress, cache_dir=cache_dir
            )
    finally:
        encoder.close()
    protocol = (
        f"genuine pairs of real faces only: {photo_genuine} AMFD people (neutral photo enrolled, smiling "
        f"photo shown) and {len(genuine.inner) - photo_genuine} windows of {window} samples from "
        "real/ clips (first frame enrolled); same-session pairs"
    )
    thresholds = calibrate_reference(genuine.inner, genuine.outer, protocol, encoder_precision="fp32")
    measured: dict[str, Any] = {
        "genuine_in_sample": verdict_counts(thresholds, genuine),
        "amfd_impersonation": verdict_counts(thresholds, attack),
        "amfd_other_person": verdict_counts(thresholds, other),
        "at_5_percent": {
            "genuine_in_sample": verdict_counts(thresholds, genuine, 0.05),
            "amfd_impersonation": verdict_counts(thresholds, attack, 0.05),
            "amfd_other_person": verdict_counts(thresholds, other, 0.05),
        },
    }
    if attack.inner:
        scores = np.r_[
            mismatch(
                thresholds,
                np.asarray(genuine.inner[:photo_genuine]),
                np.asarray(genuine.outer[:photo_genuine]),
            ),
            mismatch(thresholds, np.asarray(attack.inner), np.asarray(attack.outer)),
        ]
        labels = np.r_[np.zeros(photo_genuine), np.ones(len(attack.inner))]
        measured["amfd_impersonation_auc"] = round(roc_auc(labels, scores), 4)
    thresholds = replace(thresholds, measured=measured)
    report: dict[str, Any] = {"thresholds": thresholds.to_dict()}
    if dev_results is not None:
        report["dev"] = dev_measurements(dev_results, thresholds, window)
    return replace(checkpoint, reference=thresholds), report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", help="checkpoint to calibrate (default: the shipped model)")
    parser.add_argument("--faces", type=Path, required=True, help="faces/manifest.csv (the AMFD pairs)")
    parser.add_argument("--clips", type=Path, help="manifest.csv whose real/ clips add genuine windows")
    parser.add_argument("--dev-manifest", type=Path, help="manifest.csv whose dev/ videos are measured")
    parser.add_argument("--cache-dir", type=Path, help="extraction cache (default: the user cache)")
    parser.add_argument("--out", type=Path, required=True, help="where to write the calibrated checkpoint")
    parser.add_argument("--report", type=Path, help="write the measurements as JSON here")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    checkpoint = load_checkpoint(args.checkpoint)
    calibrated, report = calibrate_checkpoint(
        checkpoint,
        args.faces,
        args.clips,
        args.dev_manifest,
        args.cache_dir,
        args.seed,
        progress=sys.stderr.isatty(),
    )
    calibrated.save(args.out)
    text = json.dumps(report, indent=1)
    if args.report:
        args.report.write_text(text)
    summary = {key: value for key, value in report.get("dev", {}).items() if key != "per_video"}
    print(json.dumps({"thresholds": report["thresholds"], "dev": summary}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
