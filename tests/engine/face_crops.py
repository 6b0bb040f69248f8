"""Real face crops for the encoder tests: faces found by facenet-pytorch's MTCNN in the shared data.

Frames are decoded from the start (never by seeking, see the data README), downscaled for the
detector, and the face is cut from the full-resolution frame with facenet-pytorch's margin rule.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

CROP_SIZE_PX = 160
# facenet-pytorch's margin, in pixels of the 160 px output.
MARGIN_PX = 20
# Faces fill a good part of these talking-head frames: detecting at 256 px is enough and ~10x faster.
DETECT_SIZE_PX = 256
MIN_DETECTION_PROBABILITY = 0.95


@dataclass(frozen=True)
class FaceCrop:
    clip: str
    person: str
    frame_index: int
    image: np.ndarray  # 160 x 160 x 3 uint8 RGB


def talking_head_clips(root: Path) -> list[tuple[str, str]]:
    """(relative path, person) of every talking-head clip; the person is the manifest's group, because
    two clips can show the same person (retalking_face3 and the SadTalker AOC clip)."""
    with (root / "manifest.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [
        (row["path"], row["group"])
        for row in rows
        if row["set"] == "real" and row["kind"] == "video" and "crowd" not in row["path"]
    ]


def _frames(path: Path, frames_per_clip: int, max_frames: int) -> list[tuple[int, np.ndarray]]:
    capture = cv2.VideoCapture(str(path))
    try:
        total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or max_frames
        last = min(total, max_frames)
        wanted = set(np.linspace(0, last - 1, frames_per_clip).round().astype(int).tolist())
        frames = []
        for index in range(last):
            if not capture.grab():
                break
            if index in wanted:
                ok, bgr = capture.retrieve()
                if ok:
                    frames.append((index, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
        return frames
    finally:
        capture.release()


def crop_face(frame: np.ndarray, box_xyxy: np.ndarray) -> np.ndarray:
    """facenet-pytorch's extract_face: widen the box by MARGIN_PX (in output pixels), resize to 160."""
    height, width = frame.shape[:2]
    box_w, box_h = box_xyxy[2] - box_xyxy[0], box_xyxy[3] - box_xyxy[1]
    margin_x = MARGIN_PX * box_w / (CROP_SIZE_PX - MARGIN_PX)
    margin_y = MARGIN_PX * box_h / (CROP_SIZE_PX - MARGIN_PX)
    x0 = int(max(box_xyxy[0] - margin_x / 2, 0))
    y0 = int(max(box_xyxy[1] - margin_y / 2, 0))
    x1 = int(min(box_xyxy[2] + margin_x / 2, width))
    y1 = int(min(box_xyxy[3] + margin_y / 2, height))
    return cv2.resize(frame[y0:y1, x0:x1], (CROP_SIZE_PX, CROP_SIZE_PX), interpolation=cv2.INTER_AREA)


def sample_face_crops(root: Path, frames_per_clip: int = 5, max_frames: int = 200) -> list[FaceCrop]:
    """Up to ``frames_per_clip`` face crops per talking-head clip, spread over its first
    ``max_frames`` frames (decoding whole long clips would dominate the test time)."""
    from facenet_pytorch import MTCNN

    previous_threads = torch.get_num_threads()
    # One thread: on a shared 2-core machine MTCNN's many small convolutions run ~7x faster so.
    torch.set_num_threads(1)
    try:
        detector = MTCNN(select_largest=True, min_face_size=40, device="cpu")
        crops = []
        for relative, person in talking_head_clips(root):
            frames = _frames(root / relative, frames_per_clip, max_frames)
            if not frames:
                continue
            scale = DETECT_SIZE_PX / max(frames[0][1].shape[:2])
            small = [cv2.resize(f, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) for _, f in frames]
            boxes, probabilities = detector.detect(small)
            for (index, frame), frame_boxes, frame_probs in zip(frames, boxes, probabilities, strict=True):
                if frame_boxes is None or frame_probs[0] < MIN_DETECTION_PROBABILITY:
                    continue
                image = crop_face(frame, np.asarray(frame_boxes[0]) / scale)
                crops.append(FaceCrop(Path(relative).stem, person, index, image))
        return crops
    finally:
        torch.set_num_threads(previous_threads)
