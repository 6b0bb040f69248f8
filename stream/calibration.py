"""The int8 encoder's calibration crops as the live app finds them (never made here).

``deepwatch weights calibrate`` (``stream.training.calibration_crops``) makes real face crops
once and caches them; the live app only points the encoder config at that file, because the live
chain does not import the training lab. With no crops cached an int8 build is refused, naming
the command that makes them; ``auto`` then stays fp32.
"""

from __future__ import annotations

import dataclasses

from engine.backends.int8 import cpu_flags, default_calibration_path, has_fast_int8
from engine.config import EncoderConfig
from engine.weights import cache_dir


def with_calibration(config: EncoderConfig) -> EncoderConfig:
    """``config`` with ``calibration`` set to the cached real face crops when int8 may be built.

    Only for ``precision: int8``, or ``auto`` on a CPU with VNNI or AMX, when no file is
    configured and the cached crops exist; otherwise ``config`` unchanged.
    """
    if config.calibration is not None or config.precision == "fp32":
        return config
    if config.precision == "auto" and not has_fast_int8(cpu_flags()):
        return config
    cached = default_calibration_path(cache_dir())
    if not cached.is_file():
        return config
    return dataclasses.replace(config, calibration=str(cached))
