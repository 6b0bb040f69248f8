"""Fixtures for the tracking tests: one MTCNN per session and a generated face video."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage import data

from tracking import Detection, FaceDetector

# The astronaut's face box in skimage's 512 x 512 photo, as MTCNN finds it (x1, y1, x2, y2).
ASTRONAUT_FACE_BOX = np.array([182.2, 62.0, 267.5, 174.1])

VIDEO_SIZE = (640, 480)  # width, height
VIDEO_FPS = 25.0
VIDEO_FRAMES = 60


@dataclass(frozen=True)
class GeneratedVideo:
    """An mp4 of the astronaut photo moving and growing over a plain background.

    ``face_boxes`` is where the face is in each frame (the photo's face box, moved and scaled).
    """

    path: Path
    fps: float
    face_boxes: np.ndarray

    def frames(self) -> Iterator[np.ndarray]:
        capture = cv2.VideoCapture(str(self.path))
        try:
            while True:
                ok, frame = capture.read()
                if not ok:
                    return
                yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        finally:
            capture.release()


def place_astronaut(scale: float, x: float, y: float, size: tuple[int, int] = VIDEO_SIZE) -> np.ndarray:
    """A frame with the astronaut photo scaled by ``scale`` and its top-left corner at (x, y)."""
    width, height = size
    canvas = np.zeros((height, width, 3), np.uint8)
    canvas[:] = np.linspace(70, 150, width, dtype=np.uint8)[None, :, None]
    matrix = np.array([[scale, 0.0, x], [0.0, scale, y]])
    photo = data.astronaut()
    return cv2.warpAffine(photo, matrix, (width, height), dst=canvas, borderMode=cv2.BORDER_TRANSPARENT)


def write_astronaut_video(path: Path, frames: int = VIDEO_FRAMES) -> GeneratedVideo:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), VIDEO_FPS, VIDEO_SIZE)
    if not writer.isOpened():
        pytest.fail("OpenCV cannot write mp4v video here")
    boxes = []
    for i in range(frames):
        progress = i / (frames - 1)
        scale = 0.55 + 0.35 * progress
        x, y = 20 + 220 * progress, 10 + 30 * np.sin(np.pi * progress)
        writer.write(cv2.cvtColor(place_astronaut(scale, x, y), cv2.COLOR_RGB2BGR))
        boxes.append(ASTRONAUT_FACE_BOX * scale + [x, y, x, y])
    writer.release()
    return GeneratedVideo(path=path, fps=VIDEO_FPS, face_boxes=np.array(boxes))


@pytest.fixture(scope="session")
def astronaut_video(tmp_path_factory: pytest.TempPathFactory) -> GeneratedVideo:
    return write_astronaut_video(tmp_path_factory.mktemp("video") / "astronaut.mp4")


@pytest.fixture(scope="session")
def detector() -> FaceDetector:
    return FaceDetector()


@pytest.fixture(scope="session")
def astronaut_detections(astronaut_video: GeneratedVideo, detector: FaceDetector) -> list[list[Detection]]:
    """MTCNN's detections on every frame of the generated video, computed once per session."""
    return [detector.detect(frame) for frame in astronaut_video.frames()]
