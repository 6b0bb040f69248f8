"""The face encoder: crops in, L2-normalised 512-d embeddings out, on a chosen backend.

Preprocessing (facenet-pytorch's fixed standardisation) happens here, once, for every backend.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from types import TracebackType
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from engine.backends import AUTO_ORDER, BACKENDS, BackendRequest, EncoderBackend
from engine.config import EncoderConfig
from engine.errors import BackendUnavailableError
from engine.inception_resnet_v1 import EMBEDDING_SIZE, INPUT_SIZE_PX, InceptionResnetV1
from engine.weights import cache_dir, load_weights, state_digest

logger = logging.getLogger(__name__)

# facenet-pytorch's fixed_image_standardization, which FaceNet 2018 models were trained with.
_PIXEL_MEAN = 127.5
_PIXEL_SCALE = 128.0
# Guards the renormalisation of fp16 outputs against division by zero.
_NORM_EPS = 1e-12


@runtime_checkable
class FaceEncoder(Protocol):
    """Embeds face crops.

    ``encode`` takes an N x 160 x 160 x 3 uint8 RGB array (N >= 0) and returns N x 512 float32
    L2-normalised embeddings, row i for crop i. ``backend_name`` says which backend runs and
    ``weights_id`` which weights (consumers such as scorer checkpoints record it).
    """

    backend_name: str
    weights_id: str

    def encode(self, crops: np.ndarray) -> np.ndarray: ...

    def close(self) -> None: ...

    def __enter__(self) -> FaceEncoder: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None: ...


def preprocess(crops: np.ndarray) -> np.ndarray:
    """Validate N x 160 x 160 x 3 uint8 RGB crops and return N x 3 x 160 x 160 float32 in [-1, 1).

    Raises:
        TypeError: ``crops`` is not a numpy array.
        ValueError: wrong shape or dtype; the message says expected versus got.
    """
    if not isinstance(crops, np.ndarray):
        raise TypeError(
            f"crops must be a numpy array N x {INPUT_SIZE_PX} x {INPUT_SIZE_PX} x 3 uint8, "
            f"got {type(crops).__name__}"
        )
    expected = f"N x {INPUT_SIZE_PX} x {INPUT_SIZE_PX} x 3 uint8 RGB"
    if crops.ndim != 4 or crops.shape[1:] != (INPUT_SIZE_PX, INPUT_SIZE_PX, 3):
        hint = (
            " (a single crop needs a batch axis: crops[None])"
            if crops.shape == (INPUT_SIZE_PX, INPUT_SIZE_PX, 3)
            else ""
        )
        raise ValueError(f"crops must be {expected}, got shape {crops.shape} {crops.dtype}{hint}")
    if crops.dtype != np.uint8:
        value_range = (
            f", values {crops.min():.3g}..{crops.max():.3g}"
            if crops.size and crops.dtype.kind in "fiub"
            else ""
        )
        raise ValueError(f"crops must be {expected} with values 0..255, got dtype {crops.dtype}{value_range}")
    standardised = (crops.astype(np.float32) - _PIXEL_MEAN) / _PIXEL_SCALE
    return np.ascontiguousarray(standardised.transpose(0, 3, 1, 2))


class InceptionResnetEncoder:
    """``FaceEncoder`` over one ``EncoderBackend``; build it with ``load_encoder``."""

    def __init__(self, backend: EncoderBackend, weights_id: str, max_batch_size: int) -> None:
        self._backend: EncoderBackend | None = backend
        self.backend_name = backend.name
        self.weights_id = weights_id
        self.max_batch_size = max_batch_size

    def encode(self, crops: np.ndarray) -> np.ndarray:
        """N x 160 x 160 x 3 uint8 RGB -> N x 512 float32 L2-normalised (see ``FaceEncoder``)."""
        if self._backend is None:
            raise RuntimeError("encoder is closed")
        batch = preprocess(crops)
        if len(batch) == 0:
            return np.zeros((0, EMBEDDING_SIZE), dtype=np.float32)
        chunks = [
            self._backend.run(batch[start : start + self.max_batch_size])
            for start in range(0, len(batch), self.max_batch_size)
        ]
        embeddings = np.concatenate(chunks).astype(np.float32, copy=False)
        # Backends already normalise; renormalising in float32 removes fp16 rounding of the norm.
        norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
        return embeddings / np.maximum(norms, _NORM_EPS)

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()
            self._backend = None

    def __enter__(self) -> InceptionResnetEncoder:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def load_encoder(
    weights: str = "casia-webface",
    backend: str = "auto",
    device: str = "cpu",
    fp16: bool = False,
    state_overrides: Mapping[str, torch.Tensor] | None = None,
    *,
    max_batch_size: int = 64,
    opt_batch_size: int = 16,
) -> FaceEncoder:
    """Build a face encoder; see ``EncoderConfig`` for the arguments.

    ``state_overrides`` replaces some parameters/buffers of the base weights (e.g. layers a
    detector fine-tuned); the encoder's ``weights_id`` then becomes ``<base id>+<12 hex digest>``.
    ``casia-webface`` is converted into the cache on first use (a few seconds, logged at INFO).

    Raises:
        ValueError: bad arguments or overrides that do not fit the model.
        WeightsError: missing, corrupt or mismatched weights (the message names the file).
        BackendUnavailableError: the requested backend cannot run here (says what to install).
    """
    config = EncoderConfig(
        weights=weights,
        backend=backend,
        device=device,
        fp16=fp16,
        max_batch_size=max_batch_size,
        opt_batch_size=opt_batch_size,
    )
    return encoder_from_config(config, state_overrides)


def encoder_from_config(
    config: EncoderConfig, state_overrides: Mapping[str, torch.Tensor] | None = None
) -> FaceEncoder:
    """``load_encoder`` for an ``EncoderConfig`` (how ``stream`` builds it from the app config)."""
    backend_class = _choose_backend(config)
    loaded = load_weights(config.weights)
    state = dict(loaded.state_dict)
    weights_id = loaded.weights_id
    weights_digest = loaded.sha256
    if state_overrides:
        _apply_overrides(state, state_overrides)
        override_digest = state_digest(state_overrides)
        weights_id = f"{loaded.weights_id}+{override_digest[:12]}"
        weights_digest = hashlib.sha256(f"{loaded.sha256}+{override_digest}".encode()).hexdigest()
    model = InceptionResnetV1().eval()
    model.load_state_dict(state, strict=True)
    request = BackendRequest(
        model=model,
        weights_digest=weights_digest,
        device=config.device,
        fp16=config.fp16,
        max_batch_size=config.max_batch_size,
        opt_batch_size=config.opt_batch_size,
        cache_dir=cache_dir(),
    )
    backend = backend_class(request)
    logger.debug("encoder ready: backend %s, weights %s, device %s", backend.name, weights_id, config.device)
    return InceptionResnetEncoder(backend, weights_id, config.max_batch_size)


def _choose_backend(config: EncoderConfig) -> type[EncoderBackend]:
    if config.backend != "auto":
        backend_class = BACKENDS[config.backend]
        if not backend_class.is_available(config.device, config.fp16):
            raise BackendUnavailableError(
                f"encoder backend {config.backend!r} is not available on {config.device} "
                f"with fp16={config.fp16}: "
                f"needs {backend_class.requirement(config.device, config.fp16)}"
            )
        return backend_class
    for name in AUTO_ORDER:
        backend_class = BACKENDS[name]
        if backend_class.is_available(config.device, config.fp16):
            logger.info(
                "encoder backend 'auto' chose %s on %s (fp16=%s), the fastest available",
                name,
                config.device,
                config.fp16,
            )
            return backend_class
    raise BackendUnavailableError(
        f"no encoder backend can run on {config.device} with fp16={config.fp16}; torch needs "
        f"{BACKENDS['torch'].requirement(config.device, config.fp16)}"
    )


def _apply_overrides(state: dict[str, torch.Tensor], overrides: Mapping[str, torch.Tensor]) -> None:
    for key, value in overrides.items():
        if key not in state:
            raise ValueError(f"state_overrides key {key!r} is not a parameter or buffer of InceptionResnetV1")
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"state_overrides[{key!r}] must be a torch.Tensor, got {type(value).__name__}")
        if tuple(value.shape) != tuple(state[key].shape):
            raise ValueError(
                f"state_overrides[{key!r}] must have shape {tuple(state[key].shape)}, "
                f"got {tuple(value.shape)}"
            )
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise ValueError(f"state_overrides[{key!r}] must be finite, got NaN or infinite values")
        state[key] = value.detach().to("cpu", state[key].dtype)
