"""Choosing where training runs (``--device cuda|cpu|auto``) and whether it may use bf16.

bf16 autocast pays on a CPU only with native bf16 matrix units: measured for the issue-10
recipe, a full training step at 160 px cost 0.18 s a crop in bf16 with AMX and 0.95 s in fp32 on
two cores; without AMX or AVX512-BF16, bf16 is emulated and slower than fp32. So it is used on a
CPU only when its flags show ``amx_bf16`` or ``avx512_bf16`` (what ``lscpu`` reads), and on CUDA
when the GPU supports bf16.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Iterator
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

DEVICE_CHOICES = ("auto", "cpu", "cuda")
# CPU flags (as in /proc/cpuinfo and lscpu) of native bf16 matrix arithmetic.
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when a GPU is usable, else CPU; ``cuda`` without a GPU is refused.

    Raises:
        ValueError: an unknown name, or ``cuda`` on a machine where torch sees no CUDA GPU.
    """
    if name not in DEVICE_CHOICES and not name.startswith("cuda:"):
        raise ValueError(f"device must be one of {DEVICE_CHOICES} or cuda:N, got {name!r}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(
            f"device {name!r} asked for, but torch sees no CUDA GPU here (torch {torch.__version__}, "
            f"CUDA build {torch.version.cuda or 'none'}); use --device cpu or auto"
        )
    return torch.device(name)


@functools.lru_cache(maxsize=1)
def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU's feature flags (empty when the file cannot be read, e.g. not Linux)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def bf16_worthwhile(device: torch.device, flags: frozenset[str] | None = None) -> bool:
    """True when bf16 autocast speeds training on ``device`` (see the module docstring)."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    present = cpu_flags() if flags is None else flags
    return any(flag in present for flag in BF16_CPU_FLAGS)


@contextlib.contextmanager
def training_autocast(device: torch.device, enabled: bool | None = None) -> Iterator[bool]:
    """bf16 autocast on ``device`` when worthwhile (or as ``enabled`` says); yields whether it is on."""
    use = bf16_worthwhile(device) if enabled is None else enabled
    if not use:
        yield False
        return
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
        yield True
