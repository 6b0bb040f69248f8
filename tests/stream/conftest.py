"""Fixtures for the live-app tests: the model to run with, and running the CLI as a user would."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT


@pytest.fixture(scope="session")
def checkpoint_args(tmp_path_factory) -> list[str]:
    """``deepwatch run`` arguments selecting the model: the shipped default when it is installed.

    Without it (a checkout before the detector's model is committed), an untrained head over the
    real casia-webface encoder is saved and used: these tests check the app's mechanics (tracks,
    samples, events, exit codes), never the model's accuracy.
    """
    from engine.checkpoint import ScorerCheckpoint, default_checkpoint_path

    if default_checkpoint_path().is_file():
        return []
    import torch

    from engine.heads import build_head

    torch.manual_seed(0)
    params = {"hidden_size": 32, "num_layers": 1, "fc_size": 16}
    head = build_head("lstm", **params)
    fields = {
        "encoder_weights": "casia-webface",
        "encoder_weights_id": "",  # unknown exact id: any casia-webface build is accepted
        "encoder_overrides": {},
        "head_type": "lstm",
        "head_params": params,
        "head_state": head.state_dict(),
        "window_size": 8,
        "sample_rate_hz": 8.0,
        "threshold": 0.5,
        "threshold_fpr": 0.05,
    }
    known = {field.name for field in dataclasses.fields(ScorerCheckpoint)}
    checkpoint = ScorerCheckpoint(**{name: value for name, value in fields.items() if name in known})
    path = checkpoint.save(tmp_path_factory.mktemp("model") / "untrained.pt")
    return ["--checkpoint", str(path)]


def interruptible() -> None:
    """``preexec_fn`` for a child the test stops with SIGINT (Ctrl-C).

    A shell that starts the test run in the background ignores SIGINT, and children inherit
    that; Python then never raises KeyboardInterrupt. Restore the default before the exec.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def cli_command(*args: str) -> list[str]:
    """The command line of ``deepwatch <args>`` run by the test's interpreter."""
    return [sys.executable, "-m", "stream.cli", *args]


def run_cli(
    *args: str, timeout_s: float = 600, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run ``deepwatch <args>`` in a fresh interpreter, capturing output."""
    environment = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run(
        cli_command(*args),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env=environment,
    )


def run_cli_until(
    *args: str, ready: Callable[[], bool], stop_signal: int = signal.SIGINT, timeout_s: float = 300
) -> subprocess.CompletedProcess:
    """Run ``deepwatch <args>``, send ``stop_signal`` once ``ready()`` holds (Ctrl-C by default),
    and return what it did. Fails if it exits before it is ready, or is not ready in ``timeout_s``."""
    process = subprocess.Popen(
        cli_command(*args),
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=interruptible,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        deadline = time.monotonic() + timeout_s
        while not ready():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, f"not ready within {timeout_s} s"
            time.sleep(0.2)
        process.send_signal(stop_signal)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def assert_clean_failure(completed: subprocess.CompletedProcess, pattern: str) -> None:
    """Non-zero exit, one ``deepwatch run: error:`` line matching ``pattern``, no traceback."""
    import re

    assert completed.returncode != 0, completed.stdout + completed.stderr
    assert "Traceback" not in completed.stderr, completed.stderr
    error_lines = [line for line in completed.stderr.splitlines() if line.startswith("deepwatch run: error:")]
    assert len(error_lines) == 1, completed.stderr
    assert re.search(pattern, error_lines[0]), error_lines[0]


def small_config(tmp_path: Path, extra: str = "") -> Path:
    """A config for quick CPU runs: one torch thread, detection every 3 frames."""
    path = tmp_path / "test.yaml"
    path.write_text("pipeline:\n  torch_threads: 1\noutput:\n  log_interval_s: 1.0\n" + extra)
    return path
