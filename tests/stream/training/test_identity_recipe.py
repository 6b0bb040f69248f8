"""The identity recipe: group split, calibration on held-out reals, and train -> eval on real photos."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from engine.checkpoint import load_checkpoint, open_encoder
from engine.evidence import EvidenceEncoder
from stream.cli import main
from stream.training.evidence_data import ClipEvidence, PhotoEvidence
from stream.training.identity import ProjectionTraining, SequenceTraining
from stream.training.identity_recipe import (
    IdentityRecipe,
    fairness_group,
    split_groups,
    split_photo_groups,
    train_identity,
)


def test_split_keeps_each_group_on_one_side() -> None:
    groups = [f"p{index % 10}" for index in range(50)]
    held = split_groups(groups, 0.3, seed=1)
    held_groups = {g for g, h in zip(groups, held, strict=True) if h}
    kept_groups = {g for g, h in zip(groups, held, strict=True) if not h}
    assert held_groups and kept_groups and not held_groups & kept_groups
    assert len(held_groups) == 3
    assert np.array_equal(held, split_groups(groups, 0.3, seed=1))
    with pytest.raises(ValueError, match="at least 2 groups"):
        split_groups(["only"] * 4, 0.5, seed=0)


def test_photo_split_holds_out_enough_of_a_rare_kind_of_face() -> None:
    common = [f"aaf:{index:05d}" for index in range(400)]
    rare = [f"utkface:{20 + index}_0_1_2017011{index:04d}" for index in range(30)]
    pairs = [f"amfd:{index}" for index in range(6) for _ in range(2)]
    groups = common + rare + pairs
    assert fairness_group(rare[0]) == "utkface:black" and fairness_group(pairs[0]) == "amfd"
    assert fairness_group("utkface:noracefield") == "utkface:unlabelled"
    assert fairness_group("p7") == fairness_group("p8") == "photos"
    held = split_photo_groups(groups, 0.25, seed=0)
    # The common kind: a quarter of its people. The rare one: half of its 30 people (its own
    # thresholds need faces), not a quarter. AMFD: half of its 6 people, both photos of each.
    assert held[:400].sum() == 100
    assert held[400:430].sum() == 15
    assert held[430:].sum() == 6
    assert all(held[430 + 2 * person] == held[431 + 2 * person] for person in range(6))
    assert np.array_equal(held, split_photo_groups(groups, 0.25, seed=0))


def unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=-1, keepdims=True)


def synthetic_evidence(rng: np.random.Generator, people: int) -> tuple[PhotoEvidence, ClipEvidence]:
    """Reals: inner and outer of one random identity; fakes: inner of another identity."""
    identity = unit(rng.normal(size=(people, 512)))
    other = unit(rng.normal(size=(people, 512)))
    noise = lambda: 0.02 * rng.normal(size=(people, 512))  # noqa: E731
    real = np.concatenate([unit(identity + noise()), unit(identity + noise())], axis=1).astype(np.float32)
    fake = np.concatenate([unit(other + noise()), unit(identity + noise())], axis=1).astype(np.float32)
    photos = PhotoEvidence(real, fake, np.array([f"p{i}" for i in range(people)]), {"used": people})
    features, labels, groups = [], [], []
    for clip in range(8):
        person = unit(rng.normal(size=512))
        swapped = unit(rng.normal(size=512))
        for label, inner in ((0, person), (1, swapped)):
            rows = [
                np.r_[unit(inner + 0.02 * rng.normal(size=512)), unit(person + 0.02 * rng.normal(size=512))]
                for _ in range(12)
            ]
            features.append(np.asarray(rows, np.float32))
            labels.append(label)
            groups.append(f"clip{clip}")
    return photos, ClipEvidence(features, np.asarray(labels), [f"c{i}" for i in range(len(labels))], groups)


@pytest.mark.parametrize("stages", [(), ("projections",), ("projections", "sequence")])
def test_training_and_calibration_on_synthetic_evidence(stages: tuple[str, ...]) -> None:
    photos, clips = synthetic_evidence(np.random.default_rng(0), people=200)
    recipe = IdentityRecipe(
        stages=stages, projection=ProjectionTraining(steps=300), sequence=SequenceTraining(steps=100)
    )
    checkpoint, report = train_identity(photos, clips, recipe, "casia-webface", "casia-webface@test")
    assert checkpoint.head_type == "identity" and checkpoint.window_size == 8
    calibration = checkpoint.calibration
    assert calibration is not None
    # Held-out reals: 25 % of 200 photo people plus the real clips of 2 of 8 groups.
    assert report["photos"]["held_out"] == 50 and report["clips"]["real_held_out"] == 2
    assert calibration.real_tracks == 50 + 2
    assert calibration.window[0.01] >= calibration.window[0.05]
    assert calibration.track[0.01] >= calibration.track[0.05] >= calibration.window[0.05]
    assert checkpoint.threshold == calibration.track[0.05]
    # The synthetic swaps disagree inside/outside: every stage separates the held-out clips.
    assert report["held_out_pseudo_fake_auc"] >= 0.9
    assert math.isnan(calibration.auc) and calibration.auc_protocol == "not validated"


@pytest.mark.slow
def test_train_identity_then_eval_on_real_photos(data_dir: Path, tmp_path: Path) -> None:
    faces = data_dir / "faces"
    rows = [
        row for row in csv.DictReader(open(faces / "manifest.csv")) if row["path"].startswith("real/aaf/")
    ][:14]
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    manifest = tmp_path / "faces.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "kind", "group", "source"])
        for row in rows:
            writer.writerow([str(faces / row["path"]), "real", "image", row["group"], row["source"]])
        writer.writerow([str(tmp_path / "broken.jpg"), "real", "image", "broken", "test"])
    out, report_path = tmp_path / "identity.pt", tmp_path / "report.json"
    args = ["train-identity", "--faces", str(manifest), "--out", str(out), "--report", str(report_path)]
    args += ["--steps", "30", "--cache-dir", str(tmp_path / "cache"), "--no-progress"]
    assert main(args) == 0
    report = json.loads(report_path.read_text())
    assert report["photos"]["unreadable"] == 1
    assert report["photos"]["used"] + report["photos"]["no_face"] == 14 - 1  # the first only joins the pool
    checkpoint = load_checkpoint(out)
    assert checkpoint.head_type == "identity" and checkpoint.calibration is not None
    assert checkpoint.crop is not None and checkpoint.crop.size_px == 160
    encoder = open_encoder(checkpoint)
    try:
        assert isinstance(encoder, EvidenceEncoder)
    finally:
        encoder.close()
    # The same run again reads every photo chunk from the cache (resumable) and gives the same model.
    assert main([*args[:4], str(tmp_path / "again.pt"), *args[7:]]) == 0
    again = load_checkpoint(tmp_path / "again.pt")
    for name, value in checkpoint.head_state.items():
        assert np.array_equal(value.numpy(), again.head_state[name].numpy()), name
    # Eval on the DFDC face crops of dev_images (never trained on): a real report with both classes.
    eval_report = tmp_path / "eval.json"
    eval_args = ["eval", "--manifest", str(data_dir / "manifest.csv"), "--checkpoint", str(out), "--images"]
    eval_args += [
        "--split",
        "dev",
        "--report",
        str(eval_report),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--no-progress",
    ]
    manifest_rows = [row for row in csv.DictReader(open(data_dir / "manifest.csv")) if row["kind"] == "image"]
    small = tmp_path / "dev_images.csv"
    with small.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(manifest_rows[0]))
        writer.writeheader()
        for row in manifest_rows:
            writer.writerow({**row, "path": str(data_dir / row["path"])})
    eval_args[2] = str(small)
    assert main(eval_args) == 0
    figures = json.loads(eval_report.read_text())
    assert figures["video"]["real"] + figures["video"]["fake"] + len(figures["unscored"]) == len(
        manifest_rows
    )
