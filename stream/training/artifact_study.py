"""Why blended-photo detectors invert on DeepFaceLive: inner-face statistics of swaps and pseudo-fakes.

``python -m stream.training.artifact_study MANIFEST FACES_MANIFEST [--photos N] [--json OUT]``

For every DeepFaceLive dev pair (``dfl_*_left`` real, ``dfl_*_right`` the live swap of the same
scene) and for real photos with their cross-person and self-blended pseudo-fakes, it measures on
the live aligned 160 px crops, inner face (the ellipse over eyes, nose and mouth) against the ring
around it (cheeks, brow, jaw line):

- ``lap_ratio``: mean |Laplacian| inside / in the ring (is the face crisper than its surroundings?);
- ``hf_ratio``: the same for the residual of a 5x5 Gaussian blur;
- ``dL``, ``da``, ``db``: Lab mean inside minus mean in the ring (lighting and colour mismatch);
- ``std_ratio``: Lab lightness spread inside / in the ring (contrast).

Each line of the result gives the median for reals and fakes and how often the fake is higher
than its real: a cue is usable only if it points the same way for the pseudo-fakes and the real
swaps. Crops are the live pipeline's (``stream.training.extract``); nothing is written but the JSON.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from stream.training import blends
from stream.training.datasets import MediaItem, load_media_set
from stream.training.extract import ExtractConfig, extract_media
from tracking.config import CropConfig, DetectorConfig

_YY, _XX = np.mgrid[0:160, 0:160]
# The ellipse of engine.evidence's outer crop (centre 79.5, 90; half-axes 38, 50), in its units.
_ELLIPSE = ((_XX - 79.5) / 38.0) ** 2 + ((_YY - 90.0) / 50.0) ** 2
INNER = _ELLIPSE <= 0.8
RING = (_ELLIPSE > 1.1) & (_ELLIPSE <= 1.8)
STATISTICS = ("lap_ratio", "hf_ratio", "dL", "da", "db", "std_ratio")


def crop_statistics(crop: np.ndarray) -> dict[str, float]:
    """The statistics above for one 160 x 160 x 3 uint8 aligned crop (black padding ignored)."""
    grey = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY).astype(np.float32)
    valid = grey > 2
    inner, ring = INNER & valid, RING & valid
    if inner.sum() < 50 or ring.sum() < 50:
        raise ValueError("the crop's face or ring is mostly outside the frame")
    laplacian = np.abs(cv2.Laplacian(grey, cv2.CV_32F, ksize=3))
    residual = np.abs(grey - cv2.GaussianBlur(grey, (5, 5), 0))
    lab = cv2.cvtColor(crop, cv2.COLOR_RGB2LAB).astype(np.float32)
    return {
        "lap_ratio": float(laplacian[inner].mean() / (laplacian[ring].mean() + 1e-3)),
        "hf_ratio": float(residual[inner].mean() / (residual[ring].mean() + 1e-3)),
        "dL": float(lab[..., 0][inner].mean() - lab[..., 0][ring].mean()),
        "da": float(lab[..., 1][inner].mean() - lab[..., 1][ring].mean()),
        "db": float(lab[..., 2][inner].mean() - lab[..., 2][ring].mean()),
        "std_ratio": float(lab[..., 0][inner].std() / (lab[..., 0][ring].std() + 1e-3)),
    }


def median_statistics(crops: np.ndarray) -> dict[str, float] | None:
    """Median of each statistic over the crops that have a face and a ring in the frame."""
    rows = []
    for crop in crops:
        try:
            rows.append(crop_statistics(crop))
        except ValueError:
            continue
    if not rows:
        return None
    return {name: float(np.median([row[name] for row in rows])) for name in STATISTICS}


def compare(real: Sequence[dict[str, float]], fake: Sequence[dict[str, float]]) -> dict[str, dict[str, Any]]:
    """Per statistic: medians and how often the fake is higher than its paired real."""
    out = {}
    for name in STATISTICS:
        real_values = np.array([row[name] for row in real])
        fake_values = np.array([row[name] for row in fake])
        out[name] = {
            "real_median": round(float(np.median(real_values)), 3),
            "fake_median": round(float(np.median(fake_values)), 3),
            "fake_higher": f"{int((fake_values > real_values).sum())}/{len(real_values)}",
        }
    return out


def deepfacelive_pairs(items: Sequence[MediaItem], cache_dir: Path | None) -> dict[str, Any]:
    """Statistics of the DeepFaceLive left (real) / right (swap) dev pairs, primary track each."""
    by_name = {item.name: item for item in items}
    pairs = [
        (item, by_name[item.name.replace("/real/", "/fake/").replace("_left", "_right")])
        for item in items
        if "/dfl_" in item.name
        and item.name.endswith("_left.mp4")
        and item.name.replace("/real/", "/fake/").replace("_left", "_right") in by_name
    ]
    results = {
        result.item.name: result
        for result in extract_media(
            [item for pair in pairs for item in pair], ExtractConfig(), progress=False, cache_dir=cache_dir
        )
    }
    real_rows, fake_rows = [], []
    for real_item, fake_item in pairs:
        real_result, fake_result = results.get(real_item.name), results.get(fake_item.name)
        if real_result is None or fake_result is None or real_result.faces.empty or fake_result.faces.empty:
            continue
        real_stats = median_statistics(real_result.faces.crops[real_result.faces.primary_track()])
        fake_stats = median_statistics(fake_result.faces.crops[fake_result.faces.primary_track()])
        if real_stats and fake_stats:
            real_rows.append(real_stats)
            fake_rows.append(fake_stats)
    return {"pairs": len(real_rows), **compare(real_rows, fake_rows)}


def photo_pseudo_fakes(items: Sequence[MediaItem], count: int, seed: int) -> dict[str, Any]:
    """Statistics of real photos against their cross-person blends and self-blends."""
    from stream.training.evidence_data import PhotoSettings, aligned_crop, largest_face, read_photo
    from tracking.detector import FaceDetector

    settings = PhotoSettings()
    photos = [
        item
        for item in items
        if item.kind == "image" and item.label == 0 and item.source not in settings.tight_crop_sources
    ]
    rng = np.random.default_rng(seed)
    detector = FaceDetector(DetectorConfig(max_side_px=None, min_face_size_px=30.0))
    crop = CropConfig()
    faces: list[tuple[np.ndarray, np.ndarray]] = []
    rows: dict[str, list[dict[str, float]]] = {"real": [], "cross": [], "self": []}
    for index in rng.permutation(len(photos)):
        if len(rows["real"]) >= count:
            break
        image = read_photo(photos[int(index)], settings)
        marks = None if image is None else largest_face(detector, image)
        if image is None or marks is None:
            continue
        faces.append((image, marks))
        if len(faces) < 2:
            continue
        source, source_marks = faces[int(rng.integers(len(faces) - 1))]
        cross, _ = blends.cross_person_blend(
            image, marks, source, source_marks, blends.sample_cross_parameters(rng)
        )
        self_blended, _ = blends.self_blend_frame(
            image, marks, blends.sample_self_blend_parameters(rng, marks)
        )
        made = {}
        for name, frame in (("real", image), ("cross", cross), ("self", self_blended)):
            compressed = blends.compress_frames([frame], blends.sample_compression(rng, video=False))[0]
            made[name] = median_statistics(aligned_crop(compressed, marks, crop)[None])
        if all(made.values()):
            for name, stats in made.items():
                rows[name].append(stats)  # type: ignore[arg-type]
    return {
        "photos": len(rows["real"]),
        "cross_person": compare(rows["real"], rows["cross"]),
        "self_blend": compare(rows["real"], rows["self"]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("manifest", help="the labelled dev videos (../shared/data/manifest.csv)")
    parser.add_argument("faces", help="the faces manifest (../shared/data/faces/manifest.csv)")
    parser.add_argument("--photos", type=int, default=300, help="photos to blend (default 300)")
    parser.add_argument("--cache-dir", default=None, help="extraction cache root")
    parser.add_argument("--json", default=None, help="also write the result here")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    result = {
        "deepfacelive": deepfacelive_pairs(
            load_media_set(args.manifest), Path(args.cache_dir) if args.cache_dir else None
        ),
        "photo_pseudo_fakes": photo_pseudo_fakes(load_media_set(args.faces), args.photos, args.seed),
    }
    text = json.dumps(result, indent=1)
    if args.json:
        Path(args.json).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
