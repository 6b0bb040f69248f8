"""Photo mode: ``deepwatch run PHOTO|FOLDER`` scores every face of every photo on its own."""

from __future__ import annotations

import json
import signal
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data

from engine.metrics import roc_auc
from stream.config import AppConfig
from stream.sources import SourceConfig, SourceError, photos_in, read_image
from tests.stream.conftest import assert_clean_failure, run_cli, run_cli_until, small_config
from tests.stream.server.test_enrolment import declared_png
from tests.stream.videos import write_demo_video


def write_rgb(path: Path, image: np.ndarray) -> Path:
    assert cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return path


def astronaut_pair() -> np.ndarray:
    """Two real faces side by side: the astronaut and her mirror image."""
    photo = skimage.data.astronaut()
    return np.ascontiguousarray(np.concatenate([photo, photo[:, ::-1]], axis=1))


def damaged_png() -> bytes:
    ok, encoded = cv2.imencode(".png", np.full((40, 60, 3), 80, dtype=np.uint8))
    assert ok
    damaged = bytearray(encoded.tobytes())
    damaged[damaged.index(b"IDAT") - 4] = 164  # the IDAT chunk now declares ~2.75 GB
    return bytes(damaged)


def test_which_specs_name_photos(tmp_path):
    folder = tmp_path / "album"
    folder.mkdir()
    for name in ("b.JPG", "a.png"):
        write_rgb(folder / name, np.zeros((8, 8, 3), np.uint8))
    (folder / "notes.txt").write_text("not a photo")
    (folder / "sub.png").mkdir()  # a folder named like an image is not one
    clip = write_demo_video(tmp_path / "clip.mp4", seconds=0.2, fps=10, width=64, height=64)
    assert photos_in(str(folder)) == [folder / "a.png", folder / "b.JPG"]
    assert photos_in(str(folder), SourceConfig(image_folders="frames")) == []
    assert photos_in(str(folder / "a.png")) == [folder / "a.png"]
    assert photos_in(f"file://{folder / 'b.JPG'}") == [folder / "b.JPG"]
    # A missing image is still a photo: reading it says why it cannot be read.
    assert photos_in(str(tmp_path / "missing.jpg")) == [tmp_path / "missing.jpg"]
    for spec in (str(clip), "demo", "demo:3", "0", "webcam:1", "screen:0,0,10,10", "rtsp://cam/x", ""):
        assert photos_in(spec) == [], spec
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="no images"):
        photos_in(str(tmp_path / "empty"))
    with pytest.raises(SourceError, match=r"cannot read image .*missing\.jpg \(No such file"):
        read_image(tmp_path / "missing.jpg")


def test_photos_get_names_that_stay_apart_and_outputs_that_fit(tmp_path, monkeypatch):
    from stream.commands.photos import photo_inputs
    from stream.contracts import Frame, FrameResult
    from stream.sinks import PhotoSink

    for folder in ("a/album", "b/album", "c"):
        (tmp_path / folder).mkdir(parents=True)
    for path in ("a/album/x.jpg", "b/album/x.jpg", "c/x.jpg"):
        write_rgb(tmp_path / path, np.zeros((8, 8, 3), np.uint8))
    monkeypatch.chdir(tmp_path / "c")
    album_a, album_b = str(tmp_path / "a/album"), str(tmp_path / "b/album")
    specs = [album_a, album_b, ".", "x.jpg", str(tmp_path / "a/album/x.jpg")]
    photos, others = photo_inputs([*specs, "demo"], AppConfig())
    assert others == ["demo"]
    assert [(photo.source_id, photo.named) for photo in photos] == [
        ("album/x.jpg", False),
        ("album#1/x.jpg", False),
        ("c/x.jpg", False),
        ("x.jpg", True),
        ("x#1.jpg", True),
    ]

    with pytest.raises(ValueError, match=r"for one photo must end in one of \.jpg.*got 'marked\.mp4'"):
        PhotoSink(tmp_path / "marked.mp4", single=True)
    with pytest.raises(ValueError, match=r"must be a folder, got the image name 'marked\.jpg'"):
        PhotoSink(tmp_path / "marked.jpg", single=False)
    with pytest.raises(ValueError, match=r"for several photos must be a folder, .* is a file"):
        PhotoSink(tmp_path / "c" / "x.jpg", single=False)
    sink = PhotoSink(tmp_path / "out", single=False)
    image = np.full((6, 4, 3), 200, np.uint8)
    for source_id in ("album#1/x.jpg", "scan.tif"):
        sink.write(FrameResult(Frame(image, 0, 0.0, source_id), (), (), {}), image)
    sink.write(FrameResult(Frame(image, 0, 0.0, "skipped.jpg"), (), (), {}), None)
    assert [path.name for path in sink.written] == ["album#1__x.jpg", "scan.tif.png"]
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["album#1__x.jpg", "scan.tif.png"]
    assert cv2.imread(str(sink.written[1])).shape == (6, 4, 3)


