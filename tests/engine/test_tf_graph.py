"""The casia-webface conversion is exact: the converted module reproduces an independent execution
of the frozen graph's own nodes on real face crops."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from engine.errors import WeightsError
from engine.inception_resnet_v1 import InceptionResnetV1
from engine.tf_graph import convert_graph, graph_path, read_graph_constants
from tests.engine.conftest import FIGURES
from tests.engine.face_crops import FaceCrop
from tests.engine.tf_interpreter import FrozenGraphInterpreter

MAX_ABS_DIFF = 1e-4
CROPS_FOR_EXACTNESS = 8


def test_interpreter_covers_every_op_of_the_graph() -> None:
    interpreter = FrozenGraphInterpreter(graph_path())
    assert interpreter.op_types == sorted(
        {"Add", "AvgPool", "BiasAdd", "ConcatV2", "Const", "Conv2D", "FusedBatchNorm", "MatMul", "MaxPool",
         "Maximum", "Mul", "Placeholder", "Relu", "Reshape", "Rsqrt", "Square", "Sum"}
    )  # fmt: skip


def test_conversion_fills_every_parameter_and_buffer_strictly() -> None:
    state = convert_graph()
    module = InceptionResnetV1()
    result = module.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    # Folded convolutions: the BN is identity but for the offset, so var + eps is exactly 1.
    bn = module.conv2d_1a.bn
    assert torch.equal(bn.running_var + bn.eps, torch.ones(32))
    assert torch.equal(bn.running_mean, torch.zeros(32))
    assert not torch.equal(bn.bias, torch.zeros(32))


@pytest.mark.slow
def test_converted_module_matches_the_frozen_graph_on_real_faces(talking_head_crops: list[FaceCrop]) -> None:
    # One crop from each of several different clips (people).
    chosen: dict[str, FaceCrop] = {}
    for crop in talking_head_crops:
        chosen.setdefault(crop.clip, crop)
    crops = np.stack([c.image for c in list(chosen.values())[:CROPS_FOR_EXACTNESS]])
    assert len(crops) == CROPS_FOR_EXACTNESS
    standardised = (crops.astype(np.float32) - 127.5) / 128.0

    expected = FrozenGraphInterpreter(graph_path()).run(standardised)
    module = InceptionResnetV1().eval()
    module.load_state_dict(convert_graph())
    with torch.no_grad():
        got = module(torch.from_numpy(np.ascontiguousarray(standardised.transpose(0, 3, 1, 2)))).numpy()

    max_abs_diff = float(np.abs(got - expected).max())
    FIGURES["max |converted - frozen graph| over 8 real crops"] = f"{max_abs_diff:.2e}"
    assert np.allclose(np.linalg.norm(expected, axis=1), 1.0, atol=1e-6)
    assert max_abs_diff <= MAX_ABS_DIFF
    # Different people must not collapse onto one embedding (a conversion that zeroes layers would).
    off_diagonal = (got @ got.T)[~np.eye(len(got), dtype=bool)]
    assert off_diagonal.max() < 0.9


def test_a_graph_other_than_the_pinned_one_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "graph_final.pb"
    fake.write_bytes(graph_path().read_bytes()[:1000])
    with pytest.raises(WeightsError, match=str(fake)):
        read_graph_constants(fake)
