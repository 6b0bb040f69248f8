"""Generated test videos: the demo photo moving and zooming, written into tmp_path."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from stream.sources.demo import write_demo_video

__all__ = ["count_frames", "first_frame", "write_demo_video"]


def count_frames(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def first_frame(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            return frame.to_ndarray(format="rgb24")
    raise ValueError(f"{path} has no frames")
