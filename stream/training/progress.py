"""When the training commands draw progress bars (tqdm, with an ETA, on stderr)."""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO


def add_progress_flags(parser: Any) -> None:
    """``--no-progress`` and ``--quiet`` on a training command (``--quiet`` also mutes INFO logs).

    ``--quiet`` shares its destination with the global ``deepwatch -q``; its default is suppressed
    so the subcommand never resets a ``-q`` given before it.
    """
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.add_argument(
        "--quiet",
        action="store_true",
        default=argparse.SUPPRESS,
        help="only warnings and errors, no progress bars",
    )


def show_progress(args: argparse.Namespace, stream: TextIO | None = None) -> bool:
    """Bars only for a person watching: not with ``--no-progress`` or ``--quiet``, nor when stderr
    (where tqdm draws) is not a terminal, e.g. a log file or CI."""
    if getattr(args, "no_progress", False) or getattr(args, "quiet", False):
        return False
    target = sys.stderr if stream is None else stream
    return bool(getattr(target, "isatty", lambda: False)())
