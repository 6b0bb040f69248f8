"""One module per ``deepwatch`` subcommand.

Each module defines ``register(subparsers) -> None``, which adds its parser and sets
``func=run`` where ``run(args: argparse.Namespace) -> int`` returns the exit code.
"""

from __future__ import annotations

import argparse
import sys


def add_reference_argument(parser: argparse.ArgumentParser) -> None:
    """``--reference PHOTO|CLIP`` (repeatable), as ``deepwatch run`` and ``deepwatch serve`` take it."""
    parser.add_argument(
        "--reference",
        action="append",
        metavar="PHOTO|CLIP",
        help="a photo or a short video (.mp4, .mov, ...: 8 of its frames, 4 a second from the start) of "
        "the person who should be on screen; repeat for several: every face is also compared with "
        "them, inner face and head apart (README, Enrolment)",
    )


# The last comparison with the enrolled person, as a summary line says it (``engine.reference``).
REFERENCE_WORDS = {
    "match": "matches",
    "face_only": "face matches but head does not (possible face swap):",
    "head_only": "head matches but face does not (possible face swap):",
    "other": "is not",
    "unsure": "too few samples to compare with",
}


# ``deepwatch run``'s exit codes, for video and photos alike.
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def run_failed(message: str, code: int) -> int:
    """Print ``deepwatch run``'s one error line for ``message``; return ``code`` to exit with."""
    print(f"deepwatch run: error: {message}", file=sys.stderr)
    return code
