"""TensorRT backend: the ONNX export built into an engine with a dynamic batch profile (CUDA only).

Engines are cached under ``<cache>/tensorrt`` keyed by GPU name, TensorRT version, the ONNX file's
sha256, precision and the batch profile, because an engine only runs on the GPU model and TensorRT
version that built it. Every freshly built engine is checked against the torch reference
(cosine >= 0.999 on a fixed probe batch) before it is cached.

Half precision uses a strongly typed network built from an fp16 ONNX export rather than the
``BuilderFlag.FP16`` hint, which TensorRT 10.12 deprecated and TensorRT 11 removed; the same code
builds on TensorRT 10 and 11.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.backends.base import BackendRequest, EncoderBackend
from engine.backends.onnx_export import INPUT_NAME, OUTPUT_NAME, ensure_onnx
from engine.errors import BackendUnavailableError
from engine.inception_resnet_v1 import EMBEDDING_SIZE, INPUT_SIZE_PX
from engine.tf_graph import file_sha256

logger = logging.getLogger(__name__)

MIN_COSINE_VS_TORCH = 0.999
_WORKSPACE_BYTES = 2 << 30
_PROBE_BATCH = 8
_PROBE_SEED = 20180408


class TensorRTBackend(EncoderBackend):
    """Runs a cached TensorRT engine; inputs and outputs live in torch CUDA tensors."""

    name = "tensorrt"

    @classmethod
    def is_available(cls, device: str, fp16: bool) -> bool:
        if device == "cpu" or importlib.util.find_spec("tensorrt") is None:
            return False
        return torch.cuda.is_available()

    @classmethod
    def requirement(cls, device: str, fp16: bool) -> str:
        if device == "cpu":
            return "device='cuda' (TensorRT runs on NVIDIA GPUs only)"
        return "pip install 'deepwatch[tensorrt]', a CUDA build of torch and an NVIDIA GPU"

    def __init__(self, request: BackendRequest) -> None:
        if not self.is_available(request.device, request.fp16):
            raise BackendUnavailableError(
                f"tensorrt backend cannot run on {request.device}: "
                f"needs {self.requirement(request.device, request.fp16)}"
            )
        import tensorrt as trt

        self._trt = trt
        self._device = torch.device(request.device)
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._max_batch = request.max_batch_size
        onnx_file = ensure_onnx(request, half=request.fp16)
        engine_file = self._engine_path(request, onnx_file)
        with torch.cuda.device(self._device):
            if engine_file.is_file():
                self._open(engine_file.read_bytes(), engine_file)
            else:
                serialized = self._build(onnx_file, request)
                self._open(serialized, engine_file)
                self._check_against_torch(request)
                _atomic_write(engine_file, serialized)
                logger.info("built TensorRT engine %s", engine_file)

    def _open(self, serialized: bytes, engine_file: Path) -> None:
        trt = self._trt
        engine = trt.Runtime(self._logger).deserialize_cuda_engine(serialized)
        if engine is None:
            raise BackendUnavailableError(
                f"TensorRT cannot load engine {engine_file} (built by another TensorRT version?); "
                "delete it to rebuild"
            )
        self._engine: Any = engine
        self._context: Any = engine.create_execution_context()
        self._input_dtype = _torch_dtype(trt, engine.get_tensor_dtype(INPUT_NAME))
        self._output_dtype = _torch_dtype(trt, engine.get_tensor_dtype(OUTPUT_NAME))

    def _engine_path(self, request: BackendRequest, onnx_file: Path) -> Path:
        gpu = re.sub(r"[^A-Za-z0-9]+", "-", torch.cuda.get_device_name(self._device)).strip("-")
        onnx_sha = file_sha256(onnx_file)[:16]
        precision = "fp16" if request.fp16 else "fp32"
        name = (
            f"{gpu}-trt{self._trt.__version__}-{onnx_sha}-{precision}"
            f"-b{request.opt_batch_size}-{request.max_batch_size}.engine"
        )
        return request.cache_dir / "tensorrt" / name

    def _build(self, onnx_file: Path, request: BackendRequest) -> bytes:
        trt = self._trt
        builder = trt.Builder(self._logger)
        flags = 0
        strongly_typed = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
        if strongly_typed is not None:
            # Precision comes from the ONNX types (fp16 export for fp16); accepted and implied on TRT 11.
            flags |= 1 << int(strongly_typed)
        network = builder.create_network(flags)
        parser = trt.OnnxParser(network, self._logger)
        if not parser.parse(onnx_file.read_bytes()):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise BackendUnavailableError(f"TensorRT cannot parse {onnx_file}: {errors}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, _WORKSPACE_BYTES)
        profile = builder.create_optimization_profile()
        shape = (3, INPUT_SIZE_PX, INPUT_SIZE_PX)
        profile.set_shape(
            INPUT_NAME, (1, *shape), (request.opt_batch_size, *shape), (request.max_batch_size, *shape)
        )
        config.add_optimization_profile(profile)
        logger.info("building a TensorRT engine from %s (takes a minute or two, once per GPU)", onnx_file)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise BackendUnavailableError(
                f"TensorRT failed to build an engine from {onnx_file}; see its log above"
            )
        return bytes(serialized)

    def _check_against_torch(self, request: BackendRequest) -> None:
        generator = np.random.default_rng(_PROBE_SEED)
        probe = generator.uniform(-1.0, 1.0, (_PROBE_BATCH, 3, INPUT_SIZE_PX, INPUT_SIZE_PX)).astype(
            np.float32
        )
        got = self.run(probe)
        reference_model = request.model.to(self._device, torch.float32).eval()
        with torch.inference_mode():
            expected = reference_model(torch.from_numpy(probe).to(self._device)).cpu().numpy()
        cosine = np.sum(got * expected, axis=1) / (
            np.linalg.norm(got, axis=1) * np.linalg.norm(expected, axis=1)
        )
        if float(cosine.min()) < MIN_COSINE_VS_TORCH:
            raise BackendUnavailableError(
                f"the new TensorRT engine disagrees with torch: cosine similarity {cosine.min():.5f}, "
                f"expected >= {MIN_COSINE_VS_TORCH}; engine not cached"
            )
        logger.info(
            "TensorRT engine matches torch: min cosine %.6f over %d probe crops", cosine.min(), len(probe)
        )

    def run(self, batch: np.ndarray) -> np.ndarray:
        if self._context is None:
            raise RuntimeError("tensorrt backend is closed")
        if not 1 <= len(batch) <= self._max_batch:
            raise ValueError(
                f"batch must hold 1..{self._max_batch} crops (the engine's profile), got {len(batch)}"
            )
        with torch.cuda.device(self._device):
            stream = torch.cuda.current_stream(self._device)
            inputs = torch.from_numpy(np.ascontiguousarray(batch)).to(self._device, self._input_dtype)
            outputs = torch.empty((len(batch), EMBEDDING_SIZE), dtype=self._output_dtype, device=self._device)
            self._context.set_input_shape(INPUT_NAME, tuple(inputs.shape))
            self._context.set_tensor_address(INPUT_NAME, inputs.data_ptr())
            self._context.set_tensor_address(OUTPUT_NAME, outputs.data_ptr())
            if not self._context.execute_async_v3(stream.cuda_stream):
                raise RuntimeError("TensorRT execute_async_v3 failed")
            stream.synchronize()
            return outputs.float().cpu().numpy()

    def close(self) -> None:
        self._context = None
        self._engine = None


def _torch_dtype(trt: Any, dtype: Any) -> torch.dtype:
    if dtype == trt.DataType.HALF:
        return torch.float16
    if dtype == trt.DataType.FLOAT:
        return torch.float32
    raise BackendUnavailableError(f"engine I/O dtype {dtype}, expected FLOAT or HALF")


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".engine-", delete=False) as tmp:
        tmp.write(data)
    os.replace(tmp.name, path)
