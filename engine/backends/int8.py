"""The int8 encoder: ONNX Runtime static quantisation of the ONNX export, checked against fp32.

Built once per set of weights (base file plus fine-tuned overrides) and cached beside the fp32
export, keyed by the weights' sha256: ``<cache>/onnx/inception_resnet_v1-<digest>-int8-qdq-...onnx``
with a JSON report next to it (calibration set, parity figures). Quantisation is QDQ with
per-channel int8 weights (reduced to 7 bits, see ``_quantise``) and uint8 activations (the pair
ONNX Runtime's CPU kernels run fastest),
calibrated by min/max on real face crops. Random input would set the activation ranges for
noise, not faces, so a build without real crops is refused (``CalibrationError``).

The parity check runs the fp32 and int8 models on held-out crops (identities not used for
calibration when the set names them) and records the cosine of their embeddings; ``auto``
precision takes int8 only if every held-out crop reached ``PARITY_MIN_COSINE`` and the CPU has
VNNI or AMX (without them int8 matrix products are emulated and seldom beat fp32).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from engine.backends.base import BackendRequest
from engine.backends.onnx_export import INPUT_NAME, OPSET_VERSION, OUTPUT_NAME, ensure_onnx
from engine.inception_resnet_v1 import INPUT_SIZE_PX

logger = logging.getLogger(__name__)

# The issue's parity bar: every held-out crop's int8 embedding within this cosine of fp32's.
PARITY_MIN_COSINE = 0.99
# Fewer crops than this give min/max ranges of a handful of faces, not of faces in general.
MIN_CALIBRATION_CROPS = 32
# Crops per calibration batch: bounds the memory of the augmented model's recorded activations.
_CALIBRATION_BATCH = 16
# Share of the crops (whole identities where known) kept out of calibration for the parity check.
_HELD_OUT_FRACTION = 0.2
# CPU flags (Linux /proc/cpuinfo names) of instructions that run int8 dot products natively.
FAST_INT8_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})
REPORT_FORMAT = 1


class CalibrationError(ValueError):
    """An int8 model cannot be built: no usable real face crops to calibrate on."""


@dataclass(frozen=True)
class CalibrationSet:
    """Real face crops to calibrate on.

    Attributes:
        crops: N x 160 x 160 x 3 uint8 RGB face crops (aligned as the live pipeline aligns them).
        groups: (N,) identity of each crop; held-out crops are whole identities. Empty when
            unknown (then every fifth crop is held out).
        description: where the crops come from, recorded in the int8 report.
    """

    crops: np.ndarray
    groups: tuple[str, ...]
    description: str

    def __post_init__(self) -> None:
        expected = f"N x {INPUT_SIZE_PX} x {INPUT_SIZE_PX} x 3 uint8"
        if (
            not isinstance(self.crops, np.ndarray)
            or self.crops.ndim != 4
            or self.crops.shape[1:] != (INPUT_SIZE_PX, INPUT_SIZE_PX, 3)
            or self.crops.dtype != np.uint8
        ):
            got = (
                f"{self.crops.shape} {self.crops.dtype}"
                if isinstance(self.crops, np.ndarray)
                else type(self.crops).__name__
            )
            raise CalibrationError(f"calibration crops must be {expected}, got {got} ({self.description})")
        if len(self.crops) < MIN_CALIBRATION_CROPS:
            raise CalibrationError(
                f"int8 calibration needs at least {MIN_CALIBRATION_CROPS} real face crops, "
                f"got {len(self.crops)} ({self.description})"
            )
        if self.groups and len(self.groups) != len(self.crops):
            raise CalibrationError(
                f"calibration groups must name one identity per crop: {len(self.crops)} crops, "
                f"got {len(self.groups)} groups ({self.description})"
            )

    def split(self) -> tuple[np.ndarray, np.ndarray]:
        """(calibration crops, held-out crops): every fifth identity, or crop, is held out."""
        if self.groups and len(set(self.groups)) >= 5:
            names = sorted(set(self.groups))
            held = set(names[:: round(1 / _HELD_OUT_FRACTION)])
            mask = np.array([group in held for group in self.groups])
        else:
            mask = np.arange(len(self.crops)) % round(1 / _HELD_OUT_FRACTION) == 0
        return self.crops[~mask], self.crops[mask]


def load_calibration_file(path: str | Path) -> CalibrationSet:
    """Read a ``.npz`` holding ``crops`` (N x 160 x 160 x 3 uint8) and optionally ``groups`` (N,)."""
    path = Path(path).expanduser()
    try:
        with np.load(path, allow_pickle=False) as data:
            if "crops" not in data.files:
                raise CalibrationError(
                    f"calibration file {path} must hold an array 'crops', got arrays {data.files}"
                )
            crops = data["crops"]
            groups = tuple(str(g) for g in data["groups"]) if "groups" in data.files else ()
            origin = f" ({data['description']})" if "description" in data.files else ""
    except (OSError, ValueError) as error:
        if isinstance(error, CalibrationError):
            raise
        raise CalibrationError(f"cannot read calibration crops from {path}: {error}") from error
    return CalibrationSet(crops, groups, f"{len(crops)} crops from {path}{origin}")


def save_calibration_file(path: str | Path, calibration: CalibrationSet) -> Path:
    """Write a calibration set as ``load_calibration_file`` reads it (atomically)."""
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".partial.npz")
    np.savez(
        temporary,
        crops=calibration.crops,
        groups=np.asarray(calibration.groups, dtype=str),
        description=np.asarray(calibration.description),
    )
    os.replace(temporary, path)
    return path


def default_calibration_path(cache_root: Path) -> Path:
    """Where ``deepwatch weights calibrate`` keeps its crops (read when nothing else is given)."""
    return cache_root / "calibration" / "face_crops.npz"


# What ``load_encoder(calibration=...)`` accepts: crops, a .npz path, or a function making them
# (called only when an int8 model has to be built).
CalibrationSource = CalibrationSet | str | Path | Callable[[], CalibrationSet]


def calibration_provider(source: CalibrationSource | None, cache_root: Path) -> Callable[[], CalibrationSet]:
    """A function returning the calibration set, read or made only when called."""
    if isinstance(source, CalibrationSet):
        return lambda: source
    if isinstance(source, (str, Path)):
        return lambda: load_calibration_file(source)
    if source is not None:
        return source
    default = default_calibration_path(cache_root)

    def from_cache() -> CalibrationSet:
        if not default.is_file():
            raise CalibrationError(
                "an int8 encoder is calibrated on real face crops, and none were given: run "
                "`deepwatch weights calibrate --data DIR` (DIR holding real face videos, e.g. "
                f"../shared/data) to make them at {default}, or set encoder.calibration / pass "
                "calibration= a .npz of N x 160 x 160 x 3 uint8 aligned face crops"
            )
        return load_calibration_file(default)

    return from_cache


@dataclass(frozen=True)
class Int8Report:
    """How a cached int8 model was built and how close it came to fp32.

    Attributes:
        weights_digest: sha256 of the weights it was built from (the cache key).
        calibration: description of the calibration set.
        calibration_crops: crops the ranges were computed on.
        held_out_crops: crops of the parity check (none of them used for calibration).
        min_cosine: smallest cosine between int8 and fp32 embeddings of a held-out crop.
        mean_cosine: their mean.
        passed: ``min_cosine >= PARITY_MIN_COSINE``.
    """

    weights_digest: str
    calibration: str
    calibration_crops: int
    held_out_crops: int
    min_cosine: float
    mean_cosine: float
    passed: bool


def int8_path(request: BackendRequest) -> Path:
    """Cache location of the int8 model for the request's weights (beside the fp32 export)."""
    name = f"inception_resnet_v1-{request.weights_digest[:20]}-int8-qdq-opset{OPSET_VERSION}.onnx"
    return request.cache_dir / "onnx" / name


