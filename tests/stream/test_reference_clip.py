"""Enrolment from a short clip (``--reference CLIP.mp4``): which frames are taken, which face is
followed, and how bad clips are refused. Clips are written here; detector and encoder are scripted."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from engine.reference import ReferenceError
from stream.live import reference
from stream.live.reference import (
    ReferenceClip,
    ReferenceFrames,
    decode_reference_media,
    enrol,
    open_reference_clip,
    read_reference_photos,
)
from tests.stream.fakes import ScriptedDetector
from tracking.config import CropConfig

FPS = 20.0


def write_clip(path: Path, frames: list[np.ndarray], fps: float = FPS) -> Path:
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    assert writer.isOpened()
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def numbered_frames(count: int) -> list[np.ndarray]:
    """Frame i is a flat grey of level 10 + 2 i, so a decoded frame says which one it was."""
    return [np.full((120, 160, 3), 10 + 2 * index, np.uint8) for index in range(count)]


class RecordingEncoder:
    """Inner/outer evidence of ones; remembers the mean level of every crop it was given."""

    output_dim = 1024

    def __init__(self) -> None:
        self.crop_levels: list[float] = []

    def encode(self, crops: np.ndarray) -> np.ndarray:
        self.crop_levels.extend(float(crop.mean()) for crop in crops)
        return np.ones((len(crops), 1024), np.float32)


def test_clip_frames_are_taken_four_a_second_from_the_start_up_to_the_scan_limit(tmp_path, monkeypatch):
    clip = ReferenceClip("c.mp4", write_clip(tmp_path / "c.mp4", numbered_frames(60)))  # 3 s at 20 fps
    taken = list(clip.frames())
    assert [round(t, 2) for t, _ in taken] == [0.25 * k for k in range(12)]
    # Every fifth frame (20 fps / 4 Hz), the first one first: the decoded grey level says which
    # (frames 5 apart differ by 10 levels; mp4v and its colour conversion move them a few).
    levels = np.array([float(image.mean()) for _, image in taken])
    assert levels[0] < 14 and np.allclose(np.diff(levels), 10.0, atol=2.5), levels
    assert taken[0][1].shape == (120, 160, 3) and taken[0][1].dtype == np.uint8
    monkeypatch.setattr(reference, "CLIP_SCAN_S", 1.0)
    assert [round(t, 2) for t, _ in clip.frames()] == [0.0, 0.25, 0.5, 0.75, 1.0]


def test_a_clip_enrols_its_first_eight_frames_with_a_face(tmp_path):
    clip = ReferenceClip("call.mp4", write_clip(tmp_path / "call.mp4", numbered_frames(60)))
    # No face in the first three sampled frames, one in every later one.
    detector = ScriptedDetector(lambda call: [] if call < 3 else [(40.0, 20.0, 120.0, 100.0)])
    encoder = RecordingEncoder()
    enrolled = enrol([clip], detector, encoder, CropConfig())
    assert enrolled.photos == reference.CLIP_FRAMES == 8
    assert enrolled.name == "call.mp4 (8 frames)"
    assert detector.calls == 3 + 8  # stops once it has eight, never decodes the rest for nothing
    # A photo and a clip together: one embedding per photo and per clip frame, all averaged.
    photo = np.full((120, 160, 3), 200, np.uint8)
    both = enrol([("me.png", photo), clip], ScriptedDetector(lambda call: [(40.0, 20.0, 120.0, 100.0)]),
                 RecordingEncoder(), CropConfig())  # fmt: skip
    assert both.photos == 9 and both.name == "me.png, call.mp4 (8 frames)"


def test_a_short_clip_enrols_the_frames_it_has(tmp_path):
    clip = ReferenceClip("short.mp4", write_clip(tmp_path / "short.mp4", numbered_frames(15)))  # 0.75 s
    enrolled = enrol([clip], ScriptedDetector(lambda call: [(40.0, 20.0, 120.0, 100.0)]), RecordingEncoder(),
                     CropConfig())  # fmt: skip
    assert enrolled.photos == 3 and enrolled.name == "short.mp4 (3 frames)"


def test_the_face_of_the_first_frame_is_followed_when_another_grows_larger(tmp_path):
    """Two people: the left one (dark) is the larger in the first frame, the right one (bright)
    in every later frame; the enrolled crops are all of the left one."""
    frame = np.zeros((120, 320, 3), np.uint8)
    frame[:, :160] = 30
    frame[:, 160:] = 220
    clip = ReferenceClip("two.mp4", write_clip(tmp_path / "two.mp4", [frame] * 60))
    left_big, left_small = (20.0, 10.0, 140.0, 110.0), (50.0, 30.0, 110.0, 90.0)
    right_big, right_small = (170.0, 5.0, 310.0, 115.0), (200.0, 30.0, 260.0, 90.0)
    first, later = [left_big, right_small], [right_big, left_small]
    detector = ScriptedDetector(lambda call: first if call == 0 else later)
    encoder = RecordingEncoder()
    enrol([clip], detector, encoder, CropConfig(mode="box", margin=0.0))
    assert len(encoder.crop_levels) == 8
    assert max(encoder.crop_levels) < 80, encoder.crop_levels


def test_bad_clips_are_refused_by_name(tmp_path, monkeypatch):
    faceless = ReferenceClip("wall.mp4", write_clip(tmp_path / "wall.mp4", numbered_frames(30)))
    with pytest.raises(ReferenceError, match=r"no face found in reference clip wall\.mp4 \(its first 10 s"):
        enrol([faceless], ScriptedDetector(lambda call: []), RecordingEncoder(), CropConfig())
    with pytest.raises(ReferenceError, match=r"reference clip not found or unreadable: .*gone\.mp4"):
        read_reference_photos([tmp_path / "gone.mp4"])
    garbage = tmp_path / "notes.mp4"
    garbage.write_bytes(b"this is not a video" * 100)
    with pytest.raises(ReferenceError, match=r"cannot read reference clip notes\.mp4: expected a video"):
        read_reference_photos([garbage])
    fine = write_clip(tmp_path / "fine.mov", numbered_frames(10))
    monkeypatch.setattr(reference, "CLIP_MAX_BYTES", fine.stat().st_size - 1)
    with pytest.raises(ReferenceError, match=r"reference clip fine\.mov is 0 MiB; expected a short clip"):
        open_reference_clip(fine)


def test_clip_bytes_become_a_clip_for_as_long_as_the_context_is_open(tmp_path):
    """How a Ray worker gets them: file name and bytes."""
    data = write_clip(tmp_path / "c.MP4", numbered_frames(20)).read_bytes()
    photo_ok, photo = cv2.imencode(".png", np.full((48, 64, 3), 90, np.uint8))
    assert photo_ok
    with decode_reference_media([("p.png", photo.tobytes()), ("c.MP4", data)]) as media:
        (name, image), clip = media
        assert name == "p.png" and image.shape == (48, 64, 3)
        assert isinstance(clip, ReferenceClip) and clip.name == "c.MP4"
        assert len(list(clip.frames())) == 4
        folder = clip.path.parent
    assert not folder.exists()


def test_frames_sent_as_stills_enrol_as_a_clip_does():
    """The page's clip (frames already decoded) goes the clip's way: frames without a face are
    skipped, the first 8 with one enrolled, and a set with no face is refused by its own count."""
    images = tuple(numbered_frames(10))
    boxes = {0: [], 1: [(10.0, 10.0, 50.0, 50.0), (60.0, 10.0, 150.0, 110.0)]}
    detector = ScriptedDetector(
        lambda call: boxes.get(call, [(12.0, 10.0, 52.0, 50.0), (60.0, 8.0, 152.0, 112.0)])
    )
    encoder = RecordingEncoder()
    enrolled = enrol(
        [ReferenceFrames("call.webm", images)], detector, encoder, CropConfig(mode="box", margin=0.0)
    )
    # Frame 0 has no face; frames 1-8 give the 8 crops, the larger face's each time.
    assert enrolled.name == "call.webm (8 frames)" and enrolled.photos == 8 and detector.calls == 9
    assert encoder.crop_levels == pytest.approx([10 + 2 * index for index in range(1, 9)])
    with pytest.raises(ReferenceError, match=r"no face found in reference clip dark\.webm \(3 frames\)"):
        enrol(
            [ReferenceFrames("dark.webm", images[:3])],
            ScriptedDetector(lambda call: []),
            encoder,
            CropConfig(),
        )
