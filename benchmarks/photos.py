"""Photo mode's cost per photo, by photo size and faces per photo (prints JSON with --json).

python benchmarks/photos.py [--sizes 640x480 2048x1536 4000x3000] [--faces 1 4] [--repeats 5] [--json]

Each photo is a grey canvas with copies of the astronaut's head (skimage's photo, a real face), each
a fifth of the photo's height, side by side; ``stream.live.stills.PhotoScorer`` scores it with the
shipped model and the default config, as ``deepwatch run PHOTO`` does. Decoding the file is not
included. Per size: the median milliseconds per photo over the repeats, per stage, and the faces
found (so a size where a face is missed shows).
"""

from __future__ import annotations

import argparse
import json
import statistics

import cv2
import numpy as np
import skimage.data

from stream.config import AppConfig
from stream.live.app import load_components
from stream.live.stills import PhotoScorer


def photo(width: int, height: int, faces: int) -> np.ndarray:
    canvas = np.full((height, width, 3), 120, np.uint8)
    side = height // 5
    head = cv2.resize(skimage.data.astronaut()[0:260, 120:380], (side, side), interpolation=cv2.INTER_AREA)
    gap = (width - faces * side) // (faces + 1)
    if gap < 0:
        raise ValueError(f"{faces} faces of {side} px do not fit in {width} px")
    top = (height - side) // 2
    for index in range(faces):
        left = gap + index * (side + gap)
        canvas[top : top + side, left : left + side] = head
    return canvas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["640x480", "2048x1536", "4000x3000"])
    parser.add_argument("--faces", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args()
    components = load_components(AppConfig())
    scorer = PhotoScorer(components)
    rows = []
    try:
        for size in args.sizes:
            width, height = (int(value) for value in size.lower().split("x"))
            for faces in args.faces:
                image = photo(width, height, faces)
                scorer.score(image, "warm-up")
                results = [scorer.score(image, f"{size}-{faces}") for _ in range(args.repeats)]
                stages = {
                    stage: round(statistics.median(r.timings_ms.get(stage, 0.0) for r in results), 1)
                    for stage in ("detect", "crop", "encode", "score", "total")
                }
                rows.append(
                    {
                        "size": size,
                        "faces_placed": faces,
                        "faces_found": len(results[-1].faces),
                        "ms_per_photo": stages.pop("total"),
                        "stage_ms": stages,
                    }
                )
                if not args.json:
                    print(rows[-1])
    finally:
        components.close()
    if args.json:
        print(json.dumps({"backend": components.encoder.backend_name, "repeats": args.repeats, "rows": rows}))


if __name__ == "__main__":
    main()
