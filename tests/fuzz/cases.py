"""Shared pieces of the fuzz tests: JSON-shaped values, and a log watcher that fails a run on
any traceback (or, where asked, any ERROR line)."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from hypothesis import strategies as st


def json_values(max_leaves: int = 12) -> st.SearchStrategy[Any]:
    """Any JSON document: scalars (huge and negative numbers, odd text) nested in lists and objects."""
    scalars = (
        st.none()
        | st.booleans()
        | st.integers(min_value=-(2**70), max_value=2**70)
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(max_size=30)
    )
    return st.recursive(
        scalars,
        lambda children: (
            st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
        ),
        max_leaves=max_leaves,
    )


class ErrorRecords(logging.Handler):
    """Collects log records that mean something broke: any record carrying a traceback, and any
    ERROR or worse unless ``allow_error_lines`` (a source reports a bad file with one ERROR line)."""

    def __init__(self, *, allow_error_lines: bool = False) -> None:
        super().__init__(level=logging.DEBUG)
        self.allow_error_lines = allow_error_lines
        self.records: list[logging.LogRecord] = []
        self.error_lines = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info is not None or record.exc_text:
            self.records.append(record)
        elif record.levelno >= logging.ERROR:
            self.error_lines += 1
            if not self.allow_error_lines or "\n" in record.getMessage():
                self.records.append(record)

    @contextmanager
    def watching(self, *quiet_loggers: str) -> Iterator[ErrorRecords]:
        """Attach to the root logger; ``quiet_loggers`` (expected WARNING floods) log ERROR only."""
        root = logging.getLogger()
        previous_root = root.level
        previous = {name: logging.getLogger(name).level for name in quiet_loggers}
        root.addHandler(self)
        root.setLevel(logging.WARNING)
        for name in quiet_loggers:
            logging.getLogger(name).setLevel(logging.ERROR)
        try:
            yield self
        finally:
            root.removeHandler(self)
            root.setLevel(previous_root)
            for name, level in previous.items():
                logging.getLogger(name).setLevel(level)

    def assert_none(self) -> None:
        shown = [f"{r.name} {r.levelname}: {r.getMessage()[:300]}" for r in self.records[:5]]
        assert not self.records, f"{len(self.records)} tracebacks or error lines, first: {shown}"


def scaled(cases: int) -> int:
    """``cases`` times $DEEPWATCH_FUZZ_SCALE (default 1): a longer hunt is one variable away."""
    return max(1, round(cases * float(os.environ.get("DEEPWATCH_FUZZ_SCALE", "1"))))
