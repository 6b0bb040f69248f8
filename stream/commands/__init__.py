"""One module per ``deepwatch`` subcommand.

Each module defines ``register(subparsers) -> None``, which adds its parser and sets
``func=run`` where ``run(args: argparse.Namespace) -> int`` returns the exit code.
"""

from __future__ import annotations

import argparse


def add_reference_argument(parser: argparse.ArgumentParser) -> None:
    """``--reference PHOTO`` (repeatable), as ``deepwatch run`` and ``deepwatch serve`` take it."""
    parser.add_argument(
        "--reference",
        action="append",
        metavar="PHOTO",
        help="a photo of the person who should be on screen (repeat for several photos of them): every "
        "face is also compared with them, inner face and head apart (README, Enrolment)",
    )
