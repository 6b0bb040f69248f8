"""Synthetic test videos built from skimage's astronaut photo (a real face, available offline)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import skimage.data


def write_face_video(
    path: Path,
    frames: int = 24,
    fps: float = 8.0,
    size_wh: tuple[int, int] = (320, 240),
    tint: tuple[int, int, int] = (0, 0, 0),
    face: bool = True,
) -> Path:
    """An mp4 of the astronaut's head drifting right across a grey frame (or plain noise).

    ``tint`` is added to the face region only (BGR-independent RGB offsets): a crude "manipulated"
    face for label tests.
    """
    width, height = size_wh
    head = cv2.resize(skimage.data.astronaut()[0:260, 120:380], (150, 150), interpolation=cv2.INTER_AREA)
    head = np.clip(head.astype(np.int16) + np.asarray(tint, np.int16), 0, 255).astype(np.uint8)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    rng = np.random.default_rng(0)
    for index in range(frames):
        frame = np.full((height, width, 3), 128, np.uint8)
        if face:
            x = 20 + int(index * (width - 190) / max(frames - 1, 1))
            frame[45:195, x : x + 150] = head
        else:
            frame = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path
