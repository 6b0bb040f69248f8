"""Shared, session-cached fixtures for the encoder tests: a private weights cache, encoders and
real face crops (cropped with MTCNN from the shared data, never stored)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from engine import load_encoder
from engine.encoder import FaceEncoder
from engine.weights import CACHE_DIR_ENV, prepare_weights
from tests.engine.face_crops import FaceCrop, sample_face_crops

FIGURES: dict[str, str] = {}


@pytest.fixture(scope="session")
def encoder_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private cache for the whole session with casia-webface converted once."""
    path = tmp_path_factory.mktemp("deepwatch-cache")
    previous = os.environ.get(CACHE_DIR_ENV)
    os.environ[CACHE_DIR_ENV] = str(path)
    try:
        prepare_weights("casia-webface")
        yield path
    finally:
        if previous is None:
            os.environ.pop(CACHE_DIR_ENV, None)
        else:
            os.environ[CACHE_DIR_ENV] = previous


@pytest.fixture
def fresh_cache(tmp_path: Path, encoder_cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty cache dir for one test (the session's converted file is copied in on request)."""
    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv(CACHE_DIR_ENV, str(cache))
    return cache


@pytest.fixture
def casia_file(encoder_cache_dir: Path) -> Path:
    return encoder_cache_dir / "weights" / "casia-webface.safetensors"


def copy_casia_into(cache: Path, casia: Path) -> Path:
    target = cache / "weights" / casia.name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(casia, target)
    return target


@pytest.fixture(scope="session")
def torch_encoder(encoder_cache_dir: Path) -> Iterator[FaceEncoder]:
    with load_encoder(backend="torch") as encoder:
        yield encoder


@pytest.fixture(scope="session")
def ort_encoder(encoder_cache_dir: Path) -> Iterator[FaceEncoder]:
    with load_encoder(backend="onnxruntime") as encoder:
        yield encoder


@pytest.fixture(scope="session")
def talking_head_crops(data_dir: Path) -> list[FaceCrop]:
    crops = sample_face_crops(data_dir)
    if len({c.person for c in crops}) < 10:
        pytest.fail(f"MTCNN found faces of only {len({c.person for c in crops})} people in {data_dir}/real")
    return crops


@pytest.fixture(scope="session")
def talking_head_embeddings(torch_encoder: FaceEncoder, talking_head_crops: list[FaceCrop]) -> np.ndarray:
    return torch_encoder.encode(np.stack([c.image for c in talking_head_crops]))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FIGURES:
        terminalreporter.section("encoder figures")
        for name, value in FIGURES.items():
            terminalreporter.write_line(f"{name}: {value}")
