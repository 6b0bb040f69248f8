"""Weights registry and cache: conversion, sha256 on every load, corrupt/truncated/mismatched files,
local files, vggface2 only when asked (the network is never touched: downloads are faked)."""

from __future__ import annotations

import io
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from facenet_pytorch import InceptionResnetV1 as ReferenceInceptionResnetV1

from engine import WeightsError, list_weights, load_encoder
from engine.weights import (
    CASIA_WEBFACE,
    REGISTRY,
    VGGFACE2,
    cache_dir,
    load_weights,
    prepare_weights,
    weights_path,
)
from tests.engine.conftest import copy_casia_into


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Fail any download attempt as an offline machine would, recording the URLs tried."""
    tried: list[str] = []

    def offline(url: str, *args: object, **kwargs: object) -> object:
        tried.append(url)
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    return tried


def test_cache_dir_env_var_overrides_the_xdg_dir(fresh_cache: Path) -> None:
    assert cache_dir() == fresh_cache
    assert weights_path(CASIA_WEBFACE) == fresh_cache / "weights" / "casia-webface.safetensors"


def test_casia_webface_is_converted_on_first_use_with_the_pinned_sha256(
    fresh_cache: Path, no_network: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    assert [s.cached for s in list_weights()] == [False, False]
    with caplog.at_level("INFO", logger="engine.weights"):
        loaded = load_weights(CASIA_WEBFACE)
    assert any("first use" in r.getMessage() for r in caplog.records)
    assert loaded.path == weights_path(CASIA_WEBFACE) and loaded.path.is_file()
    assert loaded.sha256 == REGISTRY[CASIA_WEBFACE].sha256
    assert loaded.weights_id == f"casia-webface@{loaded.sha256[:12]}"
    statuses = {s.name: s for s in list_weights()}
    assert statuses[CASIA_WEBFACE].cached and not statuses[VGGFACE2].cached
    assert no_network == []


def test_a_changed_byte_in_the_cached_file_is_caught_by_sha256(fresh_cache: Path, casia_file: Path) -> None:
    target = copy_casia_into(fresh_cache, casia_file)
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit inside a weight tensor: still parses, wrong numbers
    target.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match=f"weights file {target} is corrupt.*sha256"):
        load_encoder(backend="torch")


def test_a_truncated_cached_file_is_refused(fresh_cache: Path, casia_file: Path) -> None:
    target = copy_casia_into(fresh_cache, casia_file)
    target.write_bytes(casia_file.read_bytes()[:1_000_000])
    with pytest.raises(WeightsError, match=str(target)):
        load_weights(CASIA_WEBFACE)


def test_prepare_force_reconverts_a_corrupt_file(fresh_cache: Path, casia_file: Path) -> None:
    target = copy_casia_into(fresh_cache, casia_file)
    target.write_bytes(b"garbage")
    prepare_weights(CASIA_WEBFACE, force=True)
    assert target.read_bytes() == casia_file.read_bytes()


def test_a_local_state_dict_file_loads_with_its_own_id(
    fresh_cache: Path, casia_file: Path, tmp_path: Path
) -> None:
    # facenet-pytorch's own module and a classifier head, as in its vggface2 release file.
    reference = ReferenceInceptionResnetV1(classify=True, num_classes=10).eval()
    local = tmp_path / "my-weights.pt"
    torch.save(reference.state_dict(), local)
    crops = np.random.default_rng(0).integers(0, 256, (2, 160, 160, 3), dtype=np.uint8)
    with load_encoder(weights=str(local), backend="torch") as encoder:
        assert encoder.weights_id.startswith("file:my-weights.pt@")
        got = encoder.encode(crops)
    reference.classify = False
    with torch.no_grad():
        expected = reference(torch.from_numpy((crops.astype(np.float32) - 127.5) / 128).permute(0, 3, 1, 2))
    assert np.abs(got - expected.numpy()).max() < 1e-5


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda s: s.pop("conv2d_1a.conv.weight"), r"1 missing keys \['conv2d_1a.conv.weight'\]"),
        (lambda s: s.update({"extra.weight": torch.zeros(1)}), r"unexpected keys \['extra.weight'\]"),
        (
            lambda s: s.update({"last_bn.bias": torch.zeros(256)}),
            r"last_bn.bias has shape \(256,\), expected \(512,\)",
        ),
        (lambda s: s["last_bn.bias"].fill_(float("nan")), "last_bn.bias contains NaN"),
    ],
)
def test_a_mismatched_local_file_is_refused_naming_it(
    tmp_path: Path, encoder_cache_dir: Path, mutate: object, message: str
) -> None:
    state = ReferenceInceptionResnetV1().state_dict()
    mutate(state)  # type: ignore[operator]
    local = tmp_path / "mismatched.pt"
    torch.save(state, local)
    with pytest.raises(WeightsError, match=f"{local}.*{message}"):
        load_weights(str(local))


def test_local_files_that_are_not_state_dicts_are_refused(tmp_path: Path, encoder_cache_dir: Path) -> None:
    not_a_dict = tmp_path / "list.pt"
    torch.save([torch.zeros(1)], not_a_dict)
    with pytest.raises(WeightsError, match=f"{not_a_dict} does not hold a state dict"):
        load_weights(str(not_a_dict))
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    with pytest.raises(WeightsError, match=f"cannot read weights file {text}"):
        load_weights(str(text))
    with pytest.raises(WeightsError, match=r"neither a registry name .* nor an existing file"):
        load_weights(str(tmp_path / "missing.pt"))


def test_vggface2_is_never_downloaded_implicitly(fresh_cache: Path, no_network: list[str]) -> None:
    with pytest.raises(WeightsError, match=r"vggface2 weights are not in the cache.*casia-webface"):
        load_encoder(weights=VGGFACE2, backend="torch")
    assert no_network == []


def test_preparing_vggface2_offline_fails_naming_casia_webface(
    fresh_cache: Path, no_network: list[str]
) -> None:
    with pytest.raises(WeightsError, match="offline: use 'casia-webface'"):
        prepare_weights(VGGFACE2, allow_download=True)
    assert no_network == [REGISTRY[VGGFACE2].url]
    assert not weights_path(VGGFACE2).exists()
    assert list((fresh_cache / "weights").iterdir()) == []  # no partial download left behind


def _serve(monkeypatch: pytest.MonkeyPatch, payload: bytes) -> None:
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout=None: io.BytesIO(payload))


def test_vggface2_download_is_verified_recorded_and_checked_on_every_load(
    fresh_cache: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    buffer = io.BytesIO()
    torch.save(ReferenceInceptionResnetV1(classify=True, num_classes=8631).state_dict(), buffer)
    _serve(monkeypatch, buffer.getvalue())
    path = prepare_weights(VGGFACE2, allow_download=True)
    assert path == weights_path(VGGFACE2)
    status = {s.name: s for s in list_weights()}[VGGFACE2]
    assert status.cached and status.sha256 is not None
    assert load_weights(VGGFACE2).weights_id == f"vggface2@{status.sha256[:12]}"
    data = bytearray(path.read_bytes())
    data[-5000] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match=f"{path} is corrupt"):
        load_weights(VGGFACE2)


def test_a_truncated_vggface2_download_never_enters_the_cache(
    fresh_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    buffer = io.BytesIO()
    torch.save(ReferenceInceptionResnetV1().state_dict(), buffer)
    _serve(monkeypatch, buffer.getvalue()[:100_000])
    with pytest.raises(WeightsError, match="cannot read weights file"):
        prepare_weights(VGGFACE2, allow_download=True)
    assert not weights_path(VGGFACE2).exists()
