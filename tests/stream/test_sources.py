"""Sources: parsing, files without loss, live sources keeping the newest frame, bad input."""

from __future__ import annotations

import threading
import time

import cv2
import numpy as np
import pytest

from stream.sources import FrameReader, GrabbedImage, SourceConfig, SourceError, open_source
from stream.sources.demo import DemoGrabber
from stream.sources.image_folder import ImageFolderGrabber
from stream.sources.network import NetworkStreamGrabber, ReconnectPolicy
from stream.sources.screen import ScreenGrabber
from stream.sources.spec import make_grabber
from stream.sources.video_file import VideoFileGrabber
from stream.sources.webcam import WebcamGrabber
from tests.stream.videos import write_demo_video


def read_all(source, timeout_s: float = 5.0, delay_s: float = 0.0):
    frames = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        frame = source.read(timeout_s)
        if frame is None:
            if source.ended:
                return frames
            continue
        frames.append(frame)
        if delay_s:
            time.sleep(delay_s)
    raise AssertionError("source did not end")


def test_spec_parsing(tmp_path):
    config = SourceConfig()
    video = tmp_path / "clip.mp4"
    write_demo_video(video, seconds=0.2)
    (tmp_path / "frames").mkdir()
    assert isinstance(make_grabber("0", config), WebcamGrabber)
    assert make_grabber("webcam:2", config).index == 2  # type: ignore[attr-defined]
    assert isinstance(make_grabber("rtsp://u:pw@cam/s", config), NetworkStreamGrabber)
    assert make_grabber("rtsp://u:pw@cam/s", config).name == "rtsp://u:***@cam/s"
    assert isinstance(make_grabber("https://cam/video.mjpg", config), NetworkStreamGrabber)
    assert isinstance(make_grabber(str(video), config), VideoFileGrabber)
    assert isinstance(make_grabber(f"file://{video}", config), VideoFileGrabber)
    assert isinstance(make_grabber(str(tmp_path / "frames"), config), ImageFolderGrabber)
    screen = make_grabber("screen:10,20,300,200", config)
    assert isinstance(screen, ScreenGrabber) and (screen.region.left, screen.region.width) == (10, 300)
    assert isinstance(make_grabber("demo", config), DemoGrabber)


@pytest.mark.parametrize(
    ("spec", "pattern"),
    [
        ("ftp://user:pw@host/x.mp4", r"unsupported URL scheme 'ftp' in ftp://user:\*\*\*@host/x\.mp4"),
        ("/no/such/clip.mp4", r"no such file or folder: /no/such/clip\.mp4"),
        ("screen:1,2,3", r"bad screen source 'screen:1,2,3'"),
        ("screen:0,0,0,10", r"width and height > 0"),
        ("", r"empty source"),
    ],
)
def test_bad_specs(spec, pattern):
    with pytest.raises(SourceError, match=pattern):
        open_source(spec)


def test_video_file_is_read_completely_with_back_pressure(tmp_path):
    video = tmp_path / "clip.mp4"
    written = write_demo_video(video, seconds=2.0, fps=15)
    source = open_source(str(video), SourceConfig(file_queue_frames=2))
    with source:
        assert not source.live
        # A consumer slower than the decoder: the bounded queue must hold the reader back.
        frames = read_all(source, delay_s=0.01)
    assert len(frames) == written == 30
    assert [f.index for f in frames] == list(range(30))
    assert frames[0].timestamp_s == pytest.approx(0.0)
    assert frames[-1].timestamp_s == pytest.approx(29 / 15, abs=1e-3)
    assert source.frames_dropped == 0
    assert frames[0].image.shape == (240, 320, 3) and frames[0].image.dtype == np.uint8
    assert source.nominal_fps == pytest.approx(15)


