"""Scorer checkpoints: the head, its windowing, the encoder layers and crops it was trained with, a threshold.

A checkpoint is a ``torch.save`` dict of plain types and tensors (loaded with
``weights_only=True``). It records which base encoder weights it was trained on
(``encoder_weights``, e.g. "casia-webface") and only the encoder parameters that fine-tuning
changed (``encoder_overrides``, stored fp16), so a shipped model stays small: the base weights
come from the encoder's own weight store. It also records the crop settings its training crops
were cut with (``crop``): the live app refuses a config whose crops differ.

``open_encoder`` is the one way to open the encoder a checkpoint scores (the live app, extraction
and evaluation all use it).

Format versions: 2 adds ``crop`` and ``calibration`` (thresholds from real faces at 1 % and 5 %
false alarms with the validated AUC, ``engine.calibration``); version-1 files still load, with
both None (not recorded).
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from engine.calibration import Calibration
from engine.config import EncoderConfig
from engine.evidence import FEATURES, EvidenceEncoder
from engine.heads import HEADS, build_head, head_features
from engine.reference import ReferenceThresholds
from engine.scorer import SequenceScorer
from engine.scorer_config import ScorerConfig

if TYPE_CHECKING:
    from engine.encoder import FaceEncoder

logger = logging.getLogger(__name__)

FORMAT_VERSION = 2
# Files of these versions load; a field a version lacks gets its "not recorded" value.
READABLE_VERSIONS = (1, 2)
CROP_MODES = ("aligned", "box")
DEFAULT_CHECKPOINT = "default.pt"


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, unreadable, of another format, or does not fit the encoder."""


@dataclass(frozen=True)
class CropSettings:
    """How the face crops a model was trained on were cut (``tracking.CropConfig``'s fields).

    ``engine`` never imports ``tracking``, so the values are plain: ``mode`` "aligned" or "box",
    ``margin`` the context around the face as a fraction of the box side, ``size_px`` the crop side.
    """

    mode: str
    margin: float
    size_px: int

    def __post_init__(self) -> None:
        if self.mode not in CROP_MODES:
            raise CheckpointError(f"crop mode must be one of {CROP_MODES}, got {self.mode!r}")
        if not 0.0 <= self.margin <= 3.0:
            raise CheckpointError(f"crop margin must be in [0, 3], got {self.margin!r}")
        if isinstance(self.size_px, bool) or not isinstance(self.size_px, int) or self.size_px < 16:
            raise CheckpointError(f"crop size_px must be an integer >= 16, got {self.size_px!r}")

    def matches(self, other: CropSettings) -> bool:
        return (
            self.mode == other.mode
            and self.size_px == other.size_px
            and math.isclose(self.margin, other.margin, abs_tol=1e-9)
        )

    def describe(self) -> str:
        return f"mode {self.mode}, margin {self.margin:g}, size {self.size_px} px"


