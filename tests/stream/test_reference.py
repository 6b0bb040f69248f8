"""Enrolment end to end: ``deepwatch run --reference PHOTO`` on faces made from scikit-image's
packaged photos (the astronaut and LFW faces), real detector, encoder and shipped thresholds."""

from __future__ import annotations

import json
import math
import struct

import cv2
import numpy as np
import pytest

from engine.reference import ReferenceError
from engine.score import ReferenceMatch
from stream.contracts import FaceResult
from stream.live.overlay import label_text
from stream.live.reference import check_png_chunks, decode_reference_photo, enrol, read_reference_photos
from stream.server.messages import face_to_json
from tests.stream.conftest import assert_clean_failure, run_cli, small_config
from tests.stream.fakes import ScriptedDetector
from tracking.config import CropConfig


def write_rgb(path, image):
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return path


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    """The astronaut, an LFW face, and the two swaps between them, as image folders."""
    from stream.training import blends
    from stream.training.evidence_data import default_detector, largest_face
    from stream.training.examples import packaged_faces

    root = tmp_path_factory.mktemp("reference")
    astronaut, others = packaged_faces(1)
    stranger = others[0]
    detector = default_detector()
    astronaut_marks, stranger_marks = largest_face(detector, astronaut), largest_face(detector, stranger)
    parameters = blends.VISIBLE_SWAP
    images = {
        "astronaut": astronaut,
        # The stranger's face on the astronaut's head, and the astronaut's face on the stranger's.
        "stranger_face_on_astronaut": blends.cross_person_blend(
            astronaut, astronaut_marks, stranger, stranger_marks, parameters
        )[0],
        "astronaut_face_on_stranger": blends.cross_person_blend(
            stranger, stranger_marks, astronaut, astronaut_marks, parameters
        )[0],
        "stranger": stranger,
    }
    paths = {"photo": write_rgb(root / "astronaut.png", astronaut)}
    for name, image in images.items():
        folder = root / name
        folder.mkdir()
        for index in range(14):  # an image folder plays at 1 fps: 14 s, more than the 8-sample window
            write_rgb(folder / f"{index:02d}.png", image)
        paths[name] = folder
    return paths