def test_a_photo_declaring_gigapixels_is_refused_before_opencv_reads_it(tmp_path, monkeypatch):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(declared_png(30000, 30000))  # 57 bytes declaring 900 million pixels
    fine = write_rgb(tmp_path / "fine.png", np.full((300, 200, 3), 7, np.uint8))

    def imdecode_refusing_the_bomb(buffer, flags):
        assert buffer.tobytes() != bomb.read_bytes(), "OpenCV was given the 900-megapixel PNG"
        return decode(buffer, flags)

    decode = cv2.imdecode
    monkeypatch.setattr(cv2, "imdecode", imdecode_refusing_the_bomb)
    with pytest.raises(SourceError, match=r"bomb\.png: it declares too many pixels for a photo"):
        read_image(bomb)
    assert read_image(fine).shape == (300, 200, 3)


@pytest.fixture(scope="module")
def components():
    from stream.live.app import load_components

    loaded = load_components(AppConfig())
    yield loaded
    loaded.close()


def test_each_face_of_a_photo_is_scored_as_calibration_scores_a_still(components):
    from stream.live.stills import PHOTO_FACE_EVENT, PhotoScorer
    from tracking import FaceDetector, crop_faces

    image = astronaut_pair()
    result = PhotoScorer(components).score(image, "pair.jpg", index=4)
    assert result.frame.source_id == "pair.jpg" and result.frame.index == 4
    assert [face.track_id for face in result.faces] == [1, 2]
    assert set(result.timings_ms) >= {"detect", "track", "crop", "encode", "score", "total"}

    # The same faces cut by the detector alone, encoded, and scored as one window of W copies
    # with a scorer of its own: the numbers calibration set the thresholds on.
    detector = AppConfig().detector
    photo_detector = FaceDetector(replace(detector, max_side_px=detector.photo_max_side_px))
    detections = sorted(photo_detector.detect(image), key=lambda d: d.box_xyxy[0])
    assert len(detections) == 2
    features = components.encoder.encode(crop_faces(image, detections, AppConfig().crop))  # type: ignore[arg-type]
    reference_scorer = components.checkpoint.build_scorer()
    window = components.checkpoint.window_size
    expected = [reference_scorer.score_window(np.repeat(row[None], window, axis=0)) for row in features]
    faces = sorted(result.faces, key=lambda face: float(face.box_xyxy[0]))
    for face, detection, p_fake in zip(faces, detections, expected, strict=True):
        np.testing.assert_allclose(face.box_xyxy, detection.box_xyxy, atol=1.0)
        assert face.p_fake == pytest.approx(p_fake, abs=1e-5)
        assert face.ready and face.confirmed and face.frames_scored == 1
        # A real face reads REAL at the calibrated thresholds.
        assert face.p_fake <= components.real_threshold and face.verdict == "REAL"
    assert [event.kind for event in result.events] == [PHOTO_FACE_EVENT] * 2
    assert [event.data["p_fake"] for event in result.events] == [round(f.p_fake, 4) for f in result.faces]

    # Nothing carries over: the same photo scores the same again, a face-less one has no faces.
    scorer = PhotoScorer(components)
    empty = scorer.score(np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8), "noise")
    assert empty.faces == () and empty.events == ()
    again = scorer.score(image, "pair.jpg")
    assert [f.p_fake for f in again.faces] == [f.p_fake for f in result.faces]


