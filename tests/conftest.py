"""Fixtures shared by every test package."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("DEEPWATCH_DATA", REPO_ROOT.parent / "shared" / "data"))


def require_system(*executables: str, reason: str) -> None:
    """Skip the calling test when a system program is missing, or fail under CI.

    `.ci/run` installs the Debian packages these tests need and sets
    DEEPWATCH_REQUIRE_SYSTEM_TESTS=1, so there a missing program is an error, not a silent skip.
    """
    missing = [name for name in executables if shutil.which(name) is None and not Path(name).exists()]
    if not missing:
        return
    message = f"{reason}: missing {', '.join(missing)}"
    if os.environ.get("DEEPWATCH_REQUIRE_SYSTEM_TESTS") == "1":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The labelled face videos of ../shared/data; tests that use it skip when it is absent."""
    if not (DATA_DIR / "manifest.csv").is_file():
        pytest.skip(f"face video data not found at {DATA_DIR} (set DEEPWATCH_DATA)")
    return DATA_DIR
