"""Property-based fuzzing of the video file readers (``stream.sources.open_source``) with hypothesis.

Small valid clips (H.264 in MP4, MJPEG in AVI, VP8 in WebM) generated in a temporary folder, then
damaged: cut at a random offset, bytes flipped at random places, emptied, or replaced by text or
random bytes under a video name. Every case must end in one of: frames then a clean end, or a
``SourceError`` whose message is one line (at start, or from ``read`` after some frames); never
another exception, a logged traceback, a hang, or a frame that breaks the ``Frame`` contract.
Derandomised; read through the public API only.
"""

from __future__ import annotations

import time
from pathlib import Path

import av
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.sources import SourceConfig, SourceError, open_source
from tests.fuzz.cases import ErrorRecords, scaled
from tests.fuzz.test_fuzz_signalling import FUZZ_SETTINGS

# Cases (see test_fuzz_signalling.py for the budget).
VIDEO_CASES = scaled(1500)
CLIP_FRAMES = 12
CLIP_SIZE = (64, 48)
# A damaged 12-frame clip is read in milliseconds; this long means the reader hangs.
READ_DEADLINE_S = 20.0
FORMATS = {"mp4": ("mp4", "libx264"), "avi": ("avi", "mjpeg"), "webm": ("webm", "libvpx")}


def write_clip(path: Path, container_format: str, codec: str) -> bytes:
    width, height = CLIP_SIZE
    with av.open(str(path), "w", format=container_format) as output:
        stream = output.add_stream(codec, rate=10)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        for index in range(CLIP_FRAMES):
            image = np.zeros((height, width, 3), dtype=np.uint8)
            image[:, : (index + 1) * width // CLIP_FRAMES] = (200, 40 + index * 10, 90)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format=stream.pix_fmt)
            for packet in stream.encode(frame):
                output.mux(packet)
        for packet in stream.encode():
            output.mux(packet)
    return path.read_bytes()


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("clips")
    return {suffix: write_clip(folder / f"clip.{suffix}", *FORMATS[suffix]) for suffix in FORMATS}


@st.composite
def damaged_files(draw: st.DrawFn, clips: dict[str, bytes]) -> tuple[str, bytes, str]:
    """(suffix, content, what was done) for one damaged file."""
    suffix = draw(st.sampled_from(sorted(clips)))
    data = clips[suffix]
    damage = draw(
        st.sampled_from(["truncate", "truncate", "flip", "flip", "both", "empty", "text", "random"])
    )
    if damage == "empty":
        return suffix, b"", damage
    if damage == "text":
        return "mp4", draw(st.text(max_size=200)).encode("utf-8"), damage
    if damage == "random":
        return suffix, draw(st.binary(min_size=1, max_size=512)), damage
    content = bytearray(data)
    if damage in ("flip", "both"):
        for _ in range(draw(st.integers(1, 8))):
            content[draw(st.integers(0, len(content) - 1))] ^= draw(st.integers(1, 255))
    if damage in ("truncate", "both"):
        content = content[: draw(st.integers(0, len(content) - 1))]
    return suffix, bytes(content), damage


def read_all(path: Path) -> tuple[str, int]:
    """Read ``path`` to its end through the public API: ("ended" | "refused", frames read)."""
    reader = open_source(str(path), SourceConfig(file_queue_frames=4))
    try:
        reader.start()
    except SourceError as error:
        assert "\n" not in str(error), str(error)
        return "refused", 0
    frames = 0
    deadline = time.monotonic() + READ_DEADLINE_S
    try:
        while True:
            assert time.monotonic() < deadline, (
                f"reader of {path.name} still reading after {READ_DEADLINE_S} s"
            )
            try:
                frame = reader.read(timeout_s=1.0)
            except SourceError as error:
                assert "\n" not in str(error), str(error)
                return "refused", frames
            if frame is None:
                if reader.ended:
                    return "ended", frames
                continue
            assert frame.image.dtype == np.uint8 and frame.image.ndim == 3 and frame.image.shape[2] == 3
            assert np.isfinite(frame.timestamp_s)
            frames += 1
    finally:
        reader.stop()


def test_a_damaged_metadata_tag_is_a_source_error(clips: dict[str, bytes], tmp_path: Path) -> None:
    # Found by fuzzing: PyAV decodes container tags as UTF-8, and one flipped byte in the MP4's
    # brand list raised UnicodeDecodeError out of start() instead of a SourceError.
    content = bytearray(clips["mp4"])
    assert content[16:20] == b"isom"
    content[19] = 0xDC
    path = tmp_path / "tag.mp4"
    path.write_bytes(bytes(content))
    assert read_all(path)[0] == "refused"


def test_damaged_video_files_end_cleanly_or_are_refused_in_one_line(
    clips: dict[str, bytes], tmp_path: Path
) -> None:
    # The undamaged clips themselves read completely.
    for suffix, data in clips.items():
        (tmp_path / f"whole.{suffix}").write_bytes(data)
        assert read_all(tmp_path / f"whole.{suffix}") == ("ended", CLIP_FRAMES), suffix
    outcomes: dict[str, int] = {"ended": 0, "refused": 0}
    errors = ErrorRecords(allow_error_lines=True)

    @settings(max_examples=VIDEO_CASES, **FUZZ_SETTINGS)
    @given(case=damaged_files(clips))
    def one(case: tuple[str, bytes, str]) -> None:
        suffix, content, _ = case
        path = tmp_path / f"damaged.{suffix}"
        path.write_bytes(content)
        outcome, frames = read_all(path)
        assert frames <= 4 * CLIP_FRAMES
        outcomes[outcome] += 1

    with errors.watching():
        one()
    errors.assert_none()
    assert sum(outcomes.values()) >= VIDEO_CASES
    assert outcomes["ended"] > 0 and outcomes["refused"] > 0, outcomes
