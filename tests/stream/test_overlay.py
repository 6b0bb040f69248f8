"""The overlay draws exact palette colours where the faces are, labels, sparklines and the HUD."""

from __future__ import annotations

import math

import numpy as np
import pytest

from stream.contracts import FaceResult, Frame, FrameResult
from stream.live.overlay import (
    NOT_READY_RGB,
    PALETTE_RGB,
    OverlayStatus,
    draw_overlay,
    label_text,
    score_colour,
)


def face(track_id=1, box=(100, 100, 200, 220), p=0.9, ready=True, verdict="FAKE", history=(), confirmed=True):
    return FaceResult(
        track_id=track_id,
        box_xyxy=np.array(box, dtype=np.float32),
        confirmed=confirmed,
        p_fake=p,
        ready=ready,
        verdict=verdict,
        history=tuple(history),
        frames_scored=5,
    )


def result(*faces):
    image = np.full((480, 640, 3), 90, dtype=np.uint8)
    return FrameResult(frame=Frame(image, 0, 0.0, "cam"), faces=tuple(faces), events=(), timings_ms={})


def pixels_of(image, colour):
    return int(np.all(image == np.array(colour, dtype=np.uint8), axis=2).sum())


def test_palette_runs_from_green_to_red():
    assert score_colour(0.0, True) == (0, 255, 0)
    assert score_colour(0.5, True) == (255, 255, 0)
    assert score_colour(1.0, True) == (255, 0, 0)
    assert score_colour(0.93, True) == PALETTE_RGB[9]
    assert score_colour(0.9, False) == NOT_READY_RGB
    assert score_colour(math.nan, True) == NOT_READY_RGB


def test_box_drawn_in_score_colour_on_a_copy():
    frame_result = result(face(p=0.9), face(track_id=2, box=(400, 100, 500, 220), p=0.1, verdict="REAL"))
    image = draw_overlay(frame_result, OverlayStatus(fps=29.5, dropped_frames=4))
    assert np.all(frame_result.frame.image == 90)  # the input is untouched
    red_ish, green_ish = score_colour(0.9, True), score_colour(0.1, True)
    # The box edges: left edge of face 1 and right edge of face 2 at mid height.
    assert tuple(image[160, 100]) == red_ish
    assert tuple(image[160, 500]) == green_ish
    assert pixels_of(image, red_ish) > 400 and pixels_of(image, green_ish) > 400
    assert pixels_of(image[:, :320], green_ish) == 0


def test_not_ready_is_grey_and_tentative_is_thin():
    image = draw_overlay(result(face(p=math.nan, ready=False, verdict="UNSURE")))
    assert tuple(image[160, 100]) == NOT_READY_RGB
    tentative = draw_overlay(result(face(confirmed=False)))
    assert pixels_of(tentative, score_colour(0.9, True)) == 0


def test_label_text():
    assert label_text(face(track_id=3, p=0.871, verdict="FAKE")) == "#3 FAKE 0.87"
    assert label_text(face(track_id=1, p=math.nan, ready=False, verdict="UNSURE")) == "#1 UNSURE --"


def test_sparkline_and_hud_are_drawn():
    history = [0.1, 0.3, 0.5, 0.7, 0.9]
    with_line = draw_overlay(result(face(history=history)))
    without = draw_overlay(result(face(history=())))
    below = slice(224, 224 + 30)
    assert not np.array_equal(with_line[below, 100:200], without[below, 100:200])
    # HUD panel top-left: dark panel with white text.
    assert np.all(with_line[2, 2] == (20, 20, 20))
    assert pixels_of(with_line[:30, :300], (255, 255, 255)) > 20


@pytest.mark.parametrize("box", [(-50, -50, 30, 30), (600, 440, 900, 900), (10, 10, 10, 10)])
def test_boxes_at_or_past_the_edges_do_not_crash(box):
    image = draw_overlay(result(face(box=box, history=[0.2, 0.4])))
    assert image.shape == (480, 640, 3)
