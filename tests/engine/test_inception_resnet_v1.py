"""Our InceptionResNetV1 is facenet-pytorch's architecture: same state dict, same outputs."""

from __future__ import annotations

import torch
from facenet_pytorch import InceptionResnetV1 as ReferenceInceptionResnetV1

from engine.inception_resnet_v1 import InceptionResnetV1


def test_state_dict_names_and_shapes_match_facenet_pytorch() -> None:
    ours = InceptionResnetV1().state_dict()
    reference = ReferenceInceptionResnetV1().state_dict()
    assert sorted(ours) == sorted(reference)
    assert {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(v.shape) for k, v in reference.items()}


def test_outputs_match_facenet_pytorch_with_the_same_random_weights() -> None:
    torch.manual_seed(0)
    reference = ReferenceInceptionResnetV1().eval()
    # Non-trivial batch-norm statistics, so a misplaced BN or scale would show.
    with torch.no_grad():
        for module in reference.modules():
            if isinstance(module, (torch.nn.BatchNorm2d, torch.nn.BatchNorm1d)):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.1, 0.1)
    ours = InceptionResnetV1().eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    images = torch.rand(3, 3, 160, 160) * 2 - 1
    with torch.no_grad():
        expected = reference(images)
        got = ours(images)
    assert got.shape == (3, 512)
    assert torch.allclose(got.norm(dim=1), torch.ones(3), atol=1e-5)
    assert (got - expected).abs().max().item() < 1e-5
