"""The app config: every stage's typed section in one object, loaded from YAML.

``configs/default.yaml`` lists every key with its meaning and unit. A file may give any subset of
sections and keys; the rest keep their defaults. Unknown sections or keys, and values a section
rejects, raise ``ConfigError`` naming the file and the key.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from engine.config import EncoderConfig
from engine.scorer_config import ScorerConfig
from stream.live.alerts import AlertConfig
from stream.live.pipeline import PipelineConfig
from stream.output_config import OutputConfig
from stream.server.options import ServerConfig
from stream.sources.config import SourceConfig
from tracking.config import CropConfig, DetectorConfig, TrackerConfig


class ConfigError(ValueError):
    """A config file is unreadable, has an unknown key, or a bad value; the message names both."""


@dataclass(frozen=True)
class ModelConfig:
    """Which trained scorer to use.

    Attributes:
        checkpoint: path of a scorer checkpoint; None uses the model shipped with deepwatch.
        reference: photos or short clips (``stream.live.reference``) of the person who should be
            on screen (``engine.reference``); every face is then also compared with them. Empty:
            nobody is enrolled.
    """

    checkpoint: str | None = None
    reference: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.checkpoint is not None and (not isinstance(self.checkpoint, str) or not self.checkpoint):
            raise ValueError(f"checkpoint must be a file path or null, got {self.checkpoint!r}")
        if not isinstance(self.reference, (list, tuple)) or not all(
            isinstance(path, str) and path for path in self.reference
        ):
            raise ValueError(f"reference must be a list of photo or clip paths, got {self.reference!r}")
        object.__setattr__(self, "reference", tuple(self.reference))


@dataclass(frozen=True)
class AppConfig:
    """Every section of the app config.

    ``scorer_overrides`` holds only the scorer keys a file sets: the window and sample rate
    otherwise come from the checkpoint, which was trained on them.
    """

    source: SourceConfig = field(default_factory=SourceConfig)
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    crop: CropConfig = field(default_factory=CropConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    scorer_overrides: dict[str, Any] = field(default_factory=dict)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    alerts: AlertConfig = field(default_factory=AlertConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    server: ServerConfig = field(default_factory=ServerConfig)


# YAML section name -> the dataclass it builds ("scorer" is special: see AppConfig).
SECTIONS: dict[str, type] = {
    "source": SourceConfig,
    "detector": DetectorConfig,
    "tracker": TrackerConfig,
    "crop": CropConfig,
    "encoder": EncoderConfig,
    "model": ModelConfig,
    "scorer": ScorerConfig,
    "pipeline": PipelineConfig,
    "alerts": AlertConfig,
    "output": OutputConfig,
    "server": ServerConfig,
}


def with_model(config: AppConfig, checkpoint: str | None, reference: list[str] | None) -> AppConfig:
    """``config`` with the ``--checkpoint`` and ``--reference`` flags applied (a flag wins)."""
    model = config.model
    if checkpoint is not None:
        model = dataclasses.replace(model, checkpoint=checkpoint)
    if reference:
        model = dataclasses.replace(model, reference=tuple(reference))
    return dataclasses.replace(config, model=model)


def load_config(path: str | Path) -> AppConfig:
    """Read a YAML app config; raises ``ConfigError`` naming the file and key on any problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"cannot read config {path}: {error.strerror or error}") from error
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {_one_line(error)}") from error
    return config_from_dict(raw if raw is not None else {}, origin=str(path))


def config_from_dict(raw: Any, origin: str = "<config>") -> AppConfig:
    """Build an ``AppConfig`` from nested mappings (a parsed YAML file); see ``load_config``."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{origin}: expected a mapping of sections, got {type(raw).__name__}")
    unknown = sorted(set(raw) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"{origin}: unknown section {unknown[0]!r}, expected one of {', '.join(SECTIONS)}")
    built: dict[str, Any] = {}
    for section, cls in SECTIONS.items():
        values = raw.get(section) or {}
        if not isinstance(values, dict):
            raise ConfigError(f"{origin}: section {section!r} must be a mapping of keys, got {values!r}")
        instance = _build_section(cls, section, values, origin)
        if section == "scorer":
            built["scorer_overrides"] = dict(values)
        else:
            built[section] = instance
    return AppConfig(**built)


def _build_section(cls: type, section: str, values: dict[str, Any], origin: str) -> Any:
    names = [f.name for f in dataclasses.fields(cls)]
    for key in values:
        if key not in names:
            # repr: a key may hold any character, and the message must stay one line.
            raise ConfigError(
                f"{origin}: unknown key {f'{section}.{key}'!r}, expected one of {', '.join(names)}"
            )
    hints = typing.get_type_hints(cls)
    for key, value in values.items():
        expected = _type_problem(value, hints[key])
        if expected is not None:
            raise ConfigError(
                f"{origin}: bad value for '{section}.{key}': expected {expected}, "
                f"got {type(value).__name__} {value!r:.60}"
            )
    if cls is ScorerConfig and "window_size" in values:
        # As ScorerCheckpoint.scorer_config does: a shorter window needs no explicit min_samples.
        values = {"min_samples": values["window_size"], **values}
    try:
        return cls(**values)
    except (ValueError, TypeError) as error:
        offending = _offending_key(cls, values)
        where = f"'{section}.{offending}'" if offending else f"section {section!r}"
        raise ConfigError(f"{origin}: bad value for {where}: {_one_line(error)}") from error


def _type_problem(value: Any, annotation: Any) -> str | None:
    """What ``annotation`` expects when ``value`` (parsed YAML) is not of that type, else None.

    Sections check ranges themselves; this catches a wrong type (a list where a number goes)
    before a section's checks trip over it with an error that is not about the config.
    Annotations it does not know are left to the section.
    """
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        problems = [_type_problem(value, arm) for arm in typing.get_args(annotation)]
        return None if any(problem is None for problem in problems) else " or ".join(problems)  # type: ignore[arg-type]
    if annotation is type(None):
        return None if value is None else "null"
    if annotation is bool:
        return None if isinstance(value, bool) else "true or false"
    if annotation is int:
        return None if isinstance(value, int) and not isinstance(value, bool) else "an integer"
    if annotation is float:
        return None if isinstance(value, (int, float)) and not isinstance(value, bool) else "a number"
    if annotation is str:
        return None if isinstance(value, str) else "a string"
    if origin is typing.Literal:
        choices = typing.get_args(annotation)
        return None if value in choices else "one of " + ", ".join(map(repr, choices))
    if origin in (Mapping, dict):
        return None if isinstance(value, Mapping) else "a mapping"
    if origin is tuple:
        arms = typing.get_args(annotation)
        if len(arms) == 2 and arms[1] is Ellipsis:
            if not isinstance(value, (list, tuple)):
                return f"a list of {_type_problem(None, arms[0])}"
            problems = [_type_problem(item, arms[0]) for item in value]
            return next((f"a list of {problem}" for problem in problems if problem is not None), None)
        expected = f"a list of {len(arms)}"
        if not isinstance(value, (list, tuple)) or len(value) != len(arms):
            return expected
        if any(_type_problem(item, arm) is not None for item, arm in zip(value, arms, strict=True)):
            return expected + " " + " / ".join(str(_type_problem(None, arm)) for arm in arms)
        return None
    return None


def _offending_key(cls: type, values: dict[str, Any]) -> str | None:
    """The key whose value alone the section rejects; None when only a combination fails."""
    for key, value in values.items():
        try:
            cls(**{key: value})
        except (ValueError, TypeError):
            return str(key)
    return None


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())
