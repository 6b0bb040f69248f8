"""Every backend agrees with the torch reference on real face crops."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from engine import load_encoder
from engine.backends import AUTO_ORDER, BACKENDS, BackendRequest, EncoderBackend
from engine.encoder import FaceEncoder
from engine.inception_resnet_v1 import InceptionResnetV1
from engine.weights import load_weights
from tests.engine.conftest import FIGURES
from tests.engine.face_crops import FaceCrop

MIN_ORT_COSINE = 0.9999
MIN_GPU_COSINE = 0.999

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture(scope="module")
def real_crops(talking_head_crops: list[FaceCrop]) -> np.ndarray:
    return np.stack([c.image for c in talking_head_crops[::3]])


def test_registry_maps_names_to_backend_classes() -> None:
    assert set(BACKENDS) == {"torch", "onnxruntime", "tensorrt"}
    assert set(AUTO_ORDER) == set(BACKENDS)
    for name, backend_class in BACKENDS.items():
        assert issubclass(backend_class, EncoderBackend) and backend_class.name == name
    assert not BACKENDS["tensorrt"].is_available("cpu", False)
    assert not BACKENDS["onnxruntime"].is_available("cuda", True)
    assert "fp16=False" in BACKENDS["onnxruntime"].requirement("cuda", True)


@pytest.mark.slow
def test_onnxruntime_matches_torch_on_real_crops(
    torch_encoder: FaceEncoder, ort_encoder: FaceEncoder, real_crops: np.ndarray
) -> None:
    cosine = _cosine(ort_encoder.encode(real_crops), torch_encoder.encode(real_crops))
    FIGURES["onnxruntime vs torch min cosine"] = f"{cosine.min():.7f} over {len(real_crops)} real crops"
    assert len(real_crops) >= 30
    assert cosine.min() >= MIN_ORT_COSINE


def test_onnx_export_is_cached_by_weights_hash(ort_encoder: FaceEncoder, encoder_cache_dir: Path) -> None:
    exports = sorted((encoder_cache_dir / "onnx").glob("*.onnx"))
    assert len(exports) == 1 and ort_encoder.weights_id.split("@")[1] in exports[0].name
    modified = exports[0].stat().st_mtime_ns
    with load_encoder(backend="onnxruntime") as again:
        assert again.encode(np.zeros((1, 160, 160, 3), np.uint8)).shape == (1, 512)
    assert exports[0].stat().st_mtime_ns == modified


def test_onnxruntime_handles_any_batch_size(ort_encoder: FaceEncoder, torch_encoder: FaceEncoder) -> None:
    crops = np.random.default_rng(0).integers(0, 256, (7, 160, 160, 3), dtype=np.uint8)
    whole = ort_encoder.encode(crops)
    assert np.abs(whole[3:4] - ort_encoder.encode(crops[3:4])).max() < 1e-5
    assert _cosine(whole, torch_encoder.encode(crops)).min() >= MIN_ORT_COSINE


@pytest.mark.slow
def test_onnxruntime_runs_a_fine_tuned_encoder_like_torch(
    torch_encoder: FaceEncoder, real_crops: np.ndarray, encoder_cache_dir: Path
) -> None:
    # Overrides in the stem, the middle and the top (what low-stage and upper fine-tuning change):
    # the exported ONNX graph must carry them, not the base weights.
    base = load_weights("casia-webface").state_dict
    generator = torch.Generator().manual_seed(0)
    overrides = {
        name: base[name] * (1 + 0.05 * torch.randn(base[name].shape, generator=generator))
        for name in ("conv2d_1a.conv.weight", "repeat_1.0.conv2d.weight", "block8.conv2d.weight")
    }
    overrides["last_linear.weight"] = base["last_linear.weight"].half().float()
    with (
        load_encoder(backend="torch", state_overrides=overrides) as tuned_torch,
        load_encoder(backend="onnxruntime", state_overrides=overrides) as tuned_ort,
    ):
        assert tuned_ort.weights_id == tuned_torch.weights_id != torch_encoder.weights_id
        reference = tuned_torch.encode(real_crops)
        cosine = _cosine(tuned_ort.encode(real_crops), reference)
    FIGURES["onnxruntime vs torch, fine-tuned encoder, min cosine"] = f"{cosine.min():.7f}"
    assert cosine.min() >= MIN_ORT_COSINE
    # The overrides matter: the tuned embeddings are not the base ones.
    assert _cosine(reference, torch_encoder.encode(real_crops)).mean() < 0.9999


@pytest.mark.parametrize("name", ["torch", "onnxruntime"])
def test_backend_runs_batches_and_closes_as_a_context_manager(name: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    request = BackendRequest(
        model=InceptionResnetV1().eval(),
        weights_digest="0" * 64,
        device="cpu",
        fp16=False,
        max_batch_size=4,
        opt_batch_size=2,
        cache_dir=tmp_path,
    )
    batch = np.random.default_rng(1).uniform(-1, 1, (3, 3, 160, 160)).astype(np.float32)
    with BACKENDS[name](request) as backend:
        embeddings = backend.run(batch)
    assert embeddings.shape == (3, 512) and embeddings.dtype == np.float32
    assert np.allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    with pytest.raises(RuntimeError, match="closed"):
        backend.run(batch)


@pytest.mark.gpu
@requires_cuda
@pytest.mark.parametrize(("backend", "fp16"), [("torch", False), ("torch", True), ("onnxruntime", False)])
def test_cuda_backends_match_cpu_torch(
    torch_encoder: FaceEncoder, real_crops: np.ndarray, backend: str, fp16: bool
) -> None:
    if backend == "onnxruntime" and not BACKENDS["onnxruntime"].is_available("cuda", False):
        pytest.skip("onnxruntime-gpu (CUDAExecutionProvider) not installed")
    with load_encoder(backend=backend, device="cuda", fp16=fp16) as encoder:
        cosine = _cosine(encoder.encode(real_crops), torch_encoder.encode(real_crops))
    FIGURES[f"{backend} cuda fp16={fp16} vs cpu torch min cosine"] = f"{cosine.min():.6f}"
    assert cosine.min() >= (MIN_GPU_COSINE if fp16 else MIN_ORT_COSINE)


@pytest.mark.gpu
@requires_cuda
@pytest.mark.parametrize("fp16", [False, True])
def test_tensorrt_engine_is_built_checked_cached_and_matches_torch(
    torch_encoder: FaceEncoder, real_crops: np.ndarray, encoder_cache_dir: Path, fp16: bool
) -> None:
    pytest.importorskip("tensorrt")
    with load_encoder(
        backend="tensorrt", device="cuda", fp16=fp16, max_batch_size=32, opt_batch_size=8
    ) as encoder:
        cosine = _cosine(encoder.encode(real_crops), torch_encoder.encode(real_crops))
    engines = list((encoder_cache_dir / "tensorrt").glob(f"*-{'fp16' if fp16 else 'fp32'}-b8-32.engine"))
    assert len(engines) == 1
    import tensorrt

    assert f"trt{tensorrt.__version__}" in engines[0].name
    FIGURES[f"tensorrt fp16={fp16} vs cpu torch min cosine"] = f"{cosine.min():.6f}"
    assert cosine.min() >= MIN_GPU_COSINE
    # A second load reuses the cached engine.
    modified = engines[0].stat().st_mtime_ns
    with load_encoder(backend="tensorrt", device="cuda", fp16=fp16, max_batch_size=32, opt_batch_size=8):
        pass
    assert engines[0].stat().st_mtime_ns == modified
