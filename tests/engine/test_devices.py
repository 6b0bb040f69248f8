"""Device choice for training and when bf16 autocast is used."""

from __future__ import annotations

import pytest
import torch

from engine.devices import bf16_worthwhile, cpu_flags, resolve_device, training_autocast


def test_auto_picks_cpu_without_a_gpu_and_cuda_is_refused_clearly() -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match=r"device 'cuda' asked for, but torch sees no CUDA GPU here"):
        resolve_device("cuda")
    with pytest.raises(ValueError, match=r"device 'cuda:1' asked for"):
        resolve_device("cuda:1")
    with pytest.raises(
        ValueError, match=r"device must be one of \('auto', 'cpu', 'cuda'\) or cuda:N, got 'gpu'"
    ):
        resolve_device("gpu")


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ({"avx2", "fma"}, False),
        ({"avx2", "avx512f", "avx512_vnni"}, False),
        ({"avx512f", "avx512_bf16"}, True),
        ({"amx_tile", "amx_bf16", "amx_int8"}, True),
    ],
)
def test_bf16_on_cpu_only_with_native_bf16_units(flags: set[str], expected: bool) -> None:
    assert bf16_worthwhile(torch.device("cpu"), frozenset(flags)) is expected


def test_cpu_flags_are_read_from_cpuinfo(tmp_path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx2 amx_bf16\nbugs\t\t: none\n")
    assert cpu_flags(str(cpuinfo)) == frozenset({"fpu", "avx2", "amx_bf16"})
    assert cpu_flags(str(tmp_path / "missing")) == frozenset()


def test_training_autocast_runs_bf16_only_when_on() -> None:
    a, b = torch.randn(4, 4), torch.randn(4, 4)
    with training_autocast(torch.device("cpu"), enabled=False) as on:
        assert on is False and (a @ b).dtype == torch.float32
    with training_autocast(torch.device("cpu"), enabled=True) as on:
        assert on is True and (a @ b).dtype == torch.bfloat16
