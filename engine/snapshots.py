"""Training snapshots, so a long run can stop and go on later (``deepwatch train --resume``).

A training loop saves its whole state after every epoch under a name (``Snapshots.save``): the
model and optimiser state, the epoch, the best weights so far, and the random generators. Given
the same snapshot, the loop continues exactly where it stopped: the resumed run ends with the
weights an uninterrupted run would have reached.

``RunFolder`` keeps the snapshots of one run as files next to its output and remembers the run's
configuration; resuming with another configuration is refused, naming what differs.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.json"


class Snapshots(Protocol):
    """Where a training loop keeps its per-epoch state; ``load`` is None for a name never saved."""

    def load(self, name: str) -> dict[str, Any] | None: ...

    def save(self, name: str, state: dict[str, Any]) -> None: ...


class ResumeError(ValueError):
    """A run cannot be resumed: no run folder, or it was started with another configuration."""


def random_state(generator: np.random.Generator) -> dict[str, Any]:
    """The state of a numpy generator and of torch's CPU (and CUDA) generators, for ``weights_only``."""
    state = {"numpy": json.dumps(generator.bit_generator.state), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_random_state(generator: np.random.Generator, state: dict[str, Any]) -> None:
    """Put back what ``random_state`` saved (into ``generator`` and torch's CPU generator)."""
    generator.bit_generator.state = json.loads(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class RunFolder:
    """The snapshots of one training run, one ``<name>.pt`` file each, and its ``config.json``.

    Args:
        path: the folder (created when needed).
        config: the run's configuration (JSON-able); what must not change between a run and
            its resumption.
        resume: continue the run in ``path``; the folder must exist with the same
            configuration. Without it, an existing run folder is cleared and the run starts over.

    Raises:
        ResumeError: ``resume`` without a run in ``path``, or with another configuration (the
            message lists each differing key with both values); ``path`` exists but is not a
            run folder (it is never deleted).
    """

    def __init__(self, path: str | Path, config: dict[str, Any], resume: bool) -> None:
        self.path = Path(path)
        self.config = json.loads(json.dumps(config, default=str, sort_keys=True))
        config_file = self.path / CONFIG_FILE
        if resume:
            if not config_file.is_file():
                raise ResumeError(f"nothing to resume: no run in {self.path} (start without --resume)")
            stored = json.loads(config_file.read_text())
            differences = config_differences(stored, self.config)
            if differences:
                raise ResumeError(
                    f"cannot resume the run in {self.path} with another configuration: "
                    + "; ".join(differences)
                )
            logger.info("resuming the run in %s (%d snapshots)", self.path, len(list(self.path.glob("*.pt"))))
        else:
            if self.path.exists():
                if not config_file.is_file():
                    # Never delete what is not a run folder.
                    raise ResumeError(
                        f"{self.path} exists and is not a run folder (no {CONFIG_FILE}); move it away"
                    )
                logger.info("starting over: clearing the previous run in %s", self.path)
                shutil.rmtree(self.path)
            self.path.mkdir(parents=True)
            config_file.write_text(json.dumps(self.config, indent=1, sort_keys=True))

    def load(self, name: str) -> dict[str, Any] | None:
        file = self._file(name)
        if not file.is_file():
            return None
        state: dict[str, Any] = torch.load(file, map_location="cpu", weights_only=True)
        return state

    def save(self, name: str, state: dict[str, Any]) -> None:
        """Write atomically: a run stopped while saving keeps the previous snapshot."""
        file = self._file(name)
        temporary = file.with_name(file.name + ".partial")
        torch.save(state, temporary)
        os.replace(temporary, file)

    def _file(self, name: str) -> Path:
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"snapshot name must be a plain file name, got {name!r}")
        return self.path / f"{name}.pt"


def config_differences(stored: Any, current: Any, prefix: str = "") -> list[str]:
    """``key: <stored> (run) vs <current> (now)`` for every leaf that differs, dotted keys."""
    if isinstance(stored, dict) and isinstance(current, dict):
        differences = []
        for key in sorted(set(stored) | set(current), key=str):
            name = f"{prefix}.{key}" if prefix else str(key)
            if key not in stored:
                differences.append(f"{name}: absent (run) vs {current[key]!r} (now)")
            elif key not in current:
                differences.append(f"{name}: {stored[key]!r} (run) vs absent (now)")
            else:
                differences.extend(config_differences(stored[key], current[key], name))
        return differences
    if stored != current:
        return [f"{prefix or 'config'}: {stored!r} (run) vs {current!r} (now)"]
    return []
