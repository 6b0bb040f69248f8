"""Annotated photos: ``deepwatch run PHOTO --out`` writes each scored photo with its faces drawn."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from stream.contracts import Event, FrameResult

# What ``--out`` may name for one photo; anything else is a folder to write into.
PHOTO_OUTPUT_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


class PhotoSink:
    """Writes each annotated photo to ``path`` (one photo) or into the folder ``path`` (several).

    With ``single`` the one photo goes to ``path`` itself, which must end in an image suffix
    (``PHOTO_OUTPUT_SUFFIXES``). Otherwise ``path`` is a folder (made if missing; it must not be
    an existing file, nor a missing one with an image name) and a photo whose ``source_id`` is
    ``album/beach.jpg`` is written as ``album__beach.jpg`` there, so photos of two folders with the
    same file name stay apart.
    ``ValueError`` for a path that cannot be such an output, ``OSError`` when a file cannot be
    written.
    """

    needs_annotated = True

    def __init__(self, path: str | Path, *, single: bool) -> None:
        self.path = Path(path)
        self._single = single
        if single and self.path.suffix.lower() not in PHOTO_OUTPUT_SUFFIXES:
            raise ValueError(
                f"--out for one photo must end in one of {', '.join(PHOTO_OUTPUT_SUFFIXES)}, "
                f"got {self.path.name!r}"
            )
        if not single:
            if self.path.exists() and not self.path.is_dir():
                raise ValueError(f"--out for several photos must be a folder, {self.path} is a file")
            if not self.path.exists() and self.path.suffix.lower() in PHOTO_OUTPUT_SUFFIXES:
                raise ValueError(
                    f"--out for several photos must be a folder, got the image name {self.path.name!r}"
                )
            self.path.mkdir(parents=True, exist_ok=True)
        self.written: list[Path] = []

    def write(self, result: FrameResult, annotated: np.ndarray | None) -> None:
        if annotated is None:
            return
        target = self.path if self._single else self.path / _file_name(result.frame.source_id)
        if target.suffix.lower() not in PHOTO_OUTPUT_SUFFIXES:
            target = target.with_name(target.name + ".png")  # e.g. a .tif photo
        target.parent.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(str(target), cv2.cvtColor(annotated, cv2.COLOR_RGB2BGR)):
            raise OSError(f"cannot write annotated photo {target}")
        self.written.append(target)

    def write_events(self, events: Sequence[Event]) -> None:
        """Photos have no events outside a photo."""

    def close(self) -> None:
        """Every photo is written whole as it comes."""


def _file_name(source_id: str) -> str:
    return source_id.replace("/", "__").replace("\\", "__")
