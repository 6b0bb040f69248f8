"""Labelled media sets for training and evaluation: a manifest CSV, a Celeb-DF v2 folder, or real/ + fake/.

Every loader returns ``MediaItem`` rows; bad rows fail naming the row, never silently.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
LABELS = {"real": 0, "fake": 1}


@dataclass(frozen=True)
class MediaItem:
    """One labelled video or image.

    Attributes:
        path: absolute path of the file.
        name: stable id relative to the set's root (manifest path, or folder-relative path).
        label: 0 real, 1 fake.
        group: identity group; never split across train and test.
        kind: "video" or "image".
        method: manipulation method, "none" for real.
        source: where the file comes from (dataset or repository).
        split: "test" for a set's official test split (Celeb-DF), else "".
    """

    path: Path
    name: str
    label: int
    group: str
    kind: str = "video"
    method: str = "none"
    source: str = ""
    split: str = ""


def load_media_set(location: str | Path) -> list[MediaItem]:
    """Load a manifest CSV, a Celeb-DF v2 folder, or a folder holding real/ and fake/.

    A set without a single video or image raises ``ValueError`` saying where nothing was found.
    """
    location = Path(location)
    if location.is_file() and location.suffix.lower() == ".csv":
        items = load_manifest(location)
    elif location.is_dir() and (location / "Celeb-synthesis").is_dir():
        items = load_celeb_df(location)
    elif location.is_dir() and ((location / "real").is_dir() or (location / "fake").is_dir()):
        items = load_real_fake_folders(location)
    else:
        raise ValueError(
            f"expected a manifest .csv, a Celeb-DF v2 folder (with Celeb-synthesis/) or a folder with "
            f"real/ and fake/, got {location}"
        )
    if not items:
        raise ValueError(
            f"{location}: no video ({', '.join(VIDEO_SUFFIXES)}) or image ({', '.join(IMAGE_SUFFIXES)}) "
            "found: the set is empty"
        )
    return items


def load_manifest(manifest: str | Path) -> list[MediaItem]:
    """Rows of a CSV with at least ``path,label,group``; paths are relative to the manifest's folder.

    Optional columns: ``kind`` (video|image, else guessed from the suffix), ``method``, ``source``,
    ``set``. A missing file, an unknown label or an empty group raises ValueError naming the row.
    """
    manifest = Path(manifest)
    root = manifest.parent
    with manifest.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing_columns = {"path", "label", "group"} - set(reader.fieldnames or [])
        if missing_columns:
            raise ValueError(
                f"{manifest}: expected columns path,label,group, missing {sorted(missing_columns)} "
                f"(got {reader.fieldnames})"
            )
        items = []
        for line, row in enumerate(reader, start=2):
            where = f"{manifest} line {line} ({row.get('path')!r})"
            label_text = (row.get("label") or "").strip().lower()
            if label_text not in LABELS:
                raise ValueError(f"{where}: label must be one of {sorted(LABELS)}, got {row.get('label')!r}")
            path = root / (row.get("path") or "").strip()
            if not row.get("path") or not path.is_file():
                raise ValueError(f"{where}: file not found: {path}")
            group = (row.get("group") or "").strip()
            if not group:
                raise ValueError(f"{where}: group is empty")
            kind = (row.get("kind") or "").strip().lower() or _kind_of(path)
            if kind not in ("video", "image"):
                raise ValueError(f"{where}: kind must be video or image, got {row.get('kind')!r}")
            label = LABELS[label_text]
            method = (row.get("method") or "").strip() or ("none" if label == 0 else "unknown")
            items.append(
                MediaItem(
                    path=path.resolve(),
                    name=row["path"].strip(),
                    label=label,
                    group=group,
                    kind=kind,
                    method=method,
                    source=(row.get("source") or "").strip(),
                    split=(row.get("set") or "").strip(),
                )
            )
    logger.info("manifest %s: %d rows", manifest, len(items))
    return items


def load_celeb_df(root: str | Path) -> list[MediaItem]:
    """Celeb-DF v2: Celeb-real and YouTube-real (real), Celeb-synthesis (fake).

    Groups are the identity shown in the scene (``id0`` of ``id0_id1_0000.mp4``); videos listed in
    ``List_of_testing_videos.txt`` get ``split="test"``.
    """
    root = Path(root)
    test_names: set[str] = set()
    listing = root / "List_of_testing_videos.txt"
    if listing.is_file():
        for line in listing.read_text(encoding="utf-8").splitlines():
            parts = line.split()
            if len(parts) == 2:
                test_names.add(parts[1])
    items = []
    for folder, label, method in (
        ("Celeb-real", 0, "none"),
        ("YouTube-real", 0, "none"),
        ("Celeb-synthesis", 1, "Celeb-DF"),
    ):
        for path in sorted((root / folder).glob("*")):
            if path.suffix.lower() not in VIDEO_SUFFIXES:
                continue
            name = f"{folder}/{path.name}"
            identity = path.stem.split("_")[0]
            group = f"youtube:{path.stem}" if folder == "YouTube-real" else f"celeb:{identity}"
            items.append(
                MediaItem(
                    path=path.resolve(),
                    name=name,
                    label=label,
                    group=group,
                    method=method,
                    source=f"Celeb-DF/{folder}",
                    split="test" if name in test_names else "",
                )
            )
    logger.info("Celeb-DF %s: %d videos (%d in the official test list)", root, len(items), len(test_names))
    return items


def load_real_fake_folders(root: str | Path) -> list[MediaItem]:
    """Files under real/ and fake/; without identity information every file is its own group."""
    root = Path(root)
    items = []
    for folder, label in (("real", 0), ("fake", 1)):
        for path in sorted((root / folder).rglob("*")):
            suffix = path.suffix.lower()
            if suffix not in VIDEO_SUFFIXES + IMAGE_SUFFIXES:
                continue
            name = str(path.relative_to(root))
            items.append(
                MediaItem(
                    path=path.resolve(),
                    name=name,
                    label=label,
                    group=f"file:{name}",
                    kind=_kind_of(path),
                    method="none" if label == 0 else "unknown",
                    source=root.name,
                )
            )
    logger.warning("%s: no identity groups in a real/fake folder layout; each file is its own group", root)
    return items


def _kind_of(path: Path) -> str:
    return "image" if path.suffix.lower() in IMAGE_SUFFIXES else "video"
