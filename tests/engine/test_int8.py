"""The int8 encoder: parity with fp32 on real face crops, its cache key, and the auto precision rule."""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from engine import load_encoder
from engine.backends import BackendRequest
from engine.backends import int8 as int8_build
from engine.backends.int8 import CalibrationError, CalibrationSet, Int8Report
from engine.encoder import InceptionResnetEncoder, resolve_precision
from engine.inception_resnet_v1 import InceptionResnetV1
from engine.weights import CACHE_DIR_ENV, load_weights
from tests.engine.conftest import FIGURES, copy_casia_into
from tests.engine.face_crops import FaceCrop


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def _refuse() -> CalibrationSet:
    raise AssertionError("calibration crops were asked for although the int8 model is cached")


@pytest.fixture(scope="module")
def int8_cache(encoder_cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A cache of its own (the fp32 export test counts the .onnx files of the shared one)."""
    cache = tmp_path_factory.mktemp("int8-cache")
    copy_casia_into(cache, encoder_cache_dir / "weights" / "casia-webface.safetensors")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CACHE_DIR_ENV, str(cache))
        yield cache


@pytest.fixture(scope="module")
def calibration(talking_head_crops: list[FaceCrop]) -> CalibrationSet:
    return CalibrationSet(
        np.stack([c.image for c in talking_head_crops]),
        tuple(c.person for c in talking_head_crops),
        "test talking-head crops",
    )


@pytest.fixture(scope="module")
def int8_encoder(int8_cache: Path, calibration: CalibrationSet) -> Iterator[InceptionResnetEncoder]:
    with load_encoder(backend="onnxruntime", precision="int8", calibration=calibration) as encoder:
        assert isinstance(encoder, InceptionResnetEncoder)
        yield encoder


def _request(cache: Path) -> BackendRequest:
    loaded = load_weights("casia-webface")
    return BackendRequest(
        model=InceptionResnetV1().eval(),
        weights_digest=loaded.sha256,
        device="cpu",
        fp16=False,
        max_batch_size=64,
        opt_batch_size=16,
        cache_dir=cache,
    )


@pytest.mark.slow
def test_int8_matches_fp32_on_held_out_real_crops(
    int8_encoder: InceptionResnetEncoder, int8_cache: Path, calibration: CalibrationSet
) -> None:
    assert int8_encoder.precision == "int8" and int8_encoder.backend_name == "onnxruntime"
    report = int8_encoder.int8_report
    assert report is not None and report.passed
    _, held_out = calibration.split()
    assert report.held_out_crops == len(held_out) >= 15
    assert report.calibration_crops == len(calibration.crops) - len(held_out)
    # Checked again here, through the public encoder, on crops of people calibration never saw.
    with load_encoder(backend="onnxruntime") as fp32:
        cosine = _cosine(int8_encoder.encode(held_out), fp32.encode(held_out))
    FIGURES["int8 vs fp32 min cosine"] = f"{cosine.min():.5f} over {len(held_out)} held-out real crops"
    assert cosine.min() >= int8_build.PARITY_MIN_COSINE
    assert abs(cosine.min() - report.min_cosine) < 1e-3
    # It is a quantised graph, not the fp32 one under another name.
    model = next((int8_cache / "onnx").glob("*-int8-qdq-*.onnx"))
    import onnx

    ops = {node.op_type for node in onnx.load(str(model)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops


def test_int8_model_is_reused_for_the_same_weights(
    int8_encoder: InceptionResnetEncoder, int8_cache: Path
) -> None:
    (model,) = (int8_cache / "onnx").glob("*-int8-qdq-*.onnx")
    assert int8_encoder.weights_id.split("@")[1] in model.name
    modified = model.stat().st_mtime_ns
    with load_encoder(backend="onnxruntime", precision="int8", calibration=_refuse) as again:
        assert again.encode(np.zeros((2, 160, 160, 3), np.uint8)).shape == (2, 512)
    assert model.stat().st_mtime_ns == modified


def test_changed_weights_get_their_own_int8_model(
    int8_encoder: InceptionResnetEncoder,
    int8_cache: Path,
    calibration: CalibrationSet,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Quantising is what the parity test checks; here only the key matters, so the "quantiser"
    # copies the fp32 graph (and records what it was asked to calibrate on).
    calibrated_on: list[int] = []

    def copy_model(fp32_path: Path, out_path: Path, crops: np.ndarray, work: Path) -> None:
        calibrated_on.append(len(crops))
        shutil.copyfile(fp32_path, out_path)

    monkeypatch.setattr(int8_build, "_quantise", copy_model)
    base = load_weights("casia-webface").state_dict
    overrides = {"last_linear.weight": base["last_linear.weight"] * 1.01}
    asked: list[bool] = []

    def provide() -> CalibrationSet:
        asked.append(True)
        return calibration

    before = set((int8_cache / "onnx").glob("*-int8-qdq-*.onnx"))
    with load_encoder(
        backend="onnxruntime", precision="int8", state_overrides=overrides, calibration=provide
    ) as tuned:
        assert tuned.weights_id != int8_encoder.weights_id
    after = set((int8_cache / "onnx").glob("*-int8-qdq-*.onnx"))
    assert asked == [True] and len(calibrated_on) == 1 and calibrated_on[0] > 0
    (new_model,) = after - before
    assert before <= after and tuned.weights_id.split("+")[1] not in "".join(p.name for p in before)
    assert int8_build.report_path(new_model).is_file()
    # Loading the same fine-tuned weights again builds nothing.
    with load_encoder(
        backend="onnxruntime", precision="int8", state_overrides=overrides, calibration=_refuse
    ) as again:
        assert again.weights_id == tuned.weights_id
    assert len(calibrated_on) == 1


def test_int8_without_calibration_crops_says_what_is_needed(fresh_cache: Path, casia_file: Path) -> None:
    copy_casia_into(fresh_cache, casia_file)
    with pytest.raises(CalibrationError, match=r"deepwatch weights calibrate --data DIR"):
        load_encoder(backend="onnxruntime", precision="int8")
    assert not list(fresh_cache.glob("onnx/*-int8-*"))


def test_too_few_or_malformed_calibration_crops_are_refused(tmp_path: Path) -> None:
    with pytest.raises(CalibrationError, match=r"at least 32 real face crops, got 5"):
        CalibrationSet(np.zeros((5, 160, 160, 3), np.uint8), (), "five")
    with pytest.raises(CalibrationError, match=r"N x 160 x 160 x 3 uint8, got \(40, 160, 160, 3\) float32"):
        CalibrationSet(np.zeros((40, 160, 160, 3), np.float32), (), "floats")
    path = tmp_path / "wrong.npz"
    np.savez(path, faces=np.zeros((40, 160, 160, 3), np.uint8))
    with pytest.raises(CalibrationError, match=r"must hold an array 'crops', got arrays \['faces'\]"):
        int8_build.load_calibration_file(path)


def test_calibration_file_round_trip_and_identity_split(tmp_path: Path) -> None:
    crops = np.random.default_rng(0).integers(0, 256, (50, 160, 160, 3), dtype=np.uint8)
    groups = tuple(f"person{i % 10}" for i in range(50))
    path = int8_build.save_calibration_file(tmp_path / "c.npz", CalibrationSet(crops, groups, "x"))
    loaded = int8_build.load_calibration_file(path)
    assert np.array_equal(loaded.crops, crops) and loaded.groups == groups
    assert loaded.description == f"50 crops from {path} (x)"
    calibrate_on, held_out = loaded.split()
    # Every fifth identity (person0, person5) is held out whole: 10 crops of them, none calibrated on.
    assert len(held_out) == 10 and len(calibrate_on) == 40
    held_rows = {i for i in range(50) if i % 10 in (0, 5)}
    assert np.array_equal(held_out, crops[sorted(held_rows)])


@pytest.mark.parametrize(
    ("flags", "report_passed", "expected"),
    [
        (frozenset({"avx2", "fma"}), True, "fp32"),  # this session's EPYC: no native int8 dot products
        (frozenset({"avx2", "avx512_vnni"}), True, "int8"),
        (frozenset({"avx2", "avx_vnni"}), True, "int8"),
        (frozenset({"amx_tile", "amx_int8"}), True, "int8"),
        (frozenset({"avx512_vnni"}), False, "fp32"),  # built, but failed its parity check
    ],
)
def test_auto_precision_needs_vnni_or_amx_and_a_passed_parity_check(
    flags: frozenset[str],
    report_passed: bool,
    expected: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    request = _request(tmp_path)
    report = Int8Report(
        request.weights_digest, "fake", 40, 10, 0.995 if report_passed else 0.9, 0.998, report_passed
    )
    built: list[bool] = []

    def fake_ensure(request: BackendRequest, calibration: object) -> tuple[Path, Int8Report]:
        built.append(True)
        return tmp_path / "model.onnx", report

    monkeypatch.setattr(int8_build, "cpu_flags", lambda: flags)
    monkeypatch.setattr(int8_build, "ensure_int8", fake_ensure)
    assert resolve_precision("auto", "onnxruntime", request) == expected
    # Without VNNI/AMX nothing is built at all (building costs a minute of calibration).
    assert built == ([True] if int8_build.has_fast_int8(flags) else [])
    # Explicit choices are kept, and other backends or devices stay fp32 under auto.
    assert resolve_precision("fp32", "onnxruntime", request) == "fp32"
    assert resolve_precision("int8", "onnxruntime", request) == "int8"
    assert resolve_precision("auto", "torch", request) == "fp32"
    assert resolve_precision("auto", "onnxruntime", dataclasses.replace(request, device="cuda")) == "fp32"


def test_auto_precision_falls_back_to_fp32_without_calibration_crops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(int8_build, "cpu_flags", lambda: frozenset({"avx512_vnni"}))
    request = _request(tmp_path)
    with caplog.at_level("WARNING", logger="engine"):
        assert resolve_precision("auto", "onnxruntime", request) == "fp32"
    assert "no int8 model could be built" in caplog.text and "deepwatch weights calibrate" in caplog.text


def test_auto_precision_on_this_machine_follows_its_cpu_flags(
    int8_encoder: InceptionResnetEncoder, int8_cache: Path
) -> None:
    with load_encoder(precision="auto", calibration=_refuse) as encoder:
        assert isinstance(encoder, InceptionResnetEncoder)
        fast = int8_build.has_fast_int8(int8_build.cpu_flags())
        report = int8_encoder.int8_report
        assert encoder.precision == ("int8" if fast and report is not None and report.passed else "fp32")


def test_cpu_flags_reads_proc_cpuinfo() -> None:
    flags = int8_build.cpu_flags()
    if not Path("/proc/cpuinfo").is_file():
        assert flags == frozenset()
    else:
        assert flags and all(" " not in flag for flag in flags)
    assert torch.backends.cpu.get_cpu_capability() != "AVX512_VNNI" or int8_build.has_fast_int8(flags)
