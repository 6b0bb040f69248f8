"""Identity evidence: inner and outer crops of an aligned face, one encoder batch, and its head."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.evidence import (
    EMBEDDING_DIM,
    INNER_COLS,
    INNER_ROWS,
    EvidenceEncoder,
    identity_disagreement,
    inner_crops,
    outer_crops,
)
from engine.heads import IdentityConsistencyHead, build_head, head_features


def striped_crops(count: int) -> np.ndarray:
    """Crops whose every row has its own colour, so where a pixel came from can be told."""
    rows = np.arange(160, dtype=np.uint8)[:, None, None]
    crop = np.broadcast_to(np.concatenate([rows, 255 - rows, rows // 2], axis=2), (160, 160, 3))
    return np.stack([np.ascontiguousarray(crop)] * count)


def test_inner_crop_is_the_inner_face_resized() -> None:
    crops = striped_crops(2)
    inner = inner_crops(crops)
    assert inner.shape == (2, 160, 160, 3) and inner.dtype == np.uint8
    # Top and bottom rows of the inner crop come from rows 44 and 139 of the aligned crop.
    assert abs(int(inner[0, 0, 80, 0]) - INNER_ROWS[0]) <= 1
    assert abs(int(inner[0, -1, 80, 0]) - (INNER_ROWS[1] - 1)) <= 1
    # Columns are constant in a striped crop, so resizing the 72 columns keeps every row's colour.
    assert np.array_equal(inner[0, :, 0], inner[0, :, -1])
    assert INNER_COLS == (44, 116)


def test_outer_crop_removes_the_inner_face_and_keeps_the_head() -> None:
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, (3, 160, 160, 3), dtype=np.uint8)
    outer = outer_crops(crops)
    assert outer.shape == crops.shape and outer.dtype == np.uint8
    # The corners (hair, background) are the crop's own pixels.
    assert np.array_equal(outer[:, :20, :20], crops[:, :20, :20])
    assert np.array_equal(outer[:, -10:, -20:], crops[:, -10:, -20:])
    # Eyes, nose and mouth are gone: the centre is smooth where the crop was noise.
    centre_crop = crops[:, 70:110, 60:100].astype(float)
    centre_outer = outer[:, 70:110, 60:100].astype(float)
    assert centre_outer.std(axis=(1, 2)).max() < 0.25 * centre_crop.std(axis=(1, 2)).min()


class RecordingEncoder:
    """Stands in for FaceEncoder: records its calls, embeds a crop as its normalised mean colour."""

    backend_name = "fake"
    precision = "fp32"
    weights_id = "fake@0"

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.closed = False

    def encode(self, crops: np.ndarray) -> np.ndarray:
        self.calls.append(len(crops))
        out = np.zeros((len(crops), EMBEDDING_DIM), np.float32)
        out[:, :3] = crops.reshape(len(crops), -1, 3).mean(axis=1) + 1.0
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    def close(self) -> None:
        self.closed = True


def test_evidence_encoder_makes_one_batch_and_routes_rows_back() -> None:
    base = RecordingEncoder()
    crops = striped_crops(3)
    crops[1] = 200
    with EvidenceEncoder(base) as encoder:
        features = encoder.encode(crops)
        assert encoder.encode(np.zeros((0, 160, 160, 3), np.uint8)).shape == (0, 2 * EMBEDDING_DIM)
    assert base.calls == [6]  # inner and outer of all three crops in one call
    assert base.closed
    assert features.shape == (3, 2 * EMBEDDING_DIM) and features.dtype == np.float32
    np.testing.assert_allclose(features[:, :EMBEDDING_DIM], base.encode(inner_crops(crops)), atol=1e-6)
    np.testing.assert_allclose(features[:, EMBEDDING_DIM:], base.encode(outer_crops(crops)), atol=1e-6)
    # A uniform crop: inner and outer look the same, so they agree fully.
    assert identity_disagreement(features)[1] == pytest.approx(-1.0, abs=1e-5)
    with pytest.raises(ValueError, match="N x 160 x 160 x 3 uint8"):
        encoder.encode(crops[:, :100])


def test_identity_head_reads_inner_outer_windows() -> None:
    assert head_features("identity") == "inner_outer" and head_features("lstm") == "embedding"
    head = build_head("identity", projection_dim=16, hidden_size=4).eval()
    assert isinstance(head, IdentityConsistencyHead)
    same = torch.nn.functional.normalize(torch.randn(2, 6, EMBEDDING_DIM), dim=-1)
    agree = torch.cat([same, same], dim=-1)
    disagree = torch.cat([same, -same], dim=-1)
    with torch.no_grad():
        logits = head(torch.cat([agree, disagree]))
        features = head.frame_features(agree)
    assert logits.shape == (4,)
    # Raw cosine is 1 when inner and outer agree and -1 when they are opposite.
    torch.testing.assert_close(features[..., 0], torch.ones(2, 6))
    # Untrained, the sequence part adds nothing and disagreement raises the fake logit.
    assert logits[2:].min() > logits[:2].max()
    with pytest.raises(ValueError, match="B x W x 1024"):
        head(torch.zeros(1, 4, EMBEDDING_DIM))
    with pytest.raises(ValueError, match="input_dim must be 1024"):
        IdentityConsistencyHead(input_dim=512)