@pytest.mark.slow
@pytest.mark.parametrize(
    ("shown", "verdict", "words"),
    [
        ("astronaut", "match", "matches astronaut.png"),
        ("stranger_face_on_astronaut", "head_only", "head matches but face does not"),
        ("astronaut_face_on_stranger", "face_only", "face matches but head does not"),
        ("stranger", "other", "is not astronaut.png"),
    ],
)
def test_run_with_a_reference_tells_the_person_a_swap_and_a_stranger_apart(
    tmp_path, faces, checkpoint_args, shown, verdict, words
):
    summary, events = tmp_path / "summary.json", tmp_path / "events.jsonl"
    completed = run_cli(
        "run", str(faces[shown]), "--config", str(frames_config(tmp_path)), *checkpoint_args,
        "--reference", str(faces["photo"]), "--summary", str(summary), "--events", str(events),
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    report = json.loads(summary.read_text())
    enrolled = report["model"]["reference"]
    assert enrolled["name"] == "astronaut.png" and enrolled["photos"] == 1
    (track,) = report["tracks"]
    assert track["reference"]["verdict"] == verdict
    assert track["reference"]["samples"] == 8
    inner, outer = track["reference"]["inner_sim"], track["reference"]["outer_sim"]
    face_matches = inner >= enrolled["inner_at_least"]
    head_matches = outer >= enrolled["outer_at_least"]
    assert (face_matches, head_matches) == {
        "match": (True, True),
        "head_only": (False, True),
        "face_only": (True, False),
        "other": (False, False),
    }[verdict]
    assert words in completed.stdout
    updates = [json.loads(line) for line in events.read_text().splitlines() if '"track_update"' in line]
    assert updates and updates[-1]["data"]["reference"]["verdict"] == verdict


@pytest.mark.slow
def test_a_reference_clip_enrols_eight_of_its_frames_and_the_person_matches(tmp_path, faces, checkpoint_args):
    """The demo video (the astronaut photograph moving and zooming) as the reference clip."""
    from tests.stream.videos import write_demo_video

    clip = tmp_path / "call start.mp4"
    write_demo_video(clip, seconds=3.0, fps=15, width=320, height=240)
    summary = tmp_path / "summary.json"
    completed = run_cli(
        "run", str(faces["astronaut"]), "--config", str(frames_config(tmp_path)), *checkpoint_args,
        "--reference", str(clip), "--summary", str(summary),
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    report = json.loads(summary.read_text())
    assert report["model"]["reference"]["name"] == "call start.mp4 (8 frames)"
    assert report["model"]["reference"]["photos"] == 8
    (track,) = report["tracks"]
    assert track["reference"]["verdict"] == "match", track["reference"]
    assert "matches call start.mp4 (8 frames)" in completed.stdout


@pytest.mark.slow
def test_a_reference_photo_without_a_face_is_refused_by_name(tmp_path, faces, checkpoint_args):
    blank = write_rgb(tmp_path / "wall.png", np.full((240, 320, 3), 128, np.uint8))
    completed = run_cli(
        "run", str(faces["astronaut"]), "--config", str(frames_config(tmp_path)), *checkpoint_args,
        "--reference", str(blank),
    )  # fmt: skip
    assert_clean_failure(completed, r"no face found in reference photo wall\.png")


def test_with_ray_a_bad_reference_photo_fails_before_ray_starts(tmp_path, faces):
    missing = run_cli(
        "run", str(faces["astronaut"]), "--ray", "local", "--reference", str(tmp_path / "no.png"),
        "--config", str(frames_config(tmp_path)),
    )  # fmt: skip
    assert_clean_failure(missing, r"reference photo not found or unreadable: .*no\.png")
    (tmp_path / "garbled.png").write_bytes(b"\x89PNG not really")
    (tmp_path / "call.mp4").write_bytes(b"no video here" * 50)
    for name, message in (
        ("garbled.png", r"cannot read reference photo garbled\.png: expected a JPEG or PNG"),
        ("call.mp4", r"cannot read reference clip call\.mp4: expected a video"),
    ):
        completed = run_cli(
            "run", str(faces["astronaut"]), "--ray", "local", "--reference", str(tmp_path / name),
            "--config", str(frames_config(tmp_path)),
        )  # fmt: skip
        assert_clean_failure(completed, message)
        assert "Ray" not in completed.stderr.replace("--ray", "")


def frames_config(tmp_path):
    """A quick config that reads the image folders above as the frames of a video (one a second)."""
    return small_config(tmp_path, "source:\n  image_folders: frames\n")


def gradient_png() -> bytes:
    ramp = np.linspace(30, 220, 64).astype(np.uint8)
    image = np.stack(np.broadcast_arrays(ramp[None, :], ramp[:48, None], np.uint8(128)), axis=-1)
    ok, encoded = cv2.imencode(".png", image)
    assert ok
    return encoded.tobytes()


def test_a_png_chunk_declaring_more_than_the_file_holds_is_refused_before_decoding(monkeypatch):
    """The upload the fuzz suite found: one flipped byte makes the IDAT declare 2.75 GB, which
    OpenCV 5.0 allocates and fills before noticing the file is 1.7 KiB."""
    photo = gradient_png()
    idat = photo.index(b"IDAT") - 4
    damaged = bytearray(photo)
    damaged[idat] = 164
    declared = struct.unpack_from(">I", damaged, idat)[0]
    assert declared > 2_700_000_000

    def no_decoding(*args):
        raise AssertionError("cv2.imdecode was given a damaged PNG")

    monkeypatch.setattr(cv2, "imdecode", no_decoding)
    with pytest.raises(
        ReferenceError,
        match=rf"cannot read reference photo d\.png: a damaged PNG, its 'IDAT' chunk at byte {idat} "
        rf"declares {declared} bytes and {len(photo) - idat - 12} follow",
    ):
        decode_reference_photo(bytes(damaged), "d.png")
    # Cut inside a chunk: the last chunk declares more than is left.
    with pytest.raises(ReferenceError, match=r"a damaged PNG, its 'IDAT' chunk"):
        decode_reference_photo(photo[: idat + 100], "cut.png")
    monkeypatch.undo()
    assert decode_reference_photo(photo, "whole.png").shape == (48, 64, 3)
    # Cut at a chunk boundary (no IEND): the walk passes it and OpenCV says it cannot read it.
    check_png_chunks(photo[:-12], "no-end.png")
    with pytest.raises(ReferenceError, match=r"cannot read reference photo no-end\.png: expected a JPEG"):
        decode_reference_photo(photo[:-12], "no-end.png")


class FixedEncoder:
    output_dim = 1024

    def encode(self, crops: np.ndarray) -> np.ndarray:
        return np.ones((len(crops), 1024), np.float32)


def test_enrol_refuses_missing_unreadable_and_faceless_photos(tmp_path):
    some_face = ScriptedDetector(lambda call: [(40.0, 40.0, 120.0, 120.0)])
    no_face = ScriptedDetector(lambda call: [])
    with pytest.raises(ReferenceError, match=r"reference photo not found or unreadable: .*nowhere\.jpg"):
        read_reference_photos([tmp_path / "nowhere.jpg"])
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(ReferenceError, match=r"cannot read reference photo notes\.png: expected a JPEG"):
        read_reference_photos([text])
    photo = write_rgb(tmp_path / "face.png", np.full((160, 160, 3), 90, np.uint8))
    photos = read_reference_photos([photo, photo])
    assert [name for name, _ in photos] == ["face.png", "face.png"] and photos[0][1].shape == (160, 160, 3)
    with pytest.raises(ReferenceError, match=r"no face found in reference photo face\.png"):
        enrol(photos, no_face, FixedEncoder(), CropConfig())
    with pytest.raises(ReferenceError, match="at least one photo"):
        enrol([], some_face, FixedEncoder(), CropConfig())
    reference = enrol(photos, some_face, FixedEncoder(), CropConfig())
    assert reference.photos == 2 and reference.name == "face.png, face.png"


def face_result(reference: ReferenceMatch | None) -> FaceResult:
    return FaceResult(
        track_id=3,
        box_xyxy=np.array([1, 2, 3, 4], np.float32),
        confirmed=True,
        p_fake=0.12,
        ready=True,
        verdict="REAL",
        history=(0.12,),
        frames_scored=9,
        reference=reference,
    )


def test_overlay_and_page_messages_carry_the_comparison():
    match = ReferenceMatch(inner_sim=0.81234, outer_sim=0.3, verdict="face_only", samples=8)
    assert label_text(face_result(None)) == "#3 REAL 0.12"
    assert label_text(face_result(match)) == "#3 REAL 0.12 | ref face, other head"
    assert face_to_json(face_result(None))["reference"] is None
    sent = face_to_json(face_result(match))["reference"]
    assert sent == {"inner_sim": 0.8123, "outer_sim": 0.3, "verdict": "face_only", "samples": 8}
    assert math.isclose(sent["inner_sim"], 0.8123)


@pytest.mark.slow
def test_a_checkpoint_without_reference_thresholds_refuses_enrolment(tmp_path, faces):
    from dataclasses import replace

    from engine.checkpoint import load_checkpoint

    bare = replace(load_checkpoint(), reference=None).save(tmp_path / "bare.pt")
    completed = run_cli(
        "run", str(faces["astronaut"]), "--config", str(frames_config(tmp_path)), "--checkpoint", str(bare),
        "--reference", str(faces["photo"]),
    )  # fmt: skip
    assert_clean_failure(completed, r"bare\.pt has no reference thresholds: calibrate them with")