def remove_cached_int8(cache_root: Path) -> int:
    """Delete every cached int8 model and report (e.g. after new calibration crops); returns the count."""
    removed = 0
    for path in (cache_root / "onnx").glob("inception_resnet_v1-*-int8-qdq-*"):
        path.unlink(missing_ok=True)
        removed += 1
    return removed


def report_path(model_path: Path) -> Path:
    return model_path.with_suffix(".json")


def cached_report(request: BackendRequest) -> Int8Report | None:
    """The report of the cached int8 model for these weights; None when there is none (or it is stale)."""
    model_path = int8_path(request)
    try:
        raw = json.loads(report_path(model_path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not model_path.is_file() or raw.get("format") != REPORT_FORMAT:
        return None
    raw.pop("format")
    try:
        report = Int8Report(**raw)
    except TypeError:
        return None
    return report if report.weights_digest == request.weights_digest else None


def ensure_int8(
    request: BackendRequest, calibration: Callable[[], CalibrationSet]
) -> tuple[Path, Int8Report]:
    """Return the cached int8 model and its report, building both first if absent.

    ``calibration`` is called only to build. Raises ``CalibrationError`` when it gives no usable
    crops, naming what is needed.
    """
    model_path = int8_path(request)
    report = cached_report(request)
    if report is not None:
        return model_path, report
    crops = calibration()
    calibrate_on, held_out = crops.split()
    logger.info(
        "building the int8 encoder at %s from %s (once per weights; calibrating on %d crops)",
        model_path,
        crops.description,
        len(calibrate_on),
    )
    fp32_path = ensure_onnx(request)
    with tempfile.TemporaryDirectory(dir=model_path.parent, prefix=".int8-") as work:
        built = Path(work) / model_path.name
        _quantise(fp32_path, built, calibrate_on, Path(work))
        cosine = _parity(fp32_path, built, held_out)
        report = Int8Report(
            weights_digest=request.weights_digest,
            calibration=crops.description,
            calibration_crops=len(calibrate_on),
            held_out_crops=len(held_out),
            min_cosine=round(float(cosine.min()), 6),
            mean_cosine=round(float(cosine.mean()), 6),
            passed=bool(cosine.min() >= PARITY_MIN_COSINE),
        )
        os.replace(built, model_path)
    text = json.dumps({"format": REPORT_FORMAT, **asdict(report)}, indent=1)
    temporary = report_path(model_path).with_suffix(".json.partial")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, report_path(model_path))
    log = logger.info if report.passed else logger.warning
    log(
        "int8 encoder parity on %d held-out crops: min cosine %.4f, mean %.4f to fp32 (%s)",
        report.held_out_crops,
        report.min_cosine,
        report.mean_cosine,
        "passed" if report.passed else f"below {PARITY_MIN_COSINE}",
    )
    return model_path, report


def cpu_flags() -> frozenset[str]:
    """The CPU feature flags Linux reports (empty where /proc/cpuinfo is unavailable)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return frozenset()


def has_fast_int8(flags: frozenset[str]) -> bool:
    """Whether these CPU flags include native int8 dot products (VNNI or AMX)."""
    return bool(flags & FAST_INT8_FLAGS)


def _standardised_batches(crops: np.ndarray) -> Iterator[np.ndarray]:
    from engine.encoder import preprocess  # engine.encoder imports the backends: import late

    for start in range(0, len(crops), _CALIBRATION_BATCH):
        yield preprocess(crops[start : start + _CALIBRATION_BATCH])


def _quantise(fp32_path: Path, out_path: Path, crops: np.ndarray, work: Path) -> None:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self._batches = _standardised_batches(crops)

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self._batches, None)
            return None if batch is None else {INPUT_NAME: batch}

    # Folding and shape inference first, as ONNX Runtime's quantisation guide asks.
    prepared = work / "prepared.onnx"
    quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
    quantize_static(
        str(prepared),
        str(out_path),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        # 7-bit weights: without VNNI, x86 multiplies u8 x s8 pairs with a saturating 16-bit add
        # (vpmaddubsw); full-range weights overflowed it here (AVX2 EPYC: min cosine to fp32 0.70,
        # reduced range 0.998). VNNI loses little by it, and one cached model serves every CPU.
        reduce_range=True,
        calibrate_method=CalibrationMethod.MinMax,
    )


def _parity(fp32_path: Path, int8_model: Path, crops: np.ndarray) -> np.ndarray:
    """Cosine of int8 to fp32 embeddings, one per crop."""
    from engine.backends.onnxruntime_backend import ort_session  # it imports this module: import late

    reference, quantised = ort_session(fp32_path), ort_session(int8_model)
    cosines = []
    for batch in _standardised_batches(crops):
        (a,) = reference.run([OUTPUT_NAME], {INPUT_NAME: batch})
        (b,) = quantised.run([OUTPUT_NAME], {INPUT_NAME: batch})
        norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
        cosines.append(np.sum(a * b, axis=1) / np.maximum(norms, 1e-12))
    return np.concatenate(cosines)
