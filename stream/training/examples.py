"""A picture of the pseudo-fakes: ``python -m stream.training.examples OUT.png [PHOTO ...]``.

Each row takes one target face and shows: the real crop, a cross-person blend and its mask, a
self-blend and its mask, and the cross-person blend after c40-like H.264. Without photos it uses
images that ship with scikit-image (the astronaut photograph as the target, faces of its LFW
subset as the swapped-in people), so the committed ``docs/pseudo_fakes.png`` holds no data set
frames. Every crop is the live pipeline's aligned 160 px crop.
"""

from __future__ import annotations

import argparse
import logging
from importlib import resources
from pathlib import Path

import cv2
import numpy as np

from stream.training import blends
from tracking.config import CropConfig, DetectorConfig
from tracking.crops import aligned_transform, warp_crop
from tracking.detector import FaceDetector

logger = logging.getLogger(__name__)

# LFW subset faces are 25 px grey squares: scaled up and padded so MTCNN finds them.
_LFW_SCALE_PX = 100
_LFW_PAD_PX = 30
COLUMNS = ("real", "cross-person", "mask", "self-blend", "mask", "cross + H.264 crf 38")


def _largest_face(detector: FaceDetector, image: np.ndarray) -> np.ndarray | None:
    faces = detector.detect(image)
    if not faces:
        return None
    best = max(faces, key=lambda f: float((f.box_xyxy[2] - f.box_xyxy[0]) * (f.box_xyxy[3] - f.box_xyxy[1])))
    return np.asarray(best.landmarks_5x2, np.float64)


def packaged_faces(count: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """The astronaut photograph and ``count`` LFW-subset faces (RGB), all from scikit-image."""
    from skimage import data

    lfw = np.load(str(resources.files("skimage") / "data" / "lfw_subset.npy"))
    sources = []
    for grey in lfw[: count * 7 : 7]:
        big = cv2.resize((grey * 255).astype(np.uint8), (_LFW_SCALE_PX,) * 2, interpolation=cv2.INTER_CUBIC)
        big = cv2.copyMakeBorder(big, *(_LFW_PAD_PX,) * 4, cv2.BORDER_REPLICATE)
        sources.append(np.stack([big] * 3, axis=-1))
    return np.ascontiguousarray(data.astronaut()), sources


def render_examples(
    targets: list[np.ndarray], sources: list[np.ndarray], rows: int, seed: int = 0
) -> np.ndarray:
    """The example grid as one H x W x 3 uint8 RGB image (``rows`` rows of ``COLUMNS``)."""
    detector = FaceDetector(DetectorConfig(max_side_px=None, min_face_size_px=20.0))
    crop = CropConfig()
    rng = np.random.default_rng(seed)
    marked_targets = [(image, _largest_face(detector, image)) for image in targets]
    marked_sources = [(image, _largest_face(detector, image)) for image in sources]
    usable_targets = [(image, marks) for image, marks in marked_targets if marks is not None]
    usable_sources = [(image, marks) for image, marks in marked_sources if marks is not None]
    if not usable_targets or not usable_sources:
        raise ValueError("no face found in the target or the source images")
    grid = []
    for row in range(rows):
        target, target_marks = usable_targets[row % len(usable_targets)]
        source, source_marks = usable_sources[row % len(usable_sources)]
        matrix = aligned_transform(target_marks, crop.size_px, crop.margin)
        if matrix is None:
            raise ValueError("degenerate landmarks in a target image")

        def cut(image: np.ndarray, matrix: np.ndarray = matrix) -> np.ndarray:
            return warp_crop(image, matrix, crop.size_px)

        def show_mask(mask: np.ndarray, matrix: np.ndarray = matrix) -> np.ndarray:
            warped = cv2.warpAffine(mask.astype(np.float32), matrix, (crop.size_px, crop.size_px))
            return np.repeat((np.clip(warped, 0, 1) * 255).astype(np.uint8)[..., None], 3, axis=2)

        cross, cross_mask = blends.cross_person_blend(
            target, target_marks, source, source_marks, blends.sample_cross_parameters(rng)
        )
        self_blended, self_mask = blends.self_blend_frame(
            target, target_marks, blends.sample_self_blend_parameters(rng, target_marks)
        )
        compressed = blends.compress_frames([cross], blends.Compression("h264", crf=38))[0]
        grid.append(
            np.concatenate(
                [
                    cut(target),
                    cut(cross),
                    show_mask(cross_mask),
                    cut(self_blended),
                    show_mask(self_mask),
                    cut(compressed),
                ],
                axis=1,
            )
        )
    body = np.concatenate(grid, axis=0)
    header = np.full((24, body.shape[1], 3), 255, np.uint8)
    for index, title in enumerate(COLUMNS):
        cv2.putText(
            header, title, (index * crop.size_px + 4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1
        )
    return np.concatenate([header, body], axis=0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="PNG to write")
    parser.add_argument("photos", nargs="*", type=Path, help="face photos (default: scikit-image's)")
    parser.add_argument("--rows", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.photos:
        images = []
        for path in args.photos:
            bgr = cv2.imread(str(path))
            if bgr is None:
                parser.error(f"cannot read image {path}")
            images.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        targets, sources = images, images[1:] + images[:1]
    else:
        astronaut, sources = packaged_faces(args.rows)
        targets = [astronaut]
    grid = render_examples(targets, sources, args.rows, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    print(f"wrote {args.out} ({grid.shape[1]} x {grid.shape[0]} px)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