def test_a_small_face_in_a_large_photo_is_found(components):
    """A 130 px face in a 2400 x 1600 photo: under the 40 px MTCNN minimum at the live detection
    scale (320 px: 17 px), found at the photo scale (2048 px: 111 px)."""
    from stream.live.stills import PhotoScorer
    from tracking import FaceDetector

    photo = np.full((1600, 2400, 3), 120, np.uint8)
    head = cv2.resize(skimage.data.astronaut()[0:260, 120:380], (130, 130), interpolation=cv2.INTER_AREA)
    photo[900:1030, 1700:1830] = head
    assert FaceDetector(AppConfig().detector).detect(photo) == []
    (face,) = PhotoScorer(components).score(photo, "group.jpg").faces
    x1, y1, x2, y2 = face.box_xyxy
    assert 1680 < x1 < x2 < 1850 and 880 < y1 < y2 < 1050


def test_a_photo_is_compared_with_the_enrolled_person(components):
    from stream.live.stills import PhotoScorer

    photo = skimage.data.astronaut()
    mirrored = np.ascontiguousarray(photo[:, ::-1])  # her mirror image: the same person
    components.enrol([("astronaut.png", photo)])
    try:
        scored = PhotoScorer(components).score(np.concatenate([photo, mirrored], axis=1), "pair.jpg")
    finally:
        components.set_reference(None)
    matches = [face.reference for face in scored.faces]
    assert len(matches) == 2 and all(match is not None for match in matches)
    assert [match.verdict for match in matches if match] == ["match", "match"]
    assert [match.samples for match in matches if match] == [components.checkpoint.window_size] * 2
    assert [event.data["reference"]["verdict"] for event in scored.events] == ["match", "match"]
    assert PhotoScorer(components).score(photo, "after.jpg").faces[0].reference is None


def test_an_output_that_fails_stops_the_run_and_keeps_what_was_scored(tmp_path, components):
    import threading

    from stream.commands.photos import Photo, _counts, _score_photos
    from stream.live.stills import PhotoScorer

    class FullDisk:
        needs_annotated = True

        def __init__(self) -> None:
            self.written = 0

        def write(self, result, annotated):
            if self.written == 1:
                raise OSError(28, "No space left on device")
            self.written += 1

        def write_events(self, events):
            pass

        def close(self):
            pass

    paths = [write_rgb(tmp_path / f"{i}.jpg", skimage.data.astronaut()[::2, ::2]) for i in range(3)]
    photos = [Photo(path=path, source_id=path.name, named=True) for path in paths]
    run = _score_photos(photos, PhotoScorer(components), [FullDisk()], threading.Event(), components)
    assert run.stopped_by == "error"
    assert run.errors == ["cannot write an output: [Errno 28] No space left on device"]
    assert [record["source_id"] for record in run.records] == ["0.jpg", "1.jpg"]
    assert "output_error" not in run.records[0] and run.records[1]["output_error"] == str(
        OSError(28, "No space left on device")
    )
    assert _counts(run.records)["read"] == 2 and _counts(run.records)["faces"] == 2
    stopped = threading.Event()
    stopped.set()
    assert _score_photos(photos, PhotoScorer(components), [], stopped, components).records == []