@dataclass(frozen=True, eq=False)
class ScorerCheckpoint:
    """Everything needed to rebuild a trained scorer and the encoder it expects.

    Attributes:
        encoder_weights: the base encoder weights the head was trained on, as passed to
            ``engine.load_encoder(weights=...)`` (e.g. "casia-webface").
        encoder_weights_id: the base weights' exact id (``<name>@<sha256 prefix>``), "" if unknown.
        encoder_overrides: encoder parameters changed by fine-tuning (facenet-pytorch names),
            float32; empty for a frozen encoder.
        head_type: key of ``engine.heads.HEADS``.
        head_params: keyword parameters of the head.
        head_state: the head's state dict.
        window_size: embeddings per window (W).
        sample_rate_hz: rate at which windows were sampled, Hz.
        threshold: decision threshold on p_fake, calibrated on validation data.
        threshold_fpr: the validation false-positive rate the threshold was calibrated for.
        training_summary: what the model was trained on (counts, sources, methods, groups).
        metrics: validation figures measured when the checkpoint was made.
        crop: the crop settings of the training crops; None when not recorded (format 1 files).
        calibration: thresholds from held-out real faces and the validated AUC; None when the
            model was not calibrated (then ``threshold`` is the only decision threshold).
        reference: thresholds for comparing faces with an enrolled person (``engine.reference``);
            None when not calibrated (then ``--reference`` is refused).
        precision_calibrations: calibrations of the same head on the same held-out reals embedded
            at another encoder precision (``"int8"``); ``calibration_for`` picks one.
        path: where it was loaded from (None when built in memory).
    """

    encoder_weights: str
    encoder_overrides: dict[str, torch.Tensor]
    encoder_weights_id: str
    head_type: str
    head_params: dict[str, Any]
    head_state: dict[str, torch.Tensor]
    window_size: int
    sample_rate_hz: float
    threshold: float
    threshold_fpr: float
    training_summary: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    crop: CropSettings | None = None
    calibration: Calibration | None = None
    reference: ReferenceThresholds | None = None
    precision_calibrations: dict[str, Calibration] = field(default_factory=dict)
    path: Path | None = None

    def __post_init__(self) -> None:
        if self.head_type not in HEADS:
            raise CheckpointError(f"head_type must be one of {sorted(HEADS)}, got {self.head_type!r}")
        if not 0.0 <= self.threshold <= 1.0 or math.isnan(self.threshold):
            raise CheckpointError(f"threshold must be a probability in [0, 1], got {self.threshold!r}")

    @property
    def changed_layers(self) -> list[str]:
        """Top-level encoder modules with fine-tuned parameters, e.g. ["block8", "last_linear"]."""
        return sorted({name.split(".", 1)[0] for name in self.encoder_overrides})

    def build_head(self) -> torch.nn.Module:
        """The head with its trained weights, in eval mode."""
        head = build_head(self.head_type, **self.head_params)
        head.load_state_dict({name: value.float() for name, value in self.head_state.items()})
        return head.eval()

    def scorer_config(self, **overrides: Any) -> ScorerConfig:
        """A ScorerConfig with this checkpoint's window and sample rate (other fields overridable)."""
        values: dict[str, Any] = {"window_size": self.window_size, "sample_rate_hz": self.sample_rate_hz}
        values.update(overrides)
        values.setdefault("min_samples", values["window_size"])
        return ScorerConfig(**values)

    def build_scorer(self, config: ScorerConfig | None = None) -> SequenceScorer:
        """A streaming scorer for this head; ``config`` defaults to the checkpoint's windowing.

        A config whose window or sample rate differs from the training ones is accepted with a
        warning: the head was not trained on such windows.
        """
        if config is None:
            config = self.scorer_config()
        elif config.window_size != self.window_size or config.sample_rate_hz != self.sample_rate_hz:
            logger.warning(
                "scorer config (window %d at %.1f Hz) differs from the checkpoint's (window %d at %.1f Hz)",
                config.window_size,
                config.sample_rate_hz,
                self.window_size,
                self.sample_rate_hz,
            )
        return SequenceScorer(self.build_head(), config)

    def check_encoder(self, encoder_weights_id: str) -> None:
        """Refuse an encoder whose base weights differ from the ones the checkpoint was trained on.

        ``encoder_weights_id`` is the encoder's ``weights_id`` (``<name>@<sha>``, with
        ``+<digest>`` when fine-tuned layers were applied); only the base part is compared.
        """
        base = encoder_weights_id.split("+", 1)[0]
        expected = self.encoder_weights_id or self.encoder_weights
        same = base == expected or ("@" not in expected and base.split("@", 1)[0] == expected)
        if not same:
            raise CheckpointError(
                f"checkpoint {self._name()} was trained on encoder weights {expected!r}, "
                f"but the encoder uses {base!r}; load the encoder with "
                f"weights={self.encoder_weights!r} or use a checkpoint trained on {base!r}"
            )

    def check_crop(self, crop: CropSettings) -> None:
        """Refuse crops cut otherwise than the training crops, naming both settings.

        A checkpoint that does not record its crop settings (format 1) is accepted with a warning.
        """
        if self.crop is None:
            logger.warning(
                "checkpoint %s does not record its crop settings; cannot check the config's (%s)",
                self._name(),
                crop.describe(),
            )
            return
        if not self.crop.matches(crop):
            raise CheckpointError(
                f"checkpoint {self._name()} was trained on crops with {self.crop.describe()}, "
                f"but the config asks for {crop.describe()}; set crop to the checkpoint's settings "
                "or use a checkpoint trained on these crops"
            )

    def with_calibration(self, calibration: Calibration) -> ScorerCheckpoint:
        """A copy calibrated on real faces; its ``threshold`` becomes the 5 % per-track one."""
        return replace(self, calibration=calibration, threshold=calibration.track[0.05], threshold_fpr=0.05)

    def with_precision_calibration(self, calibration: Calibration) -> ScorerCheckpoint:
        """A copy that also holds ``calibration`` for its encoder precision (not fp32's)."""
        if calibration.encoder_precision == "fp32":
            raise CheckpointError("the fp32 calibration is the checkpoint's own: use with_calibration")
        return replace(
            self,
            precision_calibrations={
                **self.precision_calibrations,
                calibration.encoder_precision: calibration,
            },
        )

    def calibration_for(self, precision: str) -> Calibration | None:
        """The calibration measured at ``precision`` when the checkpoint has one, else the primary one."""
        return self.precision_calibrations.get(precision, self.calibration)

    def threshold_for(self, precision: str) -> float:
        """The FAKE threshold for an encoder at ``precision``: its calibration's 5 % per-track one."""
        calibration = self.precision_calibrations.get(precision)
        return calibration.track[0.05] if calibration is not None else self.threshold

    def with_threshold(self, threshold: float, threshold_fpr: float) -> ScorerCheckpoint:
        """A copy with another calibrated threshold."""
        return replace(self, threshold=threshold, threshold_fpr=threshold_fpr)

    def to_dict(self) -> dict[str, Any]:
        """The on-disk form: plain types and tensors; encoder overrides and the head stored fp16."""
        return {
            "format": "deepwatch-scorer",
            "format_version": FORMAT_VERSION,
            "encoder_weights": self.encoder_weights,
            "encoder_weights_id": self.encoder_weights_id,
            "encoder_overrides": {
                name: value.half() if value.is_floating_point() else value
                for name, value in self.encoder_overrides.items()
            },
            "encoder_changed_layers": self.changed_layers,
            "head_type": self.head_type,
            "head_params": dict(self.head_params),
            "head_state": {name: value.half() for name, value in self.head_state.items()},
            "window_size": self.window_size,
            "sample_rate_hz": float(self.sample_rate_hz),
            "threshold": float(self.threshold),
            "threshold_fpr": float(self.threshold_fpr),
            "training_summary": self.training_summary,
            "metrics": self.metrics,
            "crop": None if self.crop is None else asdict(self.crop),
            "calibration": None if self.calibration is None else self.calibration.to_dict(),
            "reference": None if self.reference is None else self.reference.to_dict(),
            "precision_calibrations": {
                precision: calibration.to_dict()
                for precision, calibration in self.precision_calibrations.items()
            },
        }

    def save(self, path: str | Path) -> Path:
        """Write the checkpoint (parent folders are created); returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(self.to_dict(), path)
        logger.info("saved checkpoint %s (%.1f MB)", path, path.stat().st_size / 1e6)
        return path

    def _name(self) -> str:
        return str(self.path) if self.path is not None else "(in memory)"


def default_checkpoint_path() -> Path:
    """The shipped default model inside the installed package."""
    return Path(str(resources.files("engine") / "models" / DEFAULT_CHECKPOINT))


def load_checkpoint(
    path: str | Path | None = None, *, encoder_weights: str | None = None
) -> ScorerCheckpoint:
    """Load a scorer checkpoint; ``None`` loads the shipped default (engine/models/default.pt).

    With ``encoder_weights`` (the id of the encoder that will feed the scorer) a checkpoint
    trained on other base weights is refused with a ``CheckpointError`` naming both.
    """
    file = default_checkpoint_path() if path is None else Path(path)
    if not file.is_file():
        raise CheckpointError(f"checkpoint file not found: {file}")
    try:
        raw = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several unrelated types for corrupt files
        raise CheckpointError(f"cannot read checkpoint {file}: {error}") from error
    if not isinstance(raw, dict) or raw.get("format") != "deepwatch-scorer":
        raise CheckpointError(f"{file} is not a deepwatch scorer checkpoint (no format 'deepwatch-scorer')")
    if raw.get("format_version") not in READABLE_VERSIONS:
        raise CheckpointError(
            f"{file} has checkpoint format version {raw.get('format_version')!r}, "
            f"expected one of {READABLE_VERSIONS}"
        )
    try:
        checkpoint = ScorerCheckpoint(
            encoder_weights=str(raw["encoder_weights"]),
            encoder_overrides={name: value.float() for name, value in raw["encoder_overrides"].items()},
            encoder_weights_id=str(raw.get("encoder_weights_id", "")),
            head_type=str(raw["head_type"]),
            head_params=dict(raw["head_params"]),
            head_state=dict(raw["head_state"]),
            window_size=int(raw["window_size"]),
            sample_rate_hz=float(raw["sample_rate_hz"]),
            threshold=float(raw["threshold"]),
            threshold_fpr=float(raw["threshold_fpr"]),
            training_summary=dict(raw.get("training_summary", {})),
            metrics=dict(raw.get("metrics", {})),
            crop=_crop_settings(raw, file),
            calibration=_calibration(raw, file),
            reference=_reference(raw, file),
            precision_calibrations=_precision_calibrations(raw, file),
            path=file,
        )
    except KeyError as error:
        raise CheckpointError(f"checkpoint {file} lacks the field {error.args[0]!r}") from error
    if encoder_weights is not None:
        checkpoint.check_encoder(encoder_weights)
    return checkpoint


def _crop_settings(raw: dict[str, Any], file: Path) -> CropSettings | None:
    if raw["format_version"] < 2:
        return None
    crop = raw["crop"]
    if crop is None:
        return None
    try:
        return CropSettings(
            mode=str(crop["mode"]), margin=float(crop["margin"]), size_px=int(crop["size_px"])
        )
    except (KeyError, TypeError) as error:
        raise CheckpointError(
            f"checkpoint {file}: crop must hold mode, margin and size_px, got {crop!r}"
        ) from error


def _calibration(raw: dict[str, Any], file: Path) -> Calibration | None:
    if raw["format_version"] < 2 or raw["calibration"] is None:
        return None
    try:
        return Calibration.from_dict(raw["calibration"])
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(
            f"checkpoint {file}: unreadable calibration {raw['calibration']!r}: {error}"
        ) from error


def _precision_calibrations(raw: dict[str, Any], file: Path) -> dict[str, Calibration]:
    entries = raw.get("precision_calibrations") or {}
    try:
        calibrations = {str(precision): Calibration.from_dict(entry) for precision, entry in entries.items()}
    except (AttributeError, KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"checkpoint {file}: unreadable precision calibrations: {error}") from error
    for precision, calibration in calibrations.items():
        if calibration.encoder_precision != precision or precision == "fp32":
            raise CheckpointError(
                f"checkpoint {file}: the {precision!r} calibration says it was measured at "
                f"{calibration.encoder_precision!r}"
            )
    return calibrations


def _reference(raw: dict[str, Any], file: Path) -> ReferenceThresholds | None:
    entry = raw.get("reference")
    if entry is None:
        return None
    try:
        return ReferenceThresholds.from_dict(entry)
    except (AttributeError, KeyError, TypeError, ValueError) as error:
        raise CheckpointError(
            f"checkpoint {file}: unreadable reference thresholds {entry!r}: {error}"
        ) from error


def open_encoder(checkpoint: ScorerCheckpoint, config: EncoderConfig | None = None) -> FaceEncoder:
    """The encoder ``checkpoint`` scores: its base weights plus its fine-tuned layers.

    The one place that opens a checkpoint's encoder (live app, extraction, evaluation). For a
    head that reads identity evidence it is wrapped in ``engine.evidence.EvidenceEncoder``, so
    every caller gets the features the head was trained on (inner and outer embeddings).
    ``config`` chooses backend, device, precision and batch sizes; its ``weights`` must be the
    checkpoint's base weights (default: ``EncoderConfig`` with the checkpoint's weights).

    Raises:
        CheckpointError: the encoder's base weights differ from the checkpoint's (names both).
        BackendUnavailableError, WeightsError, ValueError: the encoder cannot be built.
    """
    from engine.encoder import encoder_from_config

    if config is None:
        config = EncoderConfig(weights=checkpoint.encoder_weights)
    encoder = encoder_from_config(config, checkpoint.encoder_overrides or None)
    try:
        checkpoint.check_encoder(encoder.weights_id)
    except CheckpointError:
        encoder.close()
        raise
    if head_features(checkpoint.head_type) == FEATURES:
        return EvidenceEncoder(encoder)
    return encoder
