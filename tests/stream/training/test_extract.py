"""Extraction: faces sampled at the scorer's rate, empty caches with reasons, resumability, bad rows."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from stream.cli import main
from stream.training.datasets import (
    MediaItem,
    load_celeb_df,
    load_manifest,
    load_media_set,
    load_real_fake_folders,
)
from stream.training.extract import ExtractConfig, FaceCache, FaceExtractor, describe, extract_media
from tests.stream.face_videos import write_face_video
from tracking.crops import landmark_template


class CountingEncoder:
    weights_id = "casia-webface@000000000000"

    def __init__(self) -> None:
        self.crops_seen = 0

    def encode(self, crops: np.ndarray) -> np.ndarray:
        self.crops_seen += len(crops)
        embeddings = crops.reshape(len(crops), -1)[:, :512].astype(np.float32) + 1.0
        return embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)


def item(path: Path, label: int = 0, kind: str = "video") -> MediaItem:
    return MediaItem(path=path, name=path.name, label=label, group=path.stem, kind=kind)


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("videos")
    broken = folder / "broken.mp4"
    broken.write_bytes(b"\x00not a video" * 100)
    return {
        "face": write_face_video(folder / "face.mp4", frames=24, fps=24.0),
        "noise": write_face_video(folder / "noise.mp4", frames=8, fps=8.0, face=False),
        "broken": broken,
    }


def test_face_video_gives_crops_sampled_at_the_rate(videos: dict[str, Path], tmp_path: Path) -> None:
    config = ExtractConfig(sample_rate_hz=8.0, max_samples=32)
    encoder = CountingEncoder()
    (result,) = extract_media(
        [item(videos["face"])], config, encoder=encoder, cache_dir=tmp_path, progress=False
    )
    faces = result.faces
    # 24 frames at 24 fps = 1 s -> 8 samples; each holds the one face after the tracker picks it up.
    assert 6 <= len(faces.crops) <= 8
    assert faces.crops.shape[1:] == (160, 160, 3) and faces.crops.dtype == np.uint8
    assert len(set(faces.track_ids.tolist())) == 1
    gaps = np.diff(faces.timestamps_s)
    assert gaps.min() > 0.09 and gaps.max() < 0.2
    # Aligned crops put the landmarks near the template (that is what pseudo-fake masks rely on).
    detected = np.isfinite(faces.crop_landmarks_5x2).all(axis=(1, 2))
    assert detected.any()
    error = np.abs(faces.crop_landmarks_5x2[detected] - landmark_template(160, 0.25)).max()
    assert error < 12.0
    assert result.embeddings is not None and result.embeddings.shape == (len(faces.crops), 512)
    assert encoder.crops_seen == len(faces.crops)

    # A second run reads everything from the cache: no extractor, no encoding.
    def no_extractor(config: ExtractConfig) -> FaceExtractor:
        raise AssertionError("the cache should have been used")

    again = extract_media(
        [item(videos["face"])],
        config,
        encoder=encoder,
        cache_dir=tmp_path,
        progress=False,
        extractor_factory=no_extractor,
    )
    assert encoder.crops_seen == len(faces.crops)
    np.testing.assert_array_equal(again[0].faces.crops, faces.crops)
    np.testing.assert_array_equal(again[0].embeddings, result.embeddings)


def test_no_face_gives_an_empty_cache_and_a_broken_file_is_skipped(
    videos: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    items = [item(videos["noise"]), item(videos["broken"]), item(videos["face"], kind="image")]
    results = extract_media(
        items, ExtractConfig(), encoder=CountingEncoder(), cache_dir=tmp_path, progress=False
    )
    # The image row is skipped (videos only by default); the broken video is kept, marked unreadable.
    assert [result.item.name for result in results] == ["noise.mp4", "broken.mp4"]
    empty, broken = results
    assert empty.faces.empty and "no face found" in empty.faces.reason and not empty.unreadable
    assert empty.embeddings is not None and empty.embeddings.shape == (0, 512)
    assert broken.unreadable and broken.faces.empty and broken.embeddings is None
    assert broken.faces.reason.startswith("unreadable: ")
    assert "skipping broken.mp4" in caplog.text
    assert {key: describe(results)[key] for key in ("videos", "images", "unreadable", "empty", "crops")} == {
        "videos": 2,
        "images": 0,
        "unreadable": 1,
        "empty": 1,
        "crops": 0,
    }
    # Unreadable files are never cached: a repaired file is read next time.
    assert len(list(tmp_path.glob("broken-*"))) == 0


def test_images_give_one_sample_per_face_and_unreadable_ones_are_counted(tmp_path: Path) -> None:
    import cv2
    import skimage

    folder = tmp_path / "set"
    (folder / "real").mkdir(parents=True)
    photo = np.full((260, 300, 3), 128, np.uint8)
    photo[40:240, 60:260] = cv2.resize(skimage.data.astronaut()[0:260, 120:380], (200, 200))
    cv2.imwrite(str(folder / "real" / "face.png"), cv2.cvtColor(photo, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(folder / "real" / "blank.png"), np.full((120, 120, 3), 128, np.uint8))
    (folder / "real" / "corrupt.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    (folder / "real" / "empty.png").write_bytes(b"")
    summary_path = tmp_path / "summary.json"
    argv = ["extract", str(folder), "--no-encode", "--images", "--no-progress", "--cache-dir", str(tmp_path)]
    assert main([*argv, "--summary", str(summary_path)]) == 0
    summary = json.loads(summary_path.read_text())
    assert (summary["images"], summary["unreadable"], summary["empty"], summary["crops"]) == (4, 2, 1, 1)
    assert sorted(summary["unreadable_files"]) == ["real/corrupt.jpg", "real/empty.png"]
    (face,) = [
        result
        for result in extract_media(
            load_media_set(folder), cache_dir=tmp_path, progress=False, include_images=True
        )
        if not result.faces.empty
    ]
    assert face.item.name == "real/face.png" and face.faces.crops.shape == (1, 160, 160, 3)
    assert face.faces.timestamps_s.tolist() == [0.0]
    error = np.abs(face.faces.crop_landmarks_5x2[0] - landmark_template(160, 0.25)).max()
    assert error < 12.0


def test_an_empty_set_or_a_manifest_without_group_stops_with_the_reason(tmp_path: Path) -> None:
    (tmp_path / "empty" / "real").mkdir(parents=True)
    (tmp_path / "empty" / "fake").mkdir()
    (tmp_path / "empty" / "real" / "notes.txt").write_text("not media")
    for command in (["extract"], ["train", "--out", str(tmp_path / "m.pt")]):
        with pytest.raises(SystemExit) as exit_info:
            main([command[0], str(tmp_path / "empty"), *command[1:]])
        assert str(exit_info.value.code).startswith(
            f"deepwatch {command[0]}: {tmp_path / 'empty'}: no video ("
        )
        assert "the set is empty" in str(exit_info.value.code)
    (tmp_path / "nogroup.csv").write_text("path,label\nempty/real/notes.txt,real\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "--manifest", str(tmp_path / "nogroup.csv"), "--report", str(tmp_path / "r.json")])
    assert "expected columns path,label,group, missing ['group']" in str(exit_info.value.code)
    (tmp_path / "header.csv").write_text("path,label,group\n")
    with pytest.raises(ValueError, match=r"header\.csv: no video .* the set is empty"):
        load_media_set(tmp_path / "header.csv")


def test_primary_track_prefers_the_longest_track() -> None:
    cache = FaceCache(
        crops=np.zeros((5, 160, 160, 3), np.uint8),
        timestamps_s=np.arange(5) / 8,
        track_ids=np.array([1, 2, 2, 1, 2]),
        boxes_xyxy=np.tile(np.array([0, 0, 50, 50], np.float32), (5, 1)),
        landmarks_5x2=np.zeros((5, 5, 2), np.float32),
        crop_landmarks_5x2=np.zeros((5, 5, 2), np.float32),
        frame_size_wh=(100, 100),
    )
    np.testing.assert_array_equal(cache.primary_track(), [1, 2, 4])


def write_manifest(folder: Path, rows: list[str]) -> Path:
    path = folder / "manifest.csv"
    path.write_text("path,label,group,kind,method\n" + "\n".join(rows) + "\n")
    return path


def test_manifest_rows_and_errors_name_the_row(tmp_path: Path) -> None:
    (tmp_path / "a.mp4").write_bytes(b"x")
    (tmp_path / "b.png").write_bytes(b"x")
    items = load_manifest(write_manifest(tmp_path, ["a.mp4,fake,g1,video,DFL", "b.png,real,g2,image,none"]))
    assert [(i.name, i.label, i.group, i.kind, i.method) for i in items] == [
        ("a.mp4", 1, "g1", "video", "DFL"),
        ("b.png", 0, "g2", "image", "none"),
    ]
    assert items[0].path == (tmp_path / "a.mp4").resolve()
    with pytest.raises(ValueError, match=r"line 3 \('missing.mp4'\): file not found"):
        load_manifest(write_manifest(tmp_path, ["a.mp4,fake,g1,video,DFL", "missing.mp4,real,g2,video,none"]))
    with pytest.raises(
        ValueError, match=r"line 2 \('a.mp4'\): label must be one of \['fake', 'real'\], got 'maybe'"
    ):
        load_manifest(write_manifest(tmp_path, ["a.mp4,maybe,g1,video,DFL"]))
    (tmp_path / "bad.csv").write_text("file,label\na.mp4,real\n")
    with pytest.raises(ValueError, match="missing \\['group', 'path'\\]"):
        load_manifest(tmp_path / "bad.csv")


def test_celeb_df_and_real_fake_layouts(tmp_path: Path) -> None:
    celeb = tmp_path / "celeb"
    for name in ("Celeb-real/id0_0000.mp4", "YouTube-real/00001.mp4", "Celeb-synthesis/id0_id1_0000.mp4"):
        (celeb / name).parent.mkdir(parents=True, exist_ok=True)
        (celeb / name).write_bytes(b"x")
    (celeb / "List_of_testing_videos.txt").write_text("0 Celeb-synthesis/id0_id1_0000.mp4\n")
    items = {i.name: i for i in load_media_set(celeb)}
    assert items["Celeb-synthesis/id0_id1_0000.mp4"].label == 1
    assert items["Celeb-synthesis/id0_id1_0000.mp4"].split == "test"
    assert (
        items["Celeb-real/id0_0000.mp4"].group
        == items["Celeb-synthesis/id0_id1_0000.mp4"].group
        == "celeb:id0"
    )
    assert items["YouTube-real/00001.mp4"].split == ""
    assert len(load_celeb_df(celeb)) == 3
    folders = tmp_path / "folders"
    (folders / "real").mkdir(parents=True)
    (folders / "fake").mkdir()
    (folders / "real" / "r.mp4").write_bytes(b"x")
    (folders / "fake" / "f.mp4").write_bytes(b"x")
    assert sorted((i.name, i.label) for i in load_real_fake_folders(folders)) == [
        ("fake/f.mp4", 1),
        ("real/r.mp4", 0),
    ]
    with pytest.raises(ValueError, match="expected a manifest"):
        load_media_set(tmp_path / "nothing")