def test_paced_file_acts_like_a_camera(tmp_path):
    video = tmp_path / "clip.mp4"
    write_demo_video(video, seconds=2.0, fps=15)
    source = open_source(str(video), realtime=True)
    started = time.monotonic()
    with source:
        assert source.live
        frames = read_all(source, delay_s=0.2)  # a pipeline at 5 fps behind a 15 fps input
    elapsed = time.monotonic() - started
    assert elapsed >= 1.8  # paced to the media time of the last frame (~1.93 s)
    assert source.frames_read == 30
    assert len(frames) + source.frames_dropped == 30
    assert source.frames_dropped >= 15
    assert [f.index for f in frames] == sorted(f.index for f in frames)


def test_looping_file_keeps_timestamps_increasing(tmp_path):
    video = tmp_path / "clip.mp4"
    write_demo_video(video, seconds=0.4, fps=10)
    source = open_source(str(video), loop=True)
    with source:
        frames = [source.read(5.0) for _ in range(10)]
    timestamps = [f.timestamp_s for f in frames if f is not None]
    assert len(timestamps) == 10
    assert timestamps == sorted(timestamps)
    assert timestamps[4] == pytest.approx(0.4)
    assert timestamps[9] == pytest.approx(0.9)


def test_corrupt_and_truncated_files(tmp_path):
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    with pytest.raises(SourceError, match=r"cannot open video file .*garbage\.mp4"):
        open_source(str(garbage)).start()

    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(SourceError, match=r"cannot open video file .*empty\.mp4"):
        open_source(str(empty)).start()

    # Index at the end (the usual layout): a cut file has no index and cannot be opened.
    whole = tmp_path / "whole.mp4"
    write_demo_video(whole, seconds=2.0)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(SourceError, match=r"cut\.mp4.*(corrupt|truncated)"):
        open_source(str(cut)).start()

    # Index first: the cut file opens and plays its first part, then is reported as truncated.
    fast = tmp_path / "fast.mp4"
    write_demo_video(fast, seconds=2.0, faststart=True)
    cut_fast = tmp_path / "cut_fast.mp4"
    cut_fast.write_bytes(fast.read_bytes()[: fast.stat().st_size // 2])
    source = open_source(str(cut_fast))
    source.start()
    got = 0
    with pytest.raises(SourceError, match=r"cut_fast\.mp4: truncated: decoded \d+ of the 30 frames"):
        while True:
            frame = source.read(5.0)
            if frame is None and source.ended:
                break
            got += frame is not None
    source.stop()
    assert 0 < got < 30


def test_image_folder(tmp_path):
    folder = tmp_path / "stills"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"{i:02d}.png"), np.full((40, 60, 3), 50 * i, dtype=np.uint8))
    (folder / "03.jpg").write_bytes(b"not an image")
    (folder / "notes.txt").write_text("ignored")
    source = open_source(str(folder), SourceConfig(image_folder_fps=2.0))
    with source:
        frames = read_all(source)
    assert [f.timestamp_s for f in frames] == [0.0, 0.5, 1.0]
    assert [int(f.image[0, 0, 0]) for f in frames] == [0, 50, 100]
    empty = tmp_path / "empty_folder"
    empty.mkdir()
    with pytest.raises(SourceError, match="no images"):
        open_source(str(empty)).start()


def test_a_damaged_png_in_an_image_folder_is_skipped_before_opencv_reads_it(tmp_path, monkeypatch, caplog):
    folder = tmp_path / "stills"
    folder.mkdir()
    ok, encoded = cv2.imencode(".png", np.full((40, 60, 3), 80, dtype=np.uint8))
    assert ok
    (folder / "00.png").write_bytes(encoded.tobytes())
    damaged = bytearray(encoded.tobytes())
    damaged[damaged.index(b"IDAT") - 4] = 164  # the IDAT chunk now declares ~2.75 GB
    (folder / "01.png").write_bytes(bytes(damaged))
    decode = cv2.imdecode

    def imdecode_refusing_the_damaged_file(buffer, flags):
        assert buffer.tobytes() != bytes(damaged), "OpenCV was given the damaged PNG"
        return decode(buffer, flags)

    monkeypatch.setattr(cv2, "imdecode", imdecode_refusing_the_damaged_file)
    grabber = ImageFolderGrabber(folder, fps=1.0)
    grabber.open()
    with caplog.at_level("WARNING", logger="stream.sources.image_folder"):
        first, second = grabber.grab(), grabber.grab()
    assert first is not None and int(first.image[0, 0, 0]) == 80 and second is None
    assert grabber.skipped == ["01.png"]
    assert "01.png: a damaged PNG, its 'IDAT' chunk at byte 33 declares" in caplog.text


