"""Progress bars only for a person watching a terminal."""

from __future__ import annotations

import argparse
import io

from stream.cli import build_parser
from stream.training.progress import show_progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_bars_need_a_terminal_and_no_quiet_flag() -> None:
    assert show_progress(argparse.Namespace(no_progress=False), Terminal()) is True
    assert show_progress(argparse.Namespace(no_progress=False), io.StringIO()) is False
    assert show_progress(argparse.Namespace(no_progress=True), Terminal()) is False
    assert show_progress(argparse.Namespace(no_progress=False, quiet=True), Terminal()) is False


def test_quiet_after_the_command_and_before_it() -> None:
    parser = build_parser()
    for command in (
        ["train", "m.csv", "--out", "m.pt"],
        ["extract", "m.csv"],
        ["eval", "--manifest", "m.csv", "--report", "r.json"],
    ):
        assert parser.parse_args([*command, "--quiet"]).quiet is True
        assert parser.parse_args(["-q", *command]).quiet is True
        args = parser.parse_args(command)
        assert args.quiet is False and show_progress(args, Terminal()) is True
