"""Face encoder throughput per backend and batch size.

    python benchmarks/encoder.py --json

prints a JSON list of {"backend", "batch", "crops_per_s", "crops_per_cpu_s"} (medians over
--repeats timed runs after one warm-up run) for batch 1, 4, 16 and 64 on torch and onnxruntime
(and tensorrt with --device cuda). Crops are random uint8 images; time covers ``encode`` end to
end (validation, standardisation, inference, normalisation). Without --json a table is printed.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time

import numpy as np
import torch

from engine.backends import BACKENDS, BackendRequest, EncoderBackend
from engine.backends.onnxruntime_backend import OnnxRuntimeBackend
from engine.encoder import InceptionResnetEncoder
from engine.inception_resnet_v1 import InceptionResnetV1
from engine.weights import cache_dir, load_weights


def build_encoder(
    backend: str, device: str, fp16: bool, max_batch: int, ort_threads: int
) -> InceptionResnetEncoder:
    loaded = load_weights("casia-webface")
    model = InceptionResnetV1().eval()
    model.load_state_dict(loaded.state_dict)
    request = BackendRequest(
        model=model,
        weights_digest=loaded.sha256,
        device=device,
        fp16=fp16,
        max_batch_size=max_batch,
        opt_batch_size=min(16, max_batch),
        cache_dir=cache_dir(),
    )
    runner: EncoderBackend
    if backend == "onnxruntime":
        runner = OnnxRuntimeBackend(request, intra_op_threads=ort_threads)
    else:
        runner = BACKENDS[backend](request)
    return InceptionResnetEncoder(runner, loaded.weights_id, max_batch)


def measure(encoder: InceptionResnetEncoder, batch: int, repeats: int) -> tuple[float, float]:
    """Median (crops per wall-clock second, crops per CPU second of this process).

    The second figure shows what the cores deliver when they are shared with other processes
    (wall-clock rates then fall, CPU-time rates much less)."""
    crops = np.random.default_rng(batch).integers(0, 256, (batch, 160, 160, 3), dtype=np.uint8)
    encoder.encode(crops)  # warm-up: lazy allocations, kernel selection
    wall_rates, cpu_rates = [], []
    for _ in range(repeats):
        wall_start, cpu_start = time.perf_counter(), time.process_time()
        encoder.encode(crops)
        wall_rates.append(batch / (time.perf_counter() - wall_start))
        cpu_rates.append(batch / max(time.process_time() - cpu_start, 1e-9))
    return statistics.median(wall_rates), statistics.median(cpu_rates)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    parser.add_argument(
        "--backends", nargs="+", default=None, help="default: torch onnxruntime (+tensorrt on cuda)"
    )
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 4, 16, 64])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per point (median reported)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--fp16", action="store_true")
    parser.add_argument(
        "--torch-threads", type=int, default=0, help="torch intra-op threads (0: torch default)"
    )
    parser.add_argument(
        "--ort-threads", type=int, default=0, help="onnxruntime intra-op threads (0: one per core)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    backends = args.backends or (["torch", "onnxruntime"] + (["tensorrt"] if args.device != "cpu" else []))
    results = []
    for backend in backends:
        if not BACKENDS[backend].is_available(args.device, args.fp16):
            print(
                f"skipping {backend}: needs {BACKENDS[backend].requirement(args.device, args.fp16)}",
                file=sys.stderr,
            )
            continue
        with build_encoder(backend, args.device, args.fp16, max(args.batches), args.ort_threads) as encoder:
            for batch in args.batches:
                rate, cpu_rate = measure(encoder, batch, args.repeats)
                results.append(
                    {
                        "backend": backend,
                        "batch": batch,
                        "crops_per_s": round(rate, 1),
                        "crops_per_cpu_s": round(cpu_rate, 1),
                    }
                )
                if not args.json:
                    print(
                        f"{backend:<12} batch {batch:>3}: {rate:8.1f} crops/s ({cpu_rate:.1f} per CPU s)",
                        flush=True,
                    )
    if args.json:
        print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