class CountingLiveGrabber:
    """A live grabber producing numbered frames as fast as asked, or failing on demand."""

    live = True
    name = "counter"

    def __init__(self, fail_after: int | None = None) -> None:
        self.count = 0
        self._fail_after = fail_after
        self.closed = False
        self._stop = threading.Event()

    def open(self) -> None:
        pass

    def grab(self):
        if self._fail_after is not None and self.count >= self._fail_after:
            raise SourceError("counter: the camera caught fire")
        if self._stop.wait(0.002):
            return None
        self.count += 1
        return GrabbedImage(image=np.full((8, 8, 3), self.count % 256, dtype=np.uint8))

    def close(self) -> None:
        self.closed = True

    def interrupt(self) -> None:
        self._stop.set()


def test_live_source_keeps_the_newest_frame_and_counts_drops():
    grabber = CountingLiveGrabber()
    source = FrameReader(grabber)
    source.start()
    time.sleep(0.2)
    frame = source.read(1.0)
    assert frame is not None
    assert frame.index >= 10  # the newest, not the first
    time.sleep(0.1)
    second = source.read(1.0)
    source.stop()
    assert second is not None and second.index > frame.index
    assert grabber.closed
    # Every frame grabbed was either handed out or counted as dropped (one may still wait).
    handed = 2
    assert source.frames_read - handed - source.frames_dropped in (0, 1)
    assert source.frames_dropped >= 10
    assert second.timestamp_s > frame.timestamp_s > 0


def test_reader_reports_the_grabber_error_after_the_last_frame():
    source = FrameReader(CountingLiveGrabber(fail_after=3))
    source.start()
    with pytest.raises(SourceError, match="caught fire"):
        for _ in range(100):
            source.read(1.0)
    assert source.ended
    source.stop()


def test_reconnect_policy_backs_off_exponentially():
    assert list(ReconnectPolicy(0.5, 4.0, max_attempts=6).delays_s()) == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    forever = ReconnectPolicy(1.0, 2.0, max_attempts=0).delays_s()
    assert [next(forever) for _ in range(5)] == [1.0, 2.0, 2.0, 2.0, 2.0]
    with pytest.raises(ValueError, match="max_backoff_s"):
        ReconnectPolicy(2.0, 1.0)


def test_unreachable_stream_fails_fast_with_redacted_url():
    # Port 9 on loopback: nothing listens, the connection is refused at once.
    source = open_source("rtsp://admin:hunter2@127.0.0.1:9/live", SourceConfig(open_timeout_s=2.0))
    with pytest.raises(SourceError) as caught:
        source.start()
    message = str(caught.value)
    assert message.startswith("cannot open stream rtsp://admin:***@127.0.0.1:9/live")
    assert "hunter2" not in message


def test_missing_webcam():
    with pytest.raises(SourceError, match="cannot open webcam 97"):
        open_source("97").start()


def test_demo_source_has_every_frame():
    source = FrameReader(DemoGrabber(seconds=1.0, fps=10, width=160, height=120))
    with source:
        frames = read_all(source)
    assert len(frames) == 10
    assert frames[3].timestamp_s == pytest.approx(0.3)
    assert frames[0].image.shape == (120, 160, 3)
