"""The face encoder: crops in, L2-normalised 512-d embeddings out, on a chosen backend.

Preprocessing (facenet-pytorch's fixed standardisation) happens here, once, for every backend.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Mapping
from types import TracebackType
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from engine.backends import AUTO_ORDER, BACKENDS, BackendRequest, EncoderBackend
from engine.backends import int8 as int8_build
from engine.backends.int8 import CalibrationError, CalibrationSource
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
    L2-normalised embeddings, row i for crop i. ``backend_name`` says which backend runs,
    ``weights_id`` which weights (consumers such as scorer checkpoints record it) and
    ``precision`` at what numeric precision (``fp32`` or ``int8``).
    """

    backend_name: str
    weights_id: str
    precision: str

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
    """``FaceEncoder`` over one ``EncoderBackend``; build it with ``load_encoder``.

    ``precision`` says what runs: ``fp32`` or ``int8`` (never ``auto``: that is resolved at load);
    ``int8_report`` how the int8 model was built and its parity with fp32 (None for fp32).
    """

    def __init__(
        self,
        backend: EncoderBackend,
        weights_id: str,
        max_batch_size: int,
        precision: str = "fp32",
        int8_report: int8_build.Int8Report | None = None,
    ) -> None:
        self._backend: EncoderBackend | None = backend
        self.backend_name = backend.name
        self.weights_id = weights_id
        self.max_batch_size = max_batch_size
        self.precision = precision
        self.int8_report = int8_report

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
    precision: str = "fp32",
    calibration: CalibrationSource | None = None,
) -> FaceEncoder:
    """Build a face encoder; see ``EncoderConfig`` for the arguments.

    ``precision="int8"`` (onnxruntime on CPU) runs the statically quantised model, built on first
    use for these weights and cached; ``calibration`` gives the real face crops it is built from
    (a ``CalibrationSet``, a ``.npz`` path, or a function returning a set, called only to build);
    None reads the crops ``deepwatch weights calibrate`` cached. ``precision="auto"`` takes int8
    only on a CPU with VNNI or AMX and only if the built model passed its parity check.

    ``state_overrides`` replaces some parameters/buffers of the base weights (e.g. layers a
    detector fine-tuned); the encoder's ``weights_id`` then becomes ``<base id>+<12 hex digest>``.
    ``casia-webface`` is converted into the cache on first use (a few seconds, logged at INFO).

    Raises:
        ValueError: bad arguments or overrides that do not fit the model.
        WeightsError: missing, corrupt or mismatched weights (the message names the file).
        BackendUnavailableError: the requested backend cannot run here (says what to install).
        CalibrationError: int8 was asked for, no int8 model is cached for these weights and no
            real face crops were given to build one (the message says how to make them).
    """
    config = EncoderConfig(
        weights=weights,
        backend=backend,
        device=device,
        fp16=fp16,
        max_batch_size=max_batch_size,
        opt_batch_size=opt_batch_size,
        precision=precision,
    )
    return encoder_from_config(config, state_overrides, calibration=calibration)


def encoder_from_config(
    config: EncoderConfig,
    state_overrides: Mapping[str, torch.Tensor] | None = None,
    *,
    calibration: CalibrationSource | None = None,
) -> FaceEncoder:
    """``load_encoder`` for an ``EncoderConfig`` (how ``stream`` builds it from the app config).

    ``calibration`` (see ``load_encoder``) is used when ``config.calibration`` is None.
    """
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
        calibration=int8_build.calibration_provider(config.calibration or calibration, cache_dir()),
    )
    precision = resolve_precision(config.precision, backend_class.name, request)
    request = dataclasses.replace(request, precision=precision)
    backend = backend_class(request)
    logger.debug(
        "encoder ready: backend %s (%s), weights %s, device %s",
        backend.name,
        precision,
        weights_id,
        config.device,
    )
    report = int8_build.cached_report(request) if precision == "int8" else None
    return InceptionResnetEncoder(backend, weights_id, config.max_batch_size, precision, report)


def resolve_precision(requested: str, backend_name: str, request: BackendRequest) -> str:
    """``fp32`` or ``int8`` for a requested precision; ``auto`` is decided here and logged once.

    ``auto`` takes int8 only with the onnxruntime backend on CPU, on a CPU whose flags
    (``int8_build.cpu_flags``) include VNNI or AMX, and when the int8 model for these weights
    (built now if needed and calibration crops exist) passed its parity check against fp32.
    """
    if requested != "auto":
        return requested
    if backend_name != "onnxruntime" or request.device != "cpu":
        return "fp32"
    if not int8_build.has_fast_int8(int8_build.cpu_flags()):
        logger.info("encoder precision 'auto' chose fp32: this CPU has no VNNI or AMX int8 instructions")
        return "fp32"
    report = int8_build.cached_report(request)
    if report is None:
        try:
            calibration = request.calibration or int8_build.calibration_provider(None, request.cache_dir)
            _, report = int8_build.ensure_int8(request, calibration)
        except CalibrationError as error:
            logger.warning("encoder precision 'auto' chose fp32: no int8 model could be built (%s)", error)
            return "fp32"
    if not report.passed:
        logger.info(
            "encoder precision 'auto' chose fp32: the int8 model's min cosine to fp32 was %.4f (< %.2f)",
            report.min_cosine,
            int8_build.PARITY_MIN_COSINE,
        )
        return "fp32"
    logger.info(
        "encoder precision 'auto' chose int8 (VNNI/AMX CPU, min cosine %.4f to fp32)", report.min_cosine
    )
    return "int8"


def _choose_backend(config: EncoderConfig) -> type[EncoderBackend]:
    if config.precision == "int8" and config.backend == "auto":
        # Only onnxruntime runs the quantised model (EncoderConfig allows int8 on CPU only).
        config = dataclasses.replace(config, backend="onnxruntime")
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
