"""Per-update cost of the streaming SequenceScorer with the shipped head (prints figures, asserts nothing).

python benchmarks/scorer.py [--checkpoint PATH] [--tracks 1 4 16] [--updates 200] [--threads 1]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from engine.checkpoint import load_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--tracks", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--updates", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    checkpoint = load_checkpoint(args.checkpoint)
    rng = np.random.default_rng(0)
    print(
        f"head {checkpoint.head_type} {checkpoint.head_params}, "
        f"window {checkpoint.window_size}, threads {args.threads}"
    )
    for tracks in args.tracks:
        scorer = checkpoint.build_scorer()
        embeddings = rng.normal(size=(tracks, 512)).astype(np.float32)
        embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
        period = 1.0 / checkpoint.sample_rate_hz
        for step in range(checkpoint.window_size):  # fill the windows first
            scorer.update_many([(t, embeddings[t], step * period) for t in range(tracks)])
        started = time.perf_counter()
        for step in range(args.updates):
            timestamp_s = (checkpoint.window_size + step) * period
            scorer.update_many([(t, embeddings[t], timestamp_s) for t in range(tracks)])
        elapsed = time.perf_counter() - started
        print(
            f"{tracks:3d} tracks: {1000 * elapsed / args.updates:7.2f} ms per batched update "
            f"({1000 * elapsed / args.updates / tracks:6.2f} ms per track)"
        )


if __name__ == "__main__":
    main()
