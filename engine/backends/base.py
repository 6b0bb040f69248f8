"""The interface every encoder backend implements, and what a backend is built from."""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from engine.inception_resnet_v1 import InceptionResnetV1

if TYPE_CHECKING:
    from engine.backends.int8 import CalibrationSet


@dataclass(frozen=True)
class BackendRequest:
    """Everything a backend needs to build itself.

    Attributes:
        model: the torch reference network with its weights loaded, in eval mode, on the CPU.
        weights_digest: sha256 identifying the effective weights (base file plus overrides); the
            key of on-disk caches such as exported ONNX files and TensorRT engines.
        device: ``cpu``, ``cuda`` or ``cuda:N``.
        fp16: half precision (CUDA only).
        max_batch_size: largest batch ``run`` receives.
        opt_batch_size: batch size TensorRT tunes for.
        cache_dir: deepwatch's cache root; backends keep their artefacts in subfolders.
        precision: ``fp32`` or ``int8`` (``auto`` is resolved before a backend is built).
        calibration: returns real face crops to calibrate an int8 model on; called only when one
            has to be built.
    """

    model: InceptionResnetV1
    weights_digest: str
    device: str
    fp16: bool
    max_batch_size: int
    opt_batch_size: int
    cache_dir: Path
    precision: str = "fp32"
    calibration: Callable[[], CalibrationSet] | None = None


class EncoderBackend(abc.ABC):
    """Runs InceptionResNetV1 on a preprocessed batch.

    ``run`` takes an N x 3 x 160 x 160 float32 array already standardised by ``engine.encoder``
    (1 <= N <= max_batch_size) and returns N x 512 float32 embeddings. Heavy imports happen in the
    constructor, never at module import. Use as a context manager or call ``close``.
    """

    name: ClassVar[str]

    @abc.abstractmethod
    def __init__(self, request: BackendRequest) -> None:
        """Build the backend; raises ``BackendUnavailableError`` when it cannot run as requested."""

    @classmethod
    @abc.abstractmethod
    def is_available(cls, device: str, fp16: bool) -> bool:
        """Whether the backend can run here with these settings; imports nothing heavy."""

    @classmethod
    @abc.abstractmethod
    def requirement(cls, device: str, fp16: bool) -> str:
        """What to install or change to make ``is_available`` true (for error messages)."""

    @abc.abstractmethod
    def run(self, batch: np.ndarray) -> np.ndarray:
        """Embed one preprocessed batch: N x 3 x 160 x 160 float32 -> N x 512 float32."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release sessions, engines and device memory; idempotent."""

    def __enter__(self) -> EncoderBackend:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
