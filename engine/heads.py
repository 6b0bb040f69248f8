"""Sequence heads: map a window of face embeddings (B x W x D) to one fake logit per window.

Every head returns logits (not probabilities) so it trains with ``BCEWithLogitsLoss`` and the
scorer applies the sigmoid. Heads are built by name from ``HEADS`` with plain keyword
parameters, which is also how a checkpoint records them.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

EMBEDDING_DIM = 512


def _check_window(x: torch.Tensor, input_dim: int) -> None:
    if x.ndim != 3 or x.shape[2] != input_dim:
        raise ValueError(f"window batch must be B x W x {input_dim}, got {tuple(x.shape)}")


class LstmHead(nn.Module):
    """The original recipe: stacked LSTM over the window, last hidden state -> linear -> 1.

    Defaults are the original head: 2 layers, hidden 512, dropout 0.5, linear 256 -> 1.
    """

    def __init__(
        self,
        input_dim: int = EMBEDDING_DIM,
        hidden_size: int = 512,
        num_layers: int = 2,
        dropout: float = 0.5,
        fc_size: int = 256,
    ) -> None:
        super().__init__()
        self.input_dim = input_dim
        self.lstm = nn.LSTM(
            input_dim,
            hidden_size,
            num_layers=num_layers,
            batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.classifier = nn.Sequential(
            nn.Linear(hidden_size, fc_size), nn.ReLU(), nn.Dropout(dropout), nn.Linear(fc_size, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_window(x, self.input_dim)
        output, _ = self.lstm(x)
        return self.classifier(output[:, -1]).squeeze(1)


class TemporalConvHead(nn.Module):
    """Two 1-D convolutions over time, global average pool, linear -> 1."""

    def __init__(
        self, input_dim: int = EMBEDDING_DIM, channels: int = 128, kernel_size: int = 3, dropout: float = 0.3
    ) -> None:
        super().__init__()
        self.input_dim = input_dim
        padding = kernel_size // 2
        self.body = nn.Sequential(
            nn.Dropout(dropout),
            nn.Conv1d(input_dim, channels, kernel_size, padding=padding),
            nn.ReLU(),
            nn.Conv1d(channels, channels, kernel_size, padding=padding),
            nn.ReLU(),
        )
        self.out = nn.Linear(channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_window(x, self.input_dim)
        features = self.body(x.transpose(1, 2)).mean(dim=2)
        return self.out(features).squeeze(1)


class TransformerHead(nn.Module):
    """A small transformer encoder over the projected window, mean pooled, linear -> 1."""

    def __init__(
        self,
        input_dim: int = EMBEDDING_DIM,
        model_dim: int = 64,
        num_heads: int = 4,
        num_layers: int = 2,
        dropout: float = 0.2,
        max_window: int = 64,
    ) -> None:
        super().__init__()
        self.input_dim = input_dim
        self.max_window = max_window
        self.project = nn.Linear(input_dim, model_dim)
        self.position = nn.Parameter(torch.zeros(1, max_window, model_dim))
        layer = nn.TransformerEncoderLayer(
            model_dim, num_heads, dim_feedforward=model_dim * 2, dropout=dropout, batch_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, num_layers=num_layers, enable_nested_tensor=False)
        self.out = nn.Linear(model_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_window(x, self.input_dim)
        if x.shape[1] > self.max_window:
            raise ValueError(f"window length must be <= max_window={self.max_window}, got {x.shape[1]}")
        tokens = self.project(x) + self.position[:, : x.shape[1]]
        return self.out(self.encoder(tokens).mean(dim=1)).squeeze(1)


class FrameMeanHead(nn.Module):
    """No temporal model: a per-frame linear score, averaged over the window (in logit space)."""

    def __init__(self, input_dim: int = EMBEDDING_DIM, dropout: float = 0.2) -> None:
        super().__init__()
        self.input_dim = input_dim
        self.out = nn.Sequential(nn.Dropout(dropout), nn.Linear(input_dim, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_window(x, self.input_dim)
        return self.out(x).squeeze(2).mean(dim=1)


class IdentityConsistencyHead(nn.Module):
    """Identity evidence over the window: does the inner face belong to the outer face's person?

    Input: B x W x 1024 windows of ``engine.evidence`` features (inner embedding, outer
    embedding). Per frame, two projections (inner and outer, trained so that the two parts of a
    real face agree and those of a face swap do not, the idea of ICT, CVPR 2022) give a learned
    cosine; with the raw cosine of the two embeddings it makes a frame logit. An LSTM over the
    frames' (raw cosine, learned cosine) adds what the sequence shows (flicker of a swap, a
    consistently mismatched head); its output starts at zero, so an untrained LSTM leaves the mean
    frame logit.
    """

    features = "inner_outer"

    def __init__(
        self,
        input_dim: int = 2 * EMBEDDING_DIM,
        projection_dim: int = 128,
        hidden_size: int = 16,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if input_dim != 2 * EMBEDDING_DIM:
            raise ValueError(f"input_dim must be {2 * EMBEDDING_DIM} (inner + outer), got {input_dim}")
        self.input_dim = input_dim

        def projection() -> nn.Sequential:
            return nn.Sequential(
                nn.Dropout(dropout),
                nn.Linear(EMBEDDING_DIM, 256),
                nn.ReLU(),
                nn.Linear(256, projection_dim),
            )

        self.project_inner = projection()
        self.project_outer = projection()
        # frame logit = weights . (raw cosine, learned cosine) + bias; disagreement means fake.
        self.frame = nn.Linear(2, 1)
        with torch.no_grad():
            self.frame.weight.copy_(torch.tensor([[-4.0, -4.0]]))
            self.frame.bias.fill_(4.0)
        self.lstm = nn.LSTM(2, hidden_size, batch_first=True)
        self.sequence = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.sequence.weight)
        nn.init.zeros_(self.sequence.bias)

    def projected(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """L2-normalised projections of the inner and outer embeddings (... x projection_dim each)."""
        inner = nn.functional.normalize(self.project_inner(x[..., :EMBEDDING_DIM]), dim=-1)
        outer = nn.functional.normalize(self.project_outer(x[..., EMBEDDING_DIM:]), dim=-1)
        return inner, outer

    def frame_features(self, x: torch.Tensor) -> torch.Tensor:
        """Per frame (raw cosine, learned cosine) of inner and outer: ... x 2."""
        raw = (x[..., :EMBEDDING_DIM] * x[..., EMBEDDING_DIM:]).sum(dim=-1)
        inner, outer = self.projected(x)
        return torch.stack([raw, (inner * outer).sum(dim=-1)], dim=-1)

    def frame_logits(self, x: torch.Tensor) -> torch.Tensor:
        """One fake logit per frame (... x 1024 in, ... out), without the sequence model."""
        return self.frame(self.frame_features(x)).squeeze(-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_window(x, self.input_dim)
        features = self.frame_features(x)
        output, _ = self.lstm(features)
        return self.frame(features).squeeze(-1).mean(dim=1) + self.sequence(output[:, -1]).squeeze(1)


HEADS: dict[str, type[nn.Module]] = {
    "lstm": LstmHead,
    "identity": IdentityConsistencyHead,
    "temporal_conv": TemporalConvHead,
    "transformer": TransformerHead,
    "frame_mean": FrameMeanHead,
}


def head_features(head_type: str) -> str:
    """What a head reads per frame: "embedding" (the 512-d crop embedding) or "inner_outer"
    (``engine.evidence`` features: inner and outer embeddings of the crop)."""
    if head_type not in HEADS:
        raise ValueError(f"head_type must be one of {sorted(HEADS)}, got {head_type!r}")
    return str(getattr(HEADS[head_type], "features", "embedding"))


def build_head(head_type: str, **params: Any) -> nn.Module:
    """Build a head by name (a key of ``HEADS``) with its keyword parameters."""
    if head_type not in HEADS:
        raise ValueError(f"head_type must be one of {sorted(HEADS)}, got {head_type!r}")
    try:
        return HEADS[head_type](**params)
    except TypeError as error:
        raise ValueError(f"bad parameters for head {head_type!r}: {params!r} ({error})") from error