@pytest.mark.slow
def test_run_on_photos_writes_a_verdict_per_face_and_skips_what_it_cannot_read(tmp_path, checkpoint_args):
    album = tmp_path / "album"
    album.mkdir()
    write_rgb(album / "1_astronaut.jpg", skimage.data.astronaut())
    write_rgb(album / "2_pair.png", astronaut_pair())
    write_rgb(album / "3_noise.png", np.random.default_rng(1).integers(0, 255, (200, 300, 3), dtype=np.uint8))
    (album / "4_broken.jpg").write_bytes(b"not a jpeg")
    (album / "5_damaged.png").write_bytes(damaged_png())
    out, events, summary = tmp_path / "annotated", tmp_path / "events.jsonl", tmp_path / "summary.json"
    completed = run_cli(
        "run", str(album), "--config", str(small_config(tmp_path)), *checkpoint_args,
        "--out", str(out), "--events", str(events), "--summary", str(summary),
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    report = json.loads(summary.read_text())
    assert report["mode"] == "photos"
    counts = {"photos": 5, "read": 3, "unreadable": 2, "without_face": 1, "faces": 3}
    assert {key: report["counts"][key] for key in counts} == counts
    photos = {photo["source_id"]: photo for photo in report["photos"]}
    assert list(photos) == [f"album/{name}" for name in sorted(p.name for p in album.iterdir())]
    assert [len(photos[f"album/{name}"]["faces"]) for name in ("1_astronaut.jpg", "2_pair.png")] == [1, 2]
    assert photos["album/2_pair.png"]["width"] == 1024 and photos["album/3_noise.png"]["faces"] == []
    assert "not an image OpenCV can decode" in photos["album/4_broken.jpg"]["error"]
    assert "'IDAT' chunk at byte 33 declares" in photos["album/5_damaged.png"]["error"]
    verdicts = [face["verdict"] for photo in report["photos"] for face in photo["faces"]]
    assert sum(report["counts"][verdict] for verdict in ("REAL", "FAKE", "UNSURE")) == len(verdicts) == 3
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    assert [(line["kind"], line["source_id"], line["track_id"]) for line in lines] == [
        ("photo_face", "album/1_astronaut.jpg", 1),
        ("photo_face", "album/2_pair.png", 1),
        ("photo_face", "album/2_pair.png", 2),
    ]
    assert [line["data"]["verdict"] for line in lines] == verdicts
    # An annotated copy of every photo read, the size of the photo, with its face boxes drawn.
    written = sorted(path.name for path in out.iterdir())
    assert written == ["album__1_astronaut.jpg", "album__2_pair.png", "album__3_noise.png"]
    drawn = cv2.imread(str(out / "album__2_pair.png"))
    original = cv2.imread(str(album / "2_pair.png"))
    assert drawn.shape == original.shape
    changed = np.any(drawn != original, axis=2)
    x1, y1, _, y2 = (round(v) for v in lines[1]["data"]["box_xyxy"])
    assert changed[y1:y2, x1].mean() > 0.9  # the box's left edge
    assert not changed[400:, 900:].any()  # away from the faces and no corner panel
    assert np.array_equal(cv2.imread(str(out / "album__3_noise.png")), cv2.imread(str(album / "3_noise.png")))
    for verdict, photo in ((verdicts[0], "album/1_astronaut.jpg"), (verdicts[2], "album/2_pair.png")):
        assert f"photo {photo} face " in completed.stdout and f": {verdict} p_fake " in completed.stdout
    assert "photo album/3_noise.png: no face found" in completed.stdout
    assert "5 photos (2 unreadable, 1 without a face), 3 faces" in completed.stdout


@pytest.mark.slow
@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_stopping_a_photo_run_keeps_every_photo_scored_so_far(tmp_path, checkpoint_args, stop_signal):
    album = tmp_path / "album"
    album.mkdir()
    for index in range(80):
        write_rgb(album / f"{index:03d}.jpg", skimage.data.astronaut()[::2, ::2])
    events, summary = tmp_path / "events.jsonl", tmp_path / "summary.json"
    completed = run_cli_until(
        "run", str(album), "--config", str(small_config(tmp_path)), *checkpoint_args,
        "--events", str(events), "--summary", str(summary),
        ready=lambda: events.exists() and events.read_text().count("\n") >= 2, stop_signal=stop_signal,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    assert "Traceback" not in completed.stderr
    report = json.loads(summary.read_text())
    assert report["stopped_by"] == "interrupt"
    scored = report["counts"]["photos"]
    assert 2 <= scored < 80 and report["counts"]["faces"] == scored
    assert [photo["source_id"] for photo in report["photos"]] == [f"album/{i:03d}.jpg" for i in range(scored)]
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    assert [line["source_id"] for line in lines] == [f"album/{i:03d}.jpg" for i in range(scored)]
    assert f"{scored} photos of 80 (stopped early)" in completed.stdout


def test_photo_runs_refuse_what_only_video_has_and_fail_fast_on_a_bad_photo(tmp_path):
    photo = write_rgb(tmp_path / "face.jpg", np.zeros((32, 32, 3), np.uint8))
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 cut short")
    config = str(small_config(tmp_path))
    mixed = run_cli("run", str(photo), "demo", "--config", config)
    assert mixed.returncode == 2
    assert_clean_failure(mixed, r"face\.jpg is a photo and 'demo' is not: score photos and video in separate")
    for flag in ("--show", "--realtime", "--loop"):
        refused = run_cli("run", str(photo), flag, "--config", config)
        assert refused.returncode == 2
        assert_clean_failure(refused, f"{flag} is for video sources")
    broken = run_cli("run", str(tmp_path / "broken.jpg"), "--config", config)
    assert_clean_failure(broken, r"cannot read image .*broken\.jpg: not an image OpenCV can decode")
    assert "model:" not in broken.stderr  # reported before the models load
    itself = run_cli("run", str(photo), "--out", str(photo), "--config", config)
    assert itself.returncode == 2
    assert_clean_failure(itself, r"--out .*face\.jpg is one of the photos: it would be overwritten")
    assert cv2.imread(str(photo)).shape == (32, 32, 3)
    movie = run_cli("run", str(photo), "--out", str(tmp_path / "x.mp4"), "--config", config)
    assert_clean_failure(movie, r"--out for one photo must end in one of \.jpg")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_clean_failure(run_cli("run", str(empty), "--config", config), "no images")


@pytest.mark.slow
def test_a_folder_read_as_frames_is_one_tracked_video(tmp_path, checkpoint_args):
    frames = tmp_path / "frames"
    frames.mkdir()
    for index in range(12):
        write_rgb(frames / f"{index:03d}.png", skimage.data.astronaut()[::2, ::2])
    config = small_config(tmp_path, "source:\n  image_folders: frames\n  image_folder_fps: 8.0\n")
    summary = tmp_path / "summary.json"
    completed = run_cli(
        "run", str(frames), "--config", str(config), *checkpoint_args, "--summary", str(summary)
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    report = json.loads(summary.read_text())
    assert "mode" not in report and report["frames_processed"] == 12
    # One track, confirmed at its third detection (frames 0, 3, 6: tracker.min_hits 3, detection
    # every 3rd frame) and counted from there: frames 6 to 11.
    assert len(report["tracks"]) == 1 and report["tracks"][0]["frames"] == 6


def test_photo_mode_gives_the_scores_deepwatch_eval_gives(components, data_dir):
    """The 22 ``dev_images`` through photo mode: the per-image scores of the training lab's path
    (``FaceExtractor.extract_image``, a window of copies) and the AUC the model card states."""
    from stream.live.stills import PhotoScorer
    from stream.training.extract import FaceExtractor

    images = sorted((data_dir / "dev_images").glob("*/*.png"))
    if len(images) != 22:
        pytest.skip(f"expected the 22 dev_images of ../shared/data, found {len(images)}")
    scorer = PhotoScorer(components)
    extractor = FaceExtractor()
    window_scorer = components.checkpoint.build_scorer()
    window = components.checkpoint.window_size
    labels, scores = [], []
    for path in images:
        faces = scorer.score(read_image(path), path.name).faces
        cache = extractor.extract_image(path)
        features = components.encoder.encode(cache.crops)
        expected = [window_scorer.score_window(np.repeat(row[None], window, axis=0)) for row in features]
        assert [face.p_fake for face in faces] == pytest.approx(expected, abs=1e-5), path.name
        labels.append(int(path.parent.name == "fake"))
        scores.append(max(face.p_fake for face in faces))
    assert roc_auc(np.asarray(labels), np.asarray(scores)) == pytest.approx(0.744, abs=0.001)
