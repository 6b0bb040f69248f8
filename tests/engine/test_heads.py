"""Sequence heads: shapes, logits, the original LSTM's sizes, and that each can learn a toy task."""

from __future__ import annotations

import pytest
import torch

from engine.heads import HEADS, LstmHead, build_head, head_features

# Heads over the 512-d crop embedding; the identity head has its own tests (test_evidence.py).
EMBEDDING_HEADS = sorted(name for name in HEADS if head_features(name) == "embedding")


@pytest.mark.parametrize("head_type", EMBEDDING_HEADS)
def test_every_head_maps_windows_to_one_logit(head_type: str) -> None:
    head = build_head(head_type).eval()
    logits = head(torch.randn(3, 16, 512))
    assert logits.shape == (3,)
    assert torch.isfinite(logits).all()
    with pytest.raises(ValueError, match="B x W x 512"):
        head(torch.randn(3, 16, 128))


def test_original_lstm_head_sizes() -> None:
    head = LstmHead()
    assert head.lstm.hidden_size == 512 and head.lstm.num_layers == 2 and head.lstm.dropout == 0.5
    linears = [module for module in head.classifier if isinstance(module, torch.nn.Linear)]
    assert [(layer.in_features, layer.out_features) for layer in linears] == [(512, 256), (256, 1)]


@pytest.mark.parametrize("head_type", EMBEDDING_HEADS)
def test_every_head_learns_a_separable_toy_task(head_type: str) -> None:
    torch.manual_seed(0)
    # Fakes' embeddings are shifted along one direction: every head must pick that up.
    x = torch.randn(128, 8, 32)
    y = (torch.arange(128) % 2).float()
    x[y == 1, :, 0] += 3.0
    small = {"lstm": {"hidden_size": 32, "fc_size": 16}, "temporal_conv": {"channels": 16}}
    head = build_head(head_type, input_dim=32, **small.get(head_type, {}))
    optimiser = torch.optim.Adam(head.parameters(), lr=3e-3)
    for _ in range(60):
        optimiser.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(head(x), y)
        loss.backward()
        optimiser.step()
    head.eval()
    accuracy = ((head(x) > 0).float() == y).float().mean()
    assert accuracy > 0.9


def test_unknown_head_and_bad_parameters() -> None:
    with pytest.raises(ValueError, match="head_type must be one of"):
        build_head("gru")
    with pytest.raises(ValueError, match="bad parameters for head 'lstm'"):
        build_head("lstm", hidden=3)
