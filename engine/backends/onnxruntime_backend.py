"""ONNX Runtime backend: CPU, or the CUDA execution provider when onnxruntime-gpu is installed."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any

import numpy as np

from engine.backends.base import BackendRequest, EncoderBackend
from engine.backends.int8 import calibration_provider, ensure_int8
from engine.backends.onnx_export import INPUT_NAME, OUTPUT_NAME, ensure_onnx
from engine.errors import BackendUnavailableError

logger = logging.getLogger(__name__)


def _cuda_provider_present() -> bool:
    import onnxruntime

    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


class OnnxRuntimeBackend(EncoderBackend):
    """Runs the cached ONNX export (dynamic batch) in an ``onnxruntime.InferenceSession``.

    fp32, or int8 on CPU when ``request.precision`` is ``int8`` (``engine.backends.int8``
    builds and caches that model). For half precision use the torch or tensorrt backend.
    """

    name = "onnxruntime"

    @classmethod
    def is_available(cls, device: str, fp16: bool) -> bool:
        if fp16 or importlib.util.find_spec("onnxruntime") is None:
            return False
        return device == "cpu" or _cuda_provider_present()

    @classmethod
    def requirement(cls, device: str, fp16: bool) -> str:
        if fp16:
            return "fp16=False (this backend runs fp32; use torch or tensorrt for fp16)"
        if device != "cpu":
            return "pip install onnxruntime-gpu (for the CUDAExecutionProvider) and a visible NVIDIA GPU"
        return "pip install onnxruntime"

    def __init__(self, request: BackendRequest, intra_op_threads: int = 0) -> None:
        """``intra_op_threads``: threads per operator, 0 lets onnxruntime use one per physical core."""
        if not self.is_available(request.device, request.fp16):
            raise BackendUnavailableError(
                f"onnxruntime backend cannot run on {request.device} with fp16={request.fp16}: "
                f"needs {self.requirement(request.device, request.fp16)}"
            )
        if request.precision == "int8":
            if request.device != "cpu":
                raise BackendUnavailableError(
                    f"the int8 encoder runs on device 'cpu' only, got {request.device!r}"
                )
            calibration = request.calibration or calibration_provider(None, request.cache_dir)
            path, _ = ensure_int8(request, calibration)
        else:
            path = ensure_onnx(request)
        providers: list[Any] = ["CPUExecutionProvider"]
        if request.device != "cpu":
            device_id = int(request.device.partition(":")[2] or 0)
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": device_id}))
        self._session: Any = ort_session(path, intra_op_threads, providers)
        logger.debug("onnxruntime session on %s with providers %s", path, self._session.get_providers())

    def run(self, batch: np.ndarray) -> np.ndarray:
        if self._session is None:
            raise RuntimeError("onnxruntime backend is closed")
        (embeddings,) = self._session.run(
            [OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(batch, np.float32)}
        )
        return np.asarray(embeddings, dtype=np.float32)

    def close(self) -> None:
        self._session = None


def ort_session(path: Path, intra_op_threads: int = 0, providers: list[Any] | None = None) -> Any:
    """An ``onnxruntime.InferenceSession`` on ``path`` (CPU unless ``providers`` say otherwise).

    ``intra_op_threads``: threads per operator, 0 lets onnxruntime use one per physical core.
    """
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = intra_op_threads
    # Idle worker threads sleep instead of spinning: the pipeline runs MTCNN (torch) right after
    # each encoder call on the same few cores, and spinning threads measurably slowed both.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(
        str(path), sess_options=options, providers=providers or ["CPUExecutionProvider"]
    )
