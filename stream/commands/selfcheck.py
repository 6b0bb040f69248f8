"""``deepwatch selfcheck``: prove the installed face encoder works, with nothing outside the install.

It embeds the face of skimage's astronaut photo (bundled with scikit-image), variants of it
(mirrored, shifted, brighter, darker, zoomed) and crops without a face, and checks that the face
variants are far more similar to the face than the non-face crops are.
"""

from __future__ import annotations

import argparse
import sys

import cv2
import numpy as np

from engine.config import BACKEND_NAMES

EXIT_OK = 0
EXIT_FAILED = 1

# Face box (x0, y0, x1, y1) in skimage.data.astronaut(): MTCNN's box (181, 62, 268, 172) widened
# by facenet-pytorch's 20 px margin; fixed so the check needs no detector.
FACE_BOX = (172, 55, 277, 180)
NON_FACE_BOXES = {
    "background (top left)": (0, 0, 160, 160),
    "suit": (300, 300, 460, 460),
    "lower left": (0, 350, 160, 512),
    "top right": (400, 0, 512, 120),
}
# Measured with casia-webface: variants 0.92..0.98, non-faces below 0; these bounds leave wide room
# for other weights and backends while still failing on garbage embeddings (which score ~equal).
MIN_SAME_FACE_COSINE = 0.7
MIN_SEPARATION = 0.3


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "selfcheck",
        help="check the face encoder on a bundled photo (needs nothing outside the install)",
        description=(
            "Load the face encoder and embed the astronaut photo bundled with scikit-image: the face, "
            "variants of it and non-face crops. Prints the backend, weights id and similarities; exits "
            "non-zero unless face variants clearly separate from non-faces."
        ),
    )
    parser.add_argument("--weights", default="casia-webface", help="registry name or state dict file")
    parser.add_argument("--backend", default="auto", choices=BACKEND_NAMES, help="encoder backend")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--fp16", action="store_true", help="half precision (CUDA only)")
    parser.set_defaults(func=run)


def _crop(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    x0, y0, x1, y1 = box
    return cv2.resize(image[y0:y1, x0:x1], (160, 160), interpolation=cv2.INTER_AREA)


def _shifted(box: tuple[int, int, int, int], dx: int, dy: int) -> tuple[int, int, int, int]:
    return box[0] + dx, box[1] + dy, box[2] + dx, box[3] + dy


def build_crops() -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(the face, its variants by name, non-face crops by name), each 160 x 160 x 3 uint8 RGB."""
    from skimage import data

    image = data.astronaut()
    face = _crop(image, FACE_BOX)
    x0, y0, x1, y1 = FACE_BOX
    variants = {
        "mirrored": face[:, ::-1].copy(),
        "shifted +6 px": _crop(image, _shifted(FACE_BOX, 6, 6)),
        "shifted -6 px": _crop(image, _shifted(FACE_BOX, -6, -6)),
        "brighter x1.3": np.clip(face.astype(np.float32) * 1.3, 0, 255).round().astype(np.uint8),
        "darker x0.7": (face.astype(np.float32) * 0.7).round().astype(np.uint8),
        "zoomed out": _crop(image, (x0 - 10, y0 - 12, x1 + 10, y1 + 12)),
    }
    non_faces = {name: _crop(image, box) for name, box in NON_FACE_BOXES.items()}
    return face, variants, non_faces


def run(args: argparse.Namespace) -> int:
    from engine import BackendUnavailableError, EncoderConfig, WeightsError, encoder_from_config

    try:
        config = EncoderConfig(weights=args.weights, backend=args.backend, device=args.device, fp16=args.fp16)
        encoder = encoder_from_config(config)
    except (ValueError, WeightsError, BackendUnavailableError) as error:
        print(f"deepwatch selfcheck: {error}", file=sys.stderr)
        return EXIT_FAILED
    face, variants, non_faces = build_crops()
    with encoder:
        embeddings = encoder.encode(np.stack([face, *variants.values(), *non_faces.values()]))
        print(f"backend: {encoder.backend_name}")
        print(f"weights: {encoder.weights_id}")
    similarity = embeddings[1:] @ embeddings[0]
    same = dict(zip(variants, similarity[: len(variants)].tolist(), strict=True))
    other = dict(zip(non_faces, similarity[len(variants) :].tolist(), strict=True))
    print("cosine similarity to the astronaut's face:")
    for name, value in same.items():
        print(f"  same face, {name:<22} {value:+.3f}")
    for name, value in other.items():
        print(f"  no face,   {name:<22} {value:+.3f}")
    worst_same, best_other = min(same.values()), max(other.values())
    separation = worst_same - best_other
    passed = worst_same >= MIN_SAME_FACE_COSINE and separation >= MIN_SEPARATION
    print(
        f"lowest same-face {worst_same:+.3f} (need >= {MIN_SAME_FACE_COSINE}), highest non-face "
        f"{best_other:+.3f}, separation {separation:.3f} (need >= {MIN_SEPARATION}): "
        f"{'PASS' if passed else 'FAIL'}"
    )
    return EXIT_OK if passed else EXIT_FAILED
