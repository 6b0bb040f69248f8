"""A small, independent interpreter of FaceNet's frozen TensorFlow graph, used only by the tests.

It executes the graph's own nodes one by one (its 17 op types) in float64 with torch functional
calls, keeping TensorFlow's NHWC layout and computing TF 'SAME' padding from the formula, so it
shares no architecture knowledge with ``engine.inception_resnet_v1`` or ``engine.tf_graph``: if the
converter mapped a name, a padding, a scale or a concatenation order wrongly, the two disagree.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tensorboard.compat.proto import graph_pb2

_DTYPES = {1: np.float64, 3: np.int64}  # evaluate float constants in float64


def _constant(tensor: object) -> torch.Tensor:
    shape = tuple(int(d.size) for d in tensor.tensor_shape.dim)  # type: ignore[attr-defined]
    dtype_enum = int(tensor.dtype)  # type: ignore[attr-defined]
    stored = np.float32 if dtype_enum == 1 else np.int32
    if tensor.tensor_content:  # type: ignore[attr-defined]
        array = np.frombuffer(tensor.tensor_content, dtype=stored).reshape(shape)  # type: ignore[attr-defined]
    else:
        values = tensor.float_val if dtype_enum == 1 else tensor.int_val  # type: ignore[attr-defined]
        array = np.full(shape, values[0], dtype=stored) if len(values) == 1 else np.asarray(values, stored)
    return torch.from_numpy(array.astype(_DTYPES[dtype_enum]).reshape(shape))


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _pad_nchw(
    x: torch.Tensor, kernel: tuple[int, int], strides: tuple[int, int], padding: bytes
) -> torch.Tensor:
    if padding == b"VALID":
        return x
    top, bottom = _same_padding(x.shape[2], kernel[0], strides[0])
    left, right = _same_padding(x.shape[3], kernel[1], strides[1])
    return F.pad(x, (left, right, top, bottom))


class FrozenGraphInterpreter:
    """Runs ``graph_final.pb`` on NHWC float input and returns the ``embeddings`` node."""

    def __init__(self, path: Path) -> None:
        graph = graph_pb2.GraphDef()
        graph.ParseFromString(path.read_bytes())
        self.nodes = {node.name: node for node in graph.node}
        self.constants = {
            node.name: _constant(node.attr["value"].tensor) for node in graph.node if node.op == "Const"
        }
        self.op_types = sorted({node.op for node in graph.node})

    def run(self, images_nhwc: np.ndarray, output: str = "embeddings") -> np.ndarray:
        """Evaluate ``output`` for each image; the graph was frozen for batch 1 (its Reshape shapes
        are folded constants), so images run one at a time."""
        results = []
        for image in np.asarray(images_nhwc, dtype=np.float64):
            values: dict[str, torch.Tensor] = dict(self.constants)
            values["input"] = torch.from_numpy(image[None])
            with torch.no_grad():
                results.append(self._evaluate(output, values).numpy()[0])
        return np.stack(results)

    def _evaluate(self, name: str, values: dict[str, torch.Tensor]) -> torch.Tensor:
        # Iterative post-order walk: the graph is ~800 nodes deep in places.
        stack = [name]
        while stack:
            current = stack[-1]
            if current in values:
                stack.pop()
                continue
            inputs = self._data_inputs(current)
            missing = [i for i in inputs if i not in values]
            if missing:
                stack.extend(missing)
                continue
            values[current] = self._execute(self.nodes[current], [values[i] for i in inputs])
            stack.pop()
        return values[name]

    def _data_inputs(self, name: str) -> list[str]:
        return [i.split(":")[0] for i in self.nodes[name].input if not i.startswith("^")]

    def _execute(self, node: object, args: list[torch.Tensor]) -> torch.Tensor:
        op = node.op  # type: ignore[attr-defined]
        attr = node.attr  # type: ignore[attr-defined]
        if "data_format" in attr and attr["data_format"].s != b"NHWC":
            raise NotImplementedError(f"{node.name}: data_format {attr['data_format'].s!r}")  # type: ignore[attr-defined]
        if op == "Conv2D":
            x, w = args
            strides = tuple(attr["strides"].list.i)[1:3]
            dilations = tuple(attr["dilations"].list.i)[1:3]
            if dilations != (1, 1):
                raise NotImplementedError("dilated convolution")
            x = _pad_nchw(x.permute(0, 3, 1, 2), (w.shape[0], w.shape[1]), strides, attr["padding"].s)
            y = F.conv2d(x, w.permute(3, 2, 0, 1), stride=strides)
            return y.permute(0, 2, 3, 1)
        if op in ("MaxPool", "AvgPool"):
            (x,) = args
            kernel = tuple(attr["ksize"].list.i)[1:3]
            strides = tuple(attr["strides"].list.i)[1:3]
            if attr["padding"].s != b"VALID":
                raise NotImplementedError("SAME pooling")
            pool = F.max_pool2d if op == "MaxPool" else F.avg_pool2d
            return pool(x.permute(0, 3, 1, 2), kernel, stride=strides).permute(0, 2, 3, 1)
        if op == "BiasAdd":
            return args[0] + args[1]
        if op == "Relu":
            return torch.relu(args[0])
        if op == "ConcatV2":
            return torch.cat(args[:-1], dim=int(args[-1]))
        if op == "Mul":
            return args[0] * args[1]
        if op == "Add":
            return args[0] + args[1]
        if op == "Reshape":
            return args[0].reshape([int(d) for d in args[1].tolist()])
        if op == "MatMul":
            a, b = args
            if attr["transpose_a"].b or attr["transpose_b"].b:
                raise NotImplementedError("transposed MatMul")
            return a @ b
        if op == "FusedBatchNorm":
            x, scale, offset, mean, variance = args
            if attr["is_training"].b:
                raise NotImplementedError("training-mode batch norm")
            return (x - mean) / torch.sqrt(variance + attr["epsilon"].f) * scale + offset
        if op == "Square":
            return args[0] * args[0]
        if op == "Sum":
            return args[0].sum(dim=int(args[1]), keepdim=bool(attr["keep_dims"].b))
        if op == "Maximum":
            return torch.maximum(args[0], args[1])
        if op == "Rsqrt":
            return torch.rsqrt(args[0])
        raise NotImplementedError(f"op {op} of node {node.name}")  # type: ignore[attr-defined]
