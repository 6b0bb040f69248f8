"""Drawing a ``FrameResult`` on its frame: boxes coloured by score, labels, sparklines, a HUD.

Colours come from a fixed palette (``score_colour``) of 11 steps from green (p_fake 0) through
yellow to red (p_fake 1), grey while a track has no score yet, so a reader of the annotated video
(or a test of a screenshot) can tell exactly which pixels the overlay drew.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from stream.contracts import FaceResult, FrameResult

# RGB colours. Steps of 0.1 keep the palette small and exact (see the module docstring).
_PALETTE_STEPS = 10
PALETTE_RGB: tuple[tuple[int, int, int], ...] = tuple(
    (
        round(255 * min(1.0, 2 * i / _PALETTE_STEPS)),
        round(255 * min(1.0, 2 - 2 * i / _PALETTE_STEPS)),
        0,
    )
    for i in range(_PALETTE_STEPS + 1)
)
NOT_READY_RGB = (160, 160, 160)
TENTATIVE_RGB = (110, 110, 110)
_TEXT_RGB = (255, 255, 255)
_PANEL_RGB = (20, 20, 20)
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_SPARKLINE_HEIGHT_PX = 28


@dataclass(frozen=True)
class OverlayStatus:
    """Run figures shown in the corner: processing fps and frames the source dropped."""

    fps: float = math.nan
    dropped_frames: int = 0


def score_colour(p_fake: float, ready: bool) -> tuple[int, int, int]:
    """RGB palette colour for a score: green (real) -> yellow -> red (fake); grey if not ready."""
    if not ready or math.isnan(p_fake):
        return NOT_READY_RGB
    step = round(min(max(p_fake, 0.0), 1.0) * _PALETTE_STEPS)
    return PALETTE_RGB[step]


# What the overlay says about the enrolled person, per reference verdict (``engine.reference``).
REFERENCE_LABELS = {
    "match": "is ref",
    "face_only": "ref face, other head",
    "head_only": "ref head, other face",
    "other": "not ref",
    "unsure": "ref ?",
}


def label_text(face: FaceResult) -> str:
    """``"#3 FAKE 0.87"``; the probability is ``--`` until the score is ready. With an enrolled
    person the comparison follows: ``"#3 REAL 0.10 | is ref"``."""
    probability = f"{face.p_fake:.2f}" if face.ready and not math.isnan(face.p_fake) else "--"
    text = f"#{face.track_id} {face.verdict} {probability}"
    if face.reference is not None:
        text += f" | {REFERENCE_LABELS.get(face.reference.verdict, face.reference.verdict)}"
    return text


def draw_overlay(
    result: FrameResult,
    status: OverlayStatus | None = None,
    threshold: float = 0.5,
    box_colour: Callable[[FaceResult], tuple[int, int, int]] | None = None,
    hud: bool = True,
) -> np.ndarray:
    """A copy of ``result.frame.image`` (H x W x 3 uint8 RGB) with the overlay drawn on it.

    ``threshold`` is drawn as a dashed level in each sparkline. ``box_colour`` picks a confirmed
    face's colour (default: ``score_colour`` of its score). ``hud=False`` leaves out the corner
    panel of run figures (a photo has no fps or dropped frames).
    """
    image = result.frame.image.copy()
    for face in result.faces:
        _draw_face(image, face, threshold, box_colour)
    if hud:
        _draw_status(image, status or OverlayStatus(), len([f for f in result.faces if f.confirmed]))
    return image


def _draw_face(
    image: np.ndarray,
    face: FaceResult,
    threshold: float,
    box_colour: Callable[[FaceResult], tuple[int, int, int]] | None,
) -> None:
    height, width = image.shape[:2]
    x1, y1, x2, y2 = (round(float(v)) for v in face.box_xyxy)
    x1, x2 = max(0, min(x1, width - 1)), max(0, min(x2, width - 1))
    y1, y2 = max(0, min(y1, height - 1)), max(0, min(y2, height - 1))
    if x2 <= x1 or y2 <= y1:
        return
    if not face.confirmed:
        cv2.rectangle(image, (x1, y1), (x2, y2), TENTATIVE_RGB, 1, cv2.LINE_4)
        return
    colour = box_colour(face) if box_colour is not None else score_colour(face.p_fake, face.ready)
    thickness = max(2, round(min(width, height) / 240))
    cv2.rectangle(image, (x1, y1), (x2, y2), colour, thickness, cv2.LINE_4)
    _draw_label(image, label_text(face), x1, y1, colour)
    if len(face.history) >= 2:
        _draw_sparkline(image, face.history, x1, y2 + thickness + 2, max(40, x2 - x1), threshold, colour)


def _draw_label(image: np.ndarray, text: str, x: int, y: int, colour: tuple[int, int, int]) -> None:
    scale = max(0.45, image.shape[0] / 900)
    (text_width, text_height), baseline = cv2.getTextSize(text, _FONT, scale, 1)
    top = y - text_height - baseline - 4
    if top < 0:
        top = y + 2
    cv2.rectangle(image, (x, top), (x + text_width + 6, top + text_height + baseline + 4), colour, cv2.FILLED)
    cv2.putText(image, text, (x + 3, top + text_height + 2), _FONT, scale, (0, 0, 0), 1, cv2.LINE_AA)


def _draw_sparkline(
    image: np.ndarray,
    history: tuple[float, ...],
    x: int,
    y: int,
    width: int,
    threshold: float,
    colour: tuple[int, int, int],
) -> None:
    height = _SPARKLINE_HEIGHT_PX
    if y + height >= image.shape[0]:
        return
    width = min(width, image.shape[1] - x - 1)
    if width < 10:
        return
    panel = image[y : y + height, x : x + width]
    panel[:] = (panel.astype(np.uint16) * 2 // 5).astype(np.uint8)
    level = y + round((1 - threshold) * (height - 1))
    for dash in range(x, x + width, 6):
        cv2.line(image, (dash, level), (min(dash + 2, x + width - 1), level), _TEXT_RGB, 1)
    values = np.clip(np.asarray(history, dtype=np.float64), 0.0, 1.0)
    xs = x + np.linspace(0, width - 1, len(values))
    ys = y + (1 - values) * (height - 1)
    points = np.stack([xs, ys], axis=1).round().astype(np.int32).reshape(-1, 1, 2)
    cv2.polylines(image, [points], isClosed=False, color=colour, thickness=1, lineType=cv2.LINE_AA)


def _draw_status(image: np.ndarray, status: OverlayStatus, faces: int) -> None:
    fps = "--" if math.isnan(status.fps) else f"{status.fps:.1f}"
    text = f"fps {fps}  dropped {status.dropped_frames}  faces {faces}"
    scale = max(0.45, image.shape[0] / 1000)
    (text_width, text_height), baseline = cv2.getTextSize(text, _FONT, scale, 1)
    cv2.rectangle(image, (0, 0), (text_width + 10, text_height + baseline + 8), _PANEL_RGB, cv2.FILLED)
    cv2.putText(image, text, (5, text_height + 4), _FONT, scale, _TEXT_RGB, 1, cv2.LINE_AA)
