"""``EncoderConfig``: the face encoder's typed configuration."""

from __future__ import annotations

import re
from dataclasses import dataclass

BACKEND_NAMES = ("auto", "torch", "onnxruntime", "tensorrt")
# fp32 everywhere; int8 is ONNX Runtime static quantisation on CPU; auto picks int8 only where it pays.
PRECISION_NAMES = ("fp32", "int8", "auto")
# The registry names of ``engine.weights.REGISTRY`` (here so the CLI lists them without torch).
WEIGHTS_NAMES = ("casia-webface", "vggface2")
_DEVICE_PATTERN = re.compile(r"cpu|cuda(:\d+)?")
# Above this a single batch of 160 px crops needs several GiB of activations on CPU.
MAX_BATCH_SIZE_LIMIT = 1024


@dataclass(frozen=True)
class EncoderConfig:
    """How to build the face encoder.

    Attributes:
        weights: a registry name (``casia-webface``, ``vggface2``) or a path to a state dict file.
        backend: ``auto`` (fastest available), ``torch``, ``onnxruntime`` or ``tensorrt``.
        device: ``cpu``, ``cuda`` or ``cuda:N``.
        fp16: run in half precision (CUDA only); embeddings are still returned as float32.
        max_batch_size: largest batch sent to the backend in one call; ``encode`` splits larger
            inputs. TensorRT engines are built for batches 1..max_batch_size.
        opt_batch_size: the batch size TensorRT tunes its kernels for (1 <= opt <= max).
        precision: ``fp32``; ``int8`` (ONNX Runtime static quantisation on CPU, calibrated on real
            face crops, built once per weights and cached); ``auto`` (int8 when the CPU has VNNI or
            AMX and the int8 model passed its parity check against fp32, else fp32).
        calibration: a ``.npz`` file of real face crops (``crops``: N x 160 x 160 x 3 uint8 RGB,
            optional ``groups``: identity per crop) to calibrate int8 on; None uses the crops
            ``deepwatch weights calibrate`` made in the cache. Only read when an int8 model is built.
    """

    weights: str = "casia-webface"
    backend: str = "auto"
    device: str = "cpu"
    fp16: bool = False
    max_batch_size: int = 64
    opt_batch_size: int = 16
    precision: str = "fp32"
    calibration: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.weights, str) or not self.weights:
            raise ValueError(f"weights must be a registry name or a file path, got {self.weights!r}")
        if self.backend not in BACKEND_NAMES:
            raise ValueError(f"backend must be one of {BACKEND_NAMES}, got {self.backend!r}")
        if not isinstance(self.device, str) or not _DEVICE_PATTERN.fullmatch(self.device):
            raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")
        if not isinstance(self.fp16, bool):
            raise ValueError(f"fp16 must be a bool, got {self.fp16!r}")
        if self.fp16 and self.device == "cpu":
            raise ValueError("fp16 must be False on device 'cpu' (half precision needs CUDA), got fp16=True")
        for field_name in ("max_batch_size", "opt_batch_size"):
            value = getattr(self, field_name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int)
                or not 1 <= value <= MAX_BATCH_SIZE_LIMIT
            ):
                raise ValueError(f"{field_name} must be an int in [1, {MAX_BATCH_SIZE_LIMIT}], got {value!r}")
        if self.precision not in PRECISION_NAMES:
            raise ValueError(f"precision must be one of {PRECISION_NAMES}, got {self.precision!r}")
        if self.precision == "int8" and (self.device != "cpu" or self.backend not in ("auto", "onnxruntime")):
            raise ValueError(
                "precision 'int8' needs backend 'onnxruntime' (or 'auto') on device 'cpu', "
                f"got backend {self.backend!r} on {self.device!r}"
            )
        if self.calibration is not None and (not isinstance(self.calibration, str) or not self.calibration):
            raise ValueError(f"calibration must be a .npz file path or null, got {self.calibration!r}")
        if self.opt_batch_size > self.max_batch_size:
            raise ValueError(
                f"opt_batch_size must be <= max_batch_size ({self.max_batch_size}), got {self.opt_batch_size}"
            )
