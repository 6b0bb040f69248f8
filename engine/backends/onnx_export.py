"""Export InceptionResNetV1 to ONNX once per set of weights and keep the file in the cache."""

from __future__ import annotations

import copy
import logging
import os
import tempfile
import warnings
from pathlib import Path

import torch

from engine.backends.base import BackendRequest
from engine.inception_resnet_v1 import INPUT_SIZE_PX

logger = logging.getLogger(__name__)

INPUT_NAME = "crops"
OUTPUT_NAME = "embeddings"
# Opset 17 is read by every onnxruntime >= 1.13 and TensorRT >= 8.6.
OPSET_VERSION = 17


def onnx_path(request: BackendRequest, *, half: bool = False) -> Path:
    """Cache location of the ONNX model for the request's weights and precision."""
    precision = "fp16" if half else "fp32"
    name = f"inception_resnet_v1-{request.weights_digest[:20]}-{precision}-opset{OPSET_VERSION}.onnx"
    return request.cache_dir / "onnx" / name


def ensure_onnx(request: BackendRequest, *, half: bool = False) -> Path:
    """Return the cached ONNX export of the request's model, exporting it first if absent.

    The model has a dynamic batch axis named ``batch``; input ``crops`` (N x 3 x 160 x 160),
    output ``embeddings`` (N x 512, L2-normalised), both float32, or float16 with ``half`` (for
    TensorRT's strongly typed fp16 engines; traced on the request's CUDA device).
    """
    path = onnx_path(request, half=half)
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    logger.info("exporting the encoder to ONNX at %s (once per weights)", path)
    if half:
        model = copy.deepcopy(request.model).to(request.device, torch.float16).eval()
        example = torch.zeros(1, 3, INPUT_SIZE_PX, INPUT_SIZE_PX, device=request.device, dtype=torch.float16)
    else:
        model = request.model.float().eval()
        example = torch.zeros(1, 3, INPUT_SIZE_PX, INPUT_SIZE_PX)
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".export-", suffix=".onnx", delete=False) as tmp:
        tmp_path = Path(tmp.name)
    try:
        with warnings.catch_warnings():
            # The TorchScript exporter is deprecated but exports this plain CNN in seconds, needs no
            # onnxscript, and gives a graph both onnxruntime and TensorRT read.
            warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*legacy TorchScript.*")
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx")
            torch.onnx.export(
                model,
                (example,),
                str(tmp_path),
                dynamo=False,
                opset_version=OPSET_VERSION,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                do_constant_folding=True,
            )
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)
    return path
