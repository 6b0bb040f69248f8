"""``deepwatch weights`` and ``deepwatch selfcheck`` end to end through the CLI entry point."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from engine.inception_resnet_v1 import InceptionResnetV1
from engine.weights import CACHE_DIR_ENV, prepare_weights
from stream.cli import main


@pytest.fixture(scope="module")
def converted_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    cache = tmp_path_factory.mktemp("cli-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CACHE_DIR_ENV, str(cache))
        prepare_weights("casia-webface")
        yield cache


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(url: str, *args: object, **kwargs: object) -> object:
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


def test_weights_lists_status_path_and_sha256(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path))
    assert main(["weights"]) == 0
    out = capsys.readouterr().out
    assert f"cache: {tmp_path}" in out
    assert "casia-webface   not cached" in out and "vggface2        not cached" in out
    assert "sha256 8beef909d988878be368f78366aaec8c13469e5c16261bc418854fd020ae3c0d" in out

    assert main(["weights", "prepare", "casia-webface"]) == 0
    assert (tmp_path / "weights" / "casia-webface.safetensors").is_file()
    capsys.readouterr()
    assert main(["weights", "list"]) == 0
    assert "casia-webface   cached" in capsys.readouterr().out


def test_weights_prepare_vggface2_offline_fails_naming_casia(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], offline: None
) -> None:
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path))
    assert main(["weights", "prepare", "vggface2"]) == 1
    assert "use 'casia-webface'" in capsys.readouterr().err


@pytest.mark.slow
def test_selfcheck_passes_with_the_real_weights(
    converted_cache: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(CACHE_DIR_ENV, str(converted_cache))
    assert main(["selfcheck", "--backend", "torch"]) == 0
    out = capsys.readouterr().out
    assert "backend: torch" in out and "weights: casia-webface@8beef909d988" in out
    assert out.count("same face,") == 6 and out.count("no face,") == 4
    assert out.rstrip().endswith("PASS")


def test_selfcheck_fails_on_untrained_weights(
    converted_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(CACHE_DIR_ENV, str(converted_cache))
    torch.manual_seed(0)
    untrained = tmp_path / "untrained.pt"
    torch.save(InceptionResnetV1().state_dict(), untrained)
    assert main(["selfcheck", "--backend", "torch", "--weights", str(untrained)]) == 1
    assert capsys.readouterr().out.rstrip().endswith("FAIL")


def test_selfcheck_reports_an_unusable_backend(
    converted_cache: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(CACHE_DIR_ENV, str(converted_cache))
    assert main(["selfcheck", "--backend", "tensorrt"]) == 1
    assert "needs device='cuda'" in capsys.readouterr().err


def test_the_cli_and_the_packages_import_without_torch() -> None:
    # `deepwatch --help` and argument errors must not wait seconds for torch; the packages load
    # their exports on first use.
    import subprocess
    import sys

    code = (
        "import sys, contextlib, io\n"
        "import engine, tracking, stream.cli\n"
        "assert {'FaceEncoder', 'SequenceScorer', 'load_checkpoint'} <= set(dir(engine))\n"
        "assert {'FaceTracker', 'FaceDetector'} <= set(dir(tracking))\n"
        "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
        "    try:\n"
        "        stream.cli.main(['--help'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        "assert 'serve' in out.getvalue() and 'train' in out.getvalue()\n"
        "print(sorted(m for m in ('torch', 'facenet_pytorch', 'aiortc') if m in sys.modules))\n"
        "print(engine.ScorerConfig.__module__, tracking.TrackerConfig.__module__)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["[]", "engine.scorer_config tracking.config"]
    import engine

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = engine.nope  # type: ignore[attr-defined]


def test_the_torch_free_name_lists_match_what_they_name() -> None:
    from engine.config import WEIGHTS_NAMES
    from engine.heads import HEADS, head_features
    from engine.scorer_config import EVIDENCE_HEAD_NAMES, HEAD_NAMES
    from engine.weights import REGISTRY

    assert tuple(REGISTRY) == WEIGHTS_NAMES
    assert sorted(HEADS) == sorted(HEAD_NAMES + EVIDENCE_HEAD_NAMES)
    assert {head_features(name) for name in HEAD_NAMES} == {"embedding"}
    assert {head_features(name) for name in EVIDENCE_HEAD_NAMES} == {"inner_outer"}
