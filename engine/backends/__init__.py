"""Encoder backends behind one interface (``EncoderBackend``), selected by name.

Importing this package imports no inference runtime: onnxruntime and tensorrt are imported by
their backend's constructor.
"""

from engine.backends.base import BackendRequest, EncoderBackend
from engine.backends.onnxruntime_backend import OnnxRuntimeBackend
from engine.backends.tensorrt_backend import TensorRTBackend
from engine.backends.torch_backend import TorchBackend

BACKENDS: dict[str, type[EncoderBackend]] = {
    TorchBackend.name: TorchBackend,
    OnnxRuntimeBackend.name: OnnxRuntimeBackend,
    TensorRTBackend.name: TensorRTBackend,
}

# Fastest first, as measured by benchmarks/encoder.py (on CPU onnxruntime beats torch; on CUDA a
# TensorRT engine beats both).
AUTO_ORDER: tuple[str, ...] = (TensorRTBackend.name, OnnxRuntimeBackend.name, TorchBackend.name)

__all__ = [
    "AUTO_ORDER",
    "BACKENDS",
    "BackendRequest",
    "EncoderBackend",
    "OnnxRuntimeBackend",
    "TensorRTBackend",
    "TorchBackend",
]
