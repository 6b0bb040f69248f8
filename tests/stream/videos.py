"""Generated test videos: the demo photo moving and zooming, written into tmp_path."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from stream.sources.demo import render_demo_frame


def write_demo_video(
    path: Path,
    *,
    seconds: float = 2.0,
    fps: int = 15,
    width: int = 320,
    height: int = 240,
    faces: int = 1,
    faststart: bool = False,
) -> int:
    """Write an H.264 MP4 of the demo scene; returns the number of frames written.

    ``faststart`` puts the index (moov) first, so a file cut short still opens and plays its
    first part, the harder truncation case.
    """
    count = round(seconds * fps)
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), mode="w", options=options) as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "ultrafast", "tune": "zerolatency", "g": str(fps)}
        for index in range(count):
            image = render_demo_frame(index / fps, width, height, faces)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return count


def count_frames(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def first_frame(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            return frame.to_ndarray(format="rgb24")
    raise ValueError(f"{path} has no frames")
