"""Face encoder throughput per backend and batch size.

    python benchmarks/encoder.py --json

prints a JSON list of {"backend", "precision", "batch", "crops_per_s", "crops_per_cpu_s"}
(medians over --repeats timed runs after one warm-up run) for batch 1, 4, 16 and 64 on torch and
onnxruntime fp32 and onnxruntime int8 (and tensorrt with --device cuda). Crops are random uint8
images; time covers ``encode`` end to end (validation, standardisation, inference,
normalisation). Without --json a table is printed.

The int8 model is built on first use from the cached calibration crops (``deepwatch weights
calibrate``), else from the real videos of $DEEPWATCH_DATA (default ../shared/data). With int8
and the data present, one more entry {"precision": "int8", "parity": ...} gives the min and
mean cosine of int8 to fp32 embeddings on MTCNN-aligned crops of the talking-head clips, and the
same-person vs different-person verification ROC AUC of all crop pairs with fp32 and with int8.
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
from engine.backends.int8 import cached_report
from engine.backends.onnxruntime_backend import OnnxRuntimeBackend
from engine.encoder import InceptionResnetEncoder
from engine.inception_resnet_v1 import InceptionResnetV1
from engine.metrics import roc_auc
from engine.weights import cache_dir, load_weights
from stream.training.calibration_crops import calibration_source, default_data_dir


def build_encoder(
    backend: str, device: str, fp16: bool, max_batch: int, ort_threads: int, precision: str = "fp32"
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
        precision=precision,
        calibration=calibration_source(),
    )
    runner: EncoderBackend
    if backend == "onnxruntime":
        runner = OnnxRuntimeBackend(request, intra_op_threads=ort_threads)
    else:
        runner = BACKENDS[backend](request)
    report = cached_report(request) if precision == "int8" else None
    return InceptionResnetEncoder(runner, loaded.weights_id, max_batch, precision, report)


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


def int8_parity(ort_threads: int) -> dict[str, object] | None:
    """int8 vs fp32 on aligned crops of the talking-head clips: embedding cosine and the
    verification AUC of same- vs different-person pairs; None without the data."""
    data_dir = default_data_dir()
    if data_dir is None:
        print("skipping int8 parity: no data (set DEEPWATCH_DATA)", file=sys.stderr)
        return None
    # The cached calibration crops when present (``deepwatch weights calibrate``), else made now.
    crops = calibration_source(data_dir)()
    embeddings = {}
    for precision in ("fp32", "int8"):
        with build_encoder("onnxruntime", "cpu", False, 64, ort_threads, precision) as encoder:
            embeddings[precision] = encoder.encode(crops.crops)
            report = encoder.int8_report
    cosine = np.sum(embeddings["fp32"] * embeddings["int8"], axis=1)
    groups = np.asarray(crops.groups)
    upper = np.triu_indices(len(groups), k=1)
    same = (groups[:, None] == groups[None, :])[upper]
    aucs = {
        precision: round(roc_auc(same.astype(int), (e @ e.T)[upper]), 5)
        for precision, e in embeddings.items()
    }
    return {
        "crops": len(groups),
        "people": len(set(crops.groups)),
        "min_cosine": round(float(cosine.min()), 5),
        "mean_cosine": round(float(cosine.mean()), 5),
        "held_out_min_cosine": None if report is None else report.min_cosine,
        "verification_auc_fp32": aucs["fp32"],
        "verification_auc_int8": aucs["int8"],
        "same_pairs": int(same.sum()),
        "different_pairs": int((~same).sum()),
    }


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
    parser.add_argument(
        "--precisions", nargs="+", default=["fp32", "int8"], help="int8 runs on onnxruntime (CPU) only"
    )
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
    results: list[dict[str, object]] = []
    runs = [(backend, "fp32") for backend in backends]
    if "int8" in args.precisions and "onnxruntime" in backends and args.device == "cpu":
        runs.append(("onnxruntime", "int8"))
    runs = [run for run in runs if run[1] in args.precisions]
    for backend, precision in runs:
        if not BACKENDS[backend].is_available(args.device, args.fp16):
            print(
                f"skipping {backend}: needs {BACKENDS[backend].requirement(args.device, args.fp16)}",
                file=sys.stderr,
            )
            continue
        with build_encoder(
            backend, args.device, args.fp16, max(args.batches), args.ort_threads, precision
        ) as encoder:
            for batch in args.batches:
                rate, cpu_rate = measure(encoder, batch, args.repeats)
                results.append(
                    {
                        "backend": backend,
                        "precision": precision,
                        "batch": batch,
                        "crops_per_s": round(rate, 1),
                        "crops_per_cpu_s": round(cpu_rate, 1),
                    }
                )
                if not args.json:
                    print(
                        f"{backend:<12} {precision:<5} batch {batch:>3}: {rate:8.1f} crops/s "
                        f"({cpu_rate:.1f} per CPU s)",
                        flush=True,
                    )
    if ("onnxruntime", "int8") in runs:
        parity = int8_parity(args.ort_threads)
        if parity is not None:
            results.append({"backend": "onnxruntime", "precision": "int8", "parity": parity})
            if not args.json:
                print(f"int8 parity: {parity}", flush=True)
    if args.json:
        print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
