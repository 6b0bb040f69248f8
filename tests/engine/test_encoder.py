"""load_encoder's public contract: input validation, batching, overrides, config and backend choice."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from engine import BackendUnavailableError, EncoderConfig, FaceEncoder, load_encoder
from engine.encoder import preprocess
from engine.weights import load_weights


@pytest.fixture(scope="module")
def crops() -> np.ndarray:
    """Five different 160 x 160 crops of skimage's astronaut (face and non-face regions)."""
    from skimage import data
    from skimage.transform import resize

    image = data.astronaut()
    regions = [
        (30, 230, 150, 320),
        (20, 250, 130, 340),
        (300, 460, 300, 460),
        (0, 160, 0, 160),
        (350, 512, 0, 160),
    ]
    return np.stack(
        [
            (resize(image[y0:y1, x0:x1], (160, 160), anti_aliasing=True) * 255).round().astype(np.uint8)
            for y0, y1, x0, x1 in regions
        ]
    )


def test_encode_returns_l2_normalised_float32_rows(torch_encoder: FaceEncoder, crops: np.ndarray) -> None:
    embeddings = torch_encoder.encode(crops)
    assert embeddings.shape == (5, 512) and embeddings.dtype == np.float32
    assert np.allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    assert isinstance(torch_encoder, FaceEncoder)
    assert torch_encoder.weights_id.startswith("casia-webface@8beef909d988")
    # Row i belongs to crop i: encoding one crop alone gives the same row.
    assert np.allclose(torch_encoder.encode(crops[2:3])[0], embeddings[2], atol=1e-5)


def test_empty_batch_gives_an_empty_result(torch_encoder: FaceEncoder) -> None:
    result = torch_encoder.encode(np.zeros((0, 160, 160, 3), np.uint8))
    assert result.shape == (0, 512) and result.dtype == np.float32


def test_preprocessing_is_facenet_fixed_standardisation() -> None:
    crops = np.zeros((1, 160, 160, 3), np.uint8)
    crops[0, 0, 0] = (0, 255, 128)
    out = preprocess(crops)
    assert out.shape == (1, 3, 160, 160) and out.dtype == np.float32
    assert out[0, :, 0, 0].tolist() == [-127.5 / 128, 127.5 / 128, 0.5 / 128]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (
            np.zeros((160, 160, 3), np.uint8),
            r"N x 160 x 160 x 3 uint8 RGB, got shape \(160, 160, 3\).*batch axis",
        ),
        (np.zeros((2, 3, 160, 160), np.uint8), r"got shape \(2, 3, 160, 160\)"),
        (np.zeros((2, 112, 112, 3), np.uint8), r"got shape \(2, 112, 112, 3\)"),
        (np.zeros((2, 160, 160, 4), np.uint8), r"got shape \(2, 160, 160, 4\)"),
        (
            np.full((2, 160, 160, 3), 0.5, np.float32),
            r"values 0\.\.255, got dtype float32, values 0\.5\.\.0\.5",
        ),
        (np.full((1, 160, 160, 3), 300, np.int64), r"got dtype int64, values 300\.\.300"),
    ],
)
def test_bad_crops_raise_value_error_saying_expected_and_got(
    torch_encoder: FaceEncoder, bad: np.ndarray, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        torch_encoder.encode(bad)


def test_non_array_input_raises_type_error(torch_encoder: FaceEncoder) -> None:
    with pytest.raises(TypeError, match=r"numpy array.*got list"):
        torch_encoder.encode([[0]])  # type: ignore[arg-type]


def test_inputs_larger_than_max_batch_are_split(torch_encoder: FaceEncoder, crops: np.ndarray) -> None:
    with load_encoder(backend="torch", max_batch_size=2, opt_batch_size=1) as small_batches:
        split = small_batches.encode(crops)
    assert np.abs(split - torch_encoder.encode(crops)).max() < 1e-5


def test_closed_encoder_refuses_to_encode(encoder_cache_dir: object, crops: np.ndarray) -> None:
    encoder = load_encoder(backend="torch")
    encoder.close()
    encoder.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        encoder.encode(crops)


def test_state_overrides_replace_weights_and_change_the_id(
    torch_encoder: FaceEncoder, crops: np.ndarray
) -> None:
    base = load_weights("casia-webface").state_dict
    overrides = {
        "last_bn.bias": base["last_bn.bias"] + 0.5,
        "last_linear.weight": base["last_linear.weight"] * 1.1,
    }
    with load_encoder(backend="torch", state_overrides=overrides) as tuned:
        assert tuned.weights_id.startswith(torch_encoder.weights_id + "+")
        assert len(tuned.weights_id) == len(torch_encoder.weights_id) + 13
        diff = np.abs(tuned.encode(crops[:2]) - torch_encoder.encode(crops[:2])).max()
    assert diff > 1e-3
    # Same overrides, same id: the id is a digest of the override values.
    with load_encoder(backend="torch", state_overrides=dict(overrides)) as again:
        assert again.weights_id == tuned.weights_id


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"no_such_layer.weight": torch.zeros(3)}, "'no_such_layer.weight' is not a parameter"),
        ({"last_bn.bias": torch.zeros(7)}, r"must have shape \(512,\), got \(7,\)"),
        ({"last_bn.bias": torch.full((512,), float("nan"))}, "must be finite"),
        ({"last_bn.bias": np.zeros(512)}, "must be a torch.Tensor, got ndarray"),
    ],
)
def test_bad_state_overrides_raise_value_error(
    encoder_cache_dir: object, overrides: dict, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        load_encoder(backend="torch", state_overrides=overrides)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"backend": "openvino"}, r"backend must be one of .*got 'openvino'"),
        ({"device": "gpu"}, r"device must be 'cpu', 'cuda' or 'cuda:N', got 'gpu'"),
        ({"fp16": True}, "fp16 must be False on device 'cpu'"),
        ({"max_batch_size": 0}, r"max_batch_size must be an int in \[1, 1024\], got 0"),
        ({"opt_batch_size": 128}, r"opt_batch_size must be <= max_batch_size \(64\), got 128"),
        ({"weights": ""}, "weights must be a registry name or a file path"),
        ({"precision": "int4"}, r"precision must be one of .*got 'int4'"),
        ({"precision": "int8", "backend": "torch"}, "precision 'int8' needs backend 'onnxruntime'"),
        ({"calibration": ""}, "calibration must be a .npz file path or null"),
    ],
)
def test_encoder_config_validates_each_field(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EncoderConfig(**kwargs)


def test_encoder_config_is_frozen() -> None:
    config = EncoderConfig()
    with pytest.raises(AttributeError):
        config.backend = "torch"  # type: ignore[misc]


def test_tensorrt_on_cpu_says_what_is_needed(encoder_cache_dir: object) -> None:
    with pytest.raises(BackendUnavailableError, match=r"tensorrt.*not available on cpu.*device='cuda'"):
        load_encoder(backend="tensorrt")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cuda_without_a_gpu_says_what_is_needed(encoder_cache_dir: object) -> None:
    with pytest.raises(BackendUnavailableError, match=r"torch.*not available on cuda.*NVIDIA GPU"):
        load_encoder(backend="torch", device="cuda")


def test_auto_picks_onnxruntime_on_cpu_and_logs_it_once(
    encoder_cache_dir: object, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="engine"), load_encoder() as encoder:
        assert encoder.backend_name == "onnxruntime"
    choices = [r for r in caplog.records if "'auto' chose" in r.getMessage()]
    assert len(choices) == 1 and "onnxruntime" in choices[0].getMessage()
