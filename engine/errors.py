"""Errors raised by the face encoder: a missing backend and unusable weights."""

from __future__ import annotations


class BackendUnavailableError(RuntimeError):
    """An encoder backend cannot run here; the message says what to install or change."""


class WeightsError(RuntimeError):
    """Encoder weights are missing, corrupt, truncated or do not fit the model; the message names the file."""
