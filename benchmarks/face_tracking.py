"""Measure the tracking stage on the real clips: ids, id switches, box jitter, speed, crop stability.

    python benchmarks/face_tracking.py --json            # everything, JSON on stdout
    python benchmarks/face_tracking.py --max-frames 100  # quicker, human-readable

Data: the talking-head clips in ``$DEEPWATCH_DATA/real`` (default ``../shared/data/real``) and
the street scene ``real/crowd_street.mp4``. Progress goes to stderr.

What is measured, per talking-head clip (one person visible):
- ids: track ids created, and confirmed ids (goal: 1), with detection every N = 1, 3, 5 frames.
- id switches: frames where the id of the confirmed track on the face differs from the previous
  frame's (goal: 0).
- box jitter: mean |second difference of the box centre| / box size (sqrt(w * h)), for the raw
  per-frame MTCNN box and for the tracked box over the same frames (goal: raw / tracked >= 2).
  Smooth motion barely moves a second difference; detection noise does. ``lag`` is the
  distance between tracked and raw centre in box sizes (mean, and 95th percentile), so
  smoothing cannot hide a box that trails the face.
For the street scene: ids created and confirmed versus an estimate of the people visible (the
most faces MTCNN found in one frame at high confidence, and the most tracks confirmed at once).
Speed: detect + track frames per second at 640 x 480 with one face, detection every N = 1, 3, 5
frames, wall clock and per CPU second (the machine may be shared; CPU time is what the
detector itself costs).
Crop stability: same-person embedding stability of box versus aligned crops from the tracker,
through ``engine.load_encoder()``: mean cosine distance between consecutive frames' embeddings
and mean cosine distance to the clip's mean embedding (lower is steadier).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from tracking import (
    CropConfig,
    Detection,
    DetectorConfig,
    FaceDetector,
    FaceTracker,
    Track,
    TrackerConfig,
    TrackState,
    crop_faces,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("DEEPWATCH_DATA", REPO_ROOT.parent / "shared" / "data"))
CROWD_CLIP = "crowd_street.mp4"
EVERY_N = (1, 3, 5)
# Tracker passes per clip: (detect every N frames, blend_corrections). The unblended runs show
# what TrackerConfig.blend_corrections buys and costs.
TRACK_VARIANTS = ((1, True), (3, True), (5, True), (3, False), (5, False))
# The street scene's faces are 25-80 px in a 1920 x 1080 frame: detect at a higher resolution
# than the default and look for smaller faces.
CROWD_DETECTOR = DetectorConfig(max_side_px=1280, min_face_size_px=20)
# A face found at this confidence counts towards the people-visible estimate of the street scene.
PEOPLE_CONFIDENCE = 0.95
FPS_FRAME_SIZE = (640, 480)

log = logging.getLogger("benchmarks.tracking")


def read_frames(path: Path, max_frames: int | None) -> tuple[list[np.ndarray], float]:
    """Decode a clip from the start (seeking can return corrupt frames) into RGB frames."""
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise SystemExit(f"cannot open {path}")
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    frames: list[np.ndarray] = []
    while max_frames is None or len(frames) < max_frames:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    capture.release()
    return frames, float(fps)


def centres_and_sizes(boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    sizes = np.sqrt(
        np.clip(boxes[:, 2] - boxes[:, 0], 1e-6, None) * np.clip(boxes[:, 3] - boxes[:, 1], 1e-6, None)
    )
    return centres, sizes


def box_jitter(boxes: np.ndarray) -> float:
    """Mean |c[t+1] - 2 c[t] + c[t-1]| / size[t] over a run of consecutive frames' boxes."""
    if len(boxes) < 3:
        return float("nan")
    centres, sizes = centres_and_sizes(boxes)
    second = np.linalg.norm(centres[2:] - 2 * centres[1:-1] + centres[:-2], axis=1)
    return float((second / sizes[1:-1]).mean())


def largest(detections: list[Detection]) -> Detection | None:
    if not detections:
        return None
    return max(detections, key=lambda d: float(np.prod(d.box_xyxy[2:] - d.box_xyxy[:2])))


@dataclass
class ClipRun:
    """One clip's frames with the raw detections and the tracks of the default tracker config."""

    frames: list[np.ndarray]
    fps: float
    detections: list[list[Detection]]
    tracks: list[list[Track]]


@dataclass
class TrackRun:
    """What one tracker pass over a single-face clip produced."""

    every_n: int
    blend_corrections: bool
    ids_created: int
    confirmed_ids: int
    id_switches: int
    jitter_raw: float
    jitter_tracked: float
    jitter_ratio: float
    lag_sizes: float
    lag_sizes_p95: float
    frames_compared: int


def track_single_face(
    detections: list[list[Detection]], fps: float, config: TrackerConfig
) -> tuple[TrackRun, list[list[Track]]]:
    """Run the tracker over precomputed per-frame detections, detecting every N-th frame.

    The raw series for jitter is the largest per-frame MTCNN box; the tracked series is the
    largest confirmed track's box on the same frames. Only runs of consecutive frames where both
    exist are compared.
    """
    tracker = FaceTracker(config)
    every_n = config.detect_every_n_frames
    confirmed: set[int] = set()
    switches = 0
    previous_id: int | None = None
    raw_runs: list[list[np.ndarray]] = [[]]
    tracked_runs: list[list[np.ndarray]] = [[]]
    per_frame_tracks = []
    for index, frame_detections in enumerate(detections):
        tracks = tracker.update(frame_detections if index % every_n == 0 else None, index / fps)
        per_frame_tracks.append(tracks)
        live = [t for t in tracks if t.state is TrackState.CONFIRMED]
        confirmed.update(t.track_id for t in live)
        main = max(live, key=lambda t: float(np.prod(t.box_xyxy[2:] - t.box_xyxy[:2])), default=None)
        if main is not None:
            if previous_id is not None and main.track_id != previous_id:
                switches += 1
            previous_id = main.track_id
        raw = largest(frame_detections)
        if main is not None and raw is not None:
            raw_runs[-1].append(raw.box_xyxy)
            tracked_runs[-1].append(main.box_xyxy)
        elif raw_runs[-1]:
            raw_runs.append([])
            tracked_runs.append([])
    second_raw, second_tracked, lags, compared = [], [], [], 0
    for raw_run, tracked_run in zip(raw_runs, tracked_runs, strict=True):
        if len(raw_run) < 3:
            continue
        raw_boxes, tracked_boxes = np.array(raw_run, float), np.array(tracked_run, float)
        second_raw.append(box_jitter(raw_boxes) * (len(raw_run) - 2))
        second_tracked.append(box_jitter(tracked_boxes) * (len(raw_run) - 2))
        raw_centres, sizes = centres_and_sizes(raw_boxes)
        tracked_centres, _ = centres_and_sizes(tracked_boxes)
        lags.extend(np.linalg.norm(raw_centres - tracked_centres, axis=1) / sizes)
        compared += len(raw_run) - 2
    jitter_raw = sum(second_raw) / compared if compared else float("nan")
    jitter_tracked = sum(second_tracked) / compared if compared else float("nan")
    run = TrackRun(
        every_n=every_n,
        blend_corrections=config.blend_corrections,
        ids_created=tracker.ids_created,
        confirmed_ids=len(confirmed),
        id_switches=switches,
        jitter_raw=round(jitter_raw, 5),
        jitter_tracked=round(jitter_tracked, 5),
        jitter_ratio=round(jitter_raw / jitter_tracked, 2) if compared else float("nan"),
        lag_sizes=round(float(np.mean(lags)), 4) if lags else float("nan"),
        lag_sizes_p95=round(float(np.percentile(lags, 95)), 4) if lags else float("nan"),
        frames_compared=compared,
    )
    return run, per_frame_tracks


def detect_all(
    detector: FaceDetector, frames: list[np.ndarray]
) -> tuple[list[list[Detection]], float, float]:
    """Per-frame detections, with wall and CPU milliseconds per frame."""
    wall, cpu = time.perf_counter(), time.process_time()
    detections = [detector.detect(frame) for frame in frames]
    count = max(len(frames), 1)
    return (
        detections,
        (time.perf_counter() - wall) * 1000 / count,
        (time.process_time() - cpu) * 1000 / count,
    )


def measure_clips(
    clips: list[Path], detector: FaceDetector, tracker_config: TrackerConfig, max_frames: int | None
) -> tuple[list[dict[str, Any]], dict[str, ClipRun]]:
    results = []
    kept: dict[str, ClipRun] = {}
    for clip in clips:
        frames, fps = read_frames(clip, max_frames)
        detections, wall_ms, cpu_ms = detect_all(detector, frames)
        runs = []
        for every_n, blend in TRACK_VARIANTS:
            config = replace(
                tracker_config,
                detect_every_n_frames=every_n,
                max_age_frames=max(tracker_config.max_age_frames, every_n),
                blend_corrections=blend,
            )
            run, per_frame_tracks = track_single_face(detections, fps, config)
            runs.append(asdict(run))
            if every_n == tracker_config.detect_every_n_frames and blend == tracker_config.blend_corrections:
                kept[clip.name] = ClipRun(frames, fps, detections, per_frame_tracks)
        result = {
            "clip": clip.name,
            "frames": len(frames),
            "size": f"{frames[0].shape[1]}x{frames[0].shape[0]}" if frames else "",
            "people_visible": 1,
            "frames_with_face": sum(bool(d) for d in detections),
            "frames_with_several_faces": sum(len(d) > 1 for d in detections),
            "detect_ms_wall": round(wall_ms, 1),
            "detect_ms_cpu": round(cpu_ms, 1),
            "tracking": runs,
        }
        results.append(result)
        n1 = runs[0]
        log.info(
            "%s: %d frames, ids %d (confirmed %d), switches %d, jitter raw %.4f tracked %.4f (x%.2f)",
            clip.name,
            len(frames),
            n1["ids_created"],
            n1["confirmed_ids"],
            n1["id_switches"],
            n1["jitter_raw"],
            n1["jitter_tracked"],
            n1["jitter_ratio"],
        )
    return results, kept


def summarise_clips(results: list[dict[str, Any]]) -> dict[str, Any]:
    summary: dict[str, Any] = {"clips": len(results)}
    for position, (every_n, blend) in enumerate(TRACK_VARIANTS):
        runs = [r["tracking"][position] for r in results]
        ratios = [r["jitter_ratio"] for r in runs]
        summary[f"every_{every_n}" + ("" if blend else "_unblended")] = {
            "clips_with_one_confirmed_id": sum(r["confirmed_ids"] == 1 for r in runs),
            "ids_created_total": sum(r["ids_created"] for r in runs),
            "confirmed_ids_total": sum(r["confirmed_ids"] for r in runs),
            "id_switches_total": sum(r["id_switches"] for r in runs),
            "jitter_raw_mean": round(float(np.mean([r["jitter_raw"] for r in runs])), 5),
            "jitter_tracked_mean": round(float(np.mean([r["jitter_tracked"] for r in runs])), 5),
            "jitter_ratio_min": float(np.min(ratios)),
            "jitter_ratio_median": float(np.median(ratios)),
            "clips_with_ratio_at_least_2": sum(r >= 2 for r in ratios),
            "lag_sizes_mean": round(float(np.mean([r["lag_sizes"] for r in runs])), 4),
            "lag_sizes_p95_max": float(np.max([r["lag_sizes_p95"] for r in runs])),
        }
    summary["detect_ms_cpu_mean"] = round(float(np.mean([r["detect_ms_cpu"] for r in results])), 1)
    summary["detect_ms_wall_mean"] = round(float(np.mean([r["detect_ms_wall"] for r in results])), 1)
    return summary


def measure_crowd(path: Path, tracker_config: TrackerConfig, max_frames: int | None) -> dict[str, Any]:
    frames, fps = read_frames(path, max_frames)
    detector = FaceDetector(CROWD_DETECTOR)
    detections, wall_ms, cpu_ms = detect_all(detector, frames)
    tracker = FaceTracker(replace(tracker_config, detect_every_n_frames=1))
    confirmed: set[int] = set()
    confirmed_per_frame = []
    lifetimes: dict[int, int] = {}
    for index, frame_detections in enumerate(detections):
        tracks = tracker.update(frame_detections, index / fps)
        live = [t.track_id for t in tracks if t.state is TrackState.CONFIRMED]
        confirmed.update(live)
        confirmed_per_frame.append(len(live))
        for track_id in live:
            lifetimes[track_id] = lifetimes.get(track_id, 0) + 1
    confident = [sum(d.confidence >= PEOPLE_CONFIDENCE for d in frame) for frame in detections]
    people_estimate = max(confident, default=0)
    result = {
        "clip": path.name,
        "frames": len(frames),
        "size": f"{frames[0].shape[1]}x{frames[0].shape[0]}" if frames else "",
        "detector": asdict(CROWD_DETECTOR),
        "people_visible_estimate": people_estimate,
        "people_visible_method": (
            f"most faces MTCNN found in one frame at confidence >= {PEOPLE_CONFIDENCE} "
            "(frontal, unoccluded faces; people seen from behind are not counted)"
        ),
        "faces_per_frame_median": float(np.median([len(d) for d in detections])),
        "max_simultaneous_confirmed_tracks": max(confirmed_per_frame, default=0),
        "ids_created": tracker.ids_created,
        "confirmed_ids": len(confirmed),
        "confirmed_ids_per_person": round(len(confirmed) / people_estimate, 2) if people_estimate else None,
        "confirmed_track_frames_median": float(np.median(list(lifetimes.values()))) if lifetimes else 0.0,
        "detect_ms_wall": round(wall_ms, 1),
        "detect_ms_cpu": round(cpu_ms, 1),
    }
    log.info(
        "%s: people ~%d, ids %d, confirmed %d",
        path.name,
        people_estimate,
        tracker.ids_created,
        len(confirmed),
    )
    return result


def letterbox(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Fit ``frame`` into ``size`` (width, height) keeping its aspect ratio, padding with black."""
    width, height = size
    scale = min(width / frame.shape[1], height / frame.shape[0])
    resized = cv2.resize(frame, (round(frame.shape[1] * scale), round(frame.shape[0] * scale)))
    canvas = np.zeros((height, width, 3), np.uint8)
    top, left = (height - resized.shape[0]) // 2, (width - resized.shape[1]) // 2
    canvas[top : top + resized.shape[0], left : left + resized.shape[1]] = resized
    return canvas


def pick_speed_clip(clips: list[Path], frames_count: int) -> Path:
    """The first clip (by name) with at least ``frames_count`` frames, else the longest."""

    def length(path: Path) -> int:
        capture = cv2.VideoCapture(str(path))
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        capture.release()
        return count

    lengths = {clip: length(clip) for clip in clips}
    long_enough = [clip for clip in clips if lengths[clip] >= frames_count]
    return long_enough[0] if long_enough else max(clips, key=lambda clip: lengths[clip])


def measure_speed(
    clip: Path, detector_config: DetectorConfig, frames_count: int, repeats: int
) -> dict[str, Any]:
    frames, fps = read_frames(clip, frames_count)
    frames = [letterbox(frame, FPS_FRAME_SIZE) for frame in frames]
    detector = FaceDetector(detector_config)
    detector.detect(frames[0])  # first call allocates; keep it out of the timing
    result: dict[str, Any] = {
        "clip": clip.name,
        "frame_size": f"{FPS_FRAME_SIZE[0]}x{FPS_FRAME_SIZE[1]}",
        "frames": len(frames),
        "repeats": repeats,
        "detector": asdict(detector_config),
        "runs": [],
    }
    for every_n in EVERY_N:
        best_wall, best_cpu, faces = float("inf"), float("inf"), 0
        for _ in range(repeats):
            tracker = FaceTracker(
                TrackerConfig(detect_every_n_frames=every_n, max_age_frames=max(30, every_n))
            )
            wall, cpu = time.perf_counter(), time.process_time()
            for index, frame in enumerate(frames):
                detections = detector.detect(frame) if index % every_n == 0 else None
                tracks = tracker.update(detections, index / fps)
            best_wall = min(best_wall, time.perf_counter() - wall)
            best_cpu = min(best_cpu, time.process_time() - cpu)
            faces = len(tracks)
        result["runs"].append(
            {
                "every_n": every_n,
                "fps_wall": round(len(frames) / best_wall, 1),
                "fps_per_cpu_second": round(len(frames) / best_cpu, 1),
                "tracks_at_end": faces,
            }
        )
        log.info(
            "speed N=%d: %.1f fps wall, %.1f fps per CPU second",
            every_n,
            len(frames) / best_wall,
            len(frames) / best_cpu,
        )
    return result


def cosine_distances(embeddings: np.ndarray) -> tuple[float, float]:
    """(mean 1 - cos between consecutive rows, mean 1 - cos to the normalised mean row)."""
    consecutive = 1.0 - np.sum(embeddings[1:] * embeddings[:-1], axis=1)
    centre = embeddings.mean(axis=0)
    centre /= np.linalg.norm(centre)
    return float(consecutive.mean()), float((1.0 - embeddings @ centre).mean())


def as_track(detection: Detection) -> Track:
    """A raw detection dressed as a track, to crop it exactly as the pipeline would crop a track."""
    return Track(
        track_id=0,
        box_xyxy=detection.box_xyxy,
        state=TrackState.CONFIRMED,
        hits=1,
        age=0,
        source_id="raw",
        landmarks_5x2=detection.landmarks_5x2,
    )


def measure_crop_stability(kept: dict[str, ClipRun], frames_per_clip: int, margin: float) -> dict[str, Any]:
    """Embedding stability of the crops the encoder would get, per crop variant.

    Variants: "box" and "aligned" crops of the tracked face (default tracker settings, so some
    frames are predicted), and "box_raw", box crops of the raw per-frame MTCNN box, to show what
    tracking itself does to the encoder's input.
    """
    try:
        import engine
    except ImportError as error:
        return {"skipped": f"engine is not importable: {error}"}
    if not hasattr(engine, "load_encoder"):
        return {"skipped": "engine.load_encoder does not exist yet"}
    variants = ("box", "aligned", "box_raw")
    per_clip = []
    with engine.load_encoder() as encoder:
        for clip, run in kept.items():
            # Consecutive frames from the middle of the clip where exactly one track is confirmed
            # and MTCNN found the face.
            usable = [
                i
                for i, tracks in enumerate(run.tracks)
                if len([t for t in tracks if t.state is TrackState.CONFIRMED]) == 1 and run.detections[i]
            ]
            if len(usable) < 3:
                continue
            start = max(0, len(usable) // 2 - frames_per_clip // 2)
            chosen = usable[start : start + frames_per_clip]
            row: dict[str, Any] = {"clip": clip, "frames": len(chosen)}
            for variant in variants:
                config = CropConfig(mode="aligned" if variant == "aligned" else "box", margin=margin)
                crops = []
                for i in chosen:
                    if variant == "box_raw":
                        face = largest(run.detections[i])
                        assert face is not None
                        faces = [as_track(face)]
                    else:
                        faces = [t for t in run.tracks[i] if t.state is TrackState.CONFIRMED]
                    crops.append(crop_faces(run.frames[i], faces, config))
                consecutive, spread = cosine_distances(encoder.encode(np.concatenate(crops)))
                row[variant] = {"consecutive": round(consecutive, 5), "spread": round(spread, 5)}
            per_clip.append(row)
            log.info(
                "crop stability %s (consecutive/spread): box %.4f/%.4f aligned %.4f/%.4f raw box %.4f/%.4f",
                clip,
                row["box"]["consecutive"],
                row["box"]["spread"],
                row["aligned"]["consecutive"],
                row["aligned"]["spread"],
                row["box_raw"]["consecutive"],
                row["box_raw"]["spread"],
            )
        backend, weights = encoder.backend_name, encoder.weights_id
    summary: dict[str, Any] = {
        "encoder": {"backend": backend, "weights": weights},
        "margin": margin,
        "frames_per_clip": frames_per_clip,
        "clips": len(per_clip),
    }
    for metric in ("consecutive", "spread"):
        values = {v: np.array([row[v][metric] for row in per_clip]) for v in variants}
        summary[metric] = {f"{v}_mean": round(float(values[v].mean()), 5) for v in variants}
        summary[metric]["clips_where_aligned_beats_box"] = int((values["aligned"] < values["box"]).sum())
        summary[metric]["clips_where_box_beats_raw_box"] = int((values["box"] < values["box_raw"]).sum())
    better = summary["consecutive"]["aligned_mean"] < summary["consecutive"]["box_mean"]
    summary["steadier_mode"] = "aligned" if better else "box"
    summary["per_clip"] = per_clip
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared data folder")
    parser.add_argument("--max-frames", type=int, default=300, help="frames read per clip (from the start)")
    parser.add_argument("--crowd-frames", type=int, default=None, help="frames of the street scene (all)")
    parser.add_argument("--speed-frames", type=int, default=150, help="frames in the speed test")
    parser.add_argument("--speed-repeats", type=int, default=2, help="speed runs per N; the best counts")
    parser.add_argument(
        "--stability-frames", type=int, default=40, help="consecutive frames encoded per clip"
    )
    parser.add_argument("--clips", nargs="*", default=None, help="only these talking-head clips (file names)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["clips", "crowd", "speed", "stability"])
    parser.add_argument("--torch-threads", type=int, default=1, help="torch intra-op threads (default 1)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    torch.set_num_threads(args.torch_threads)

    real = args.data / "real"
    if not real.is_dir():
        raise SystemExit(f"no clips at {real} (set DEEPWATCH_DATA or --data)")
    clips = sorted(p for p in real.glob("*.mp4") if p.name != CROWD_CLIP)
    if args.clips:
        clips = [p for p in clips if p.name in set(args.clips)]
    detector_config = DetectorConfig()
    tracker_config = TrackerConfig()
    crop_config = CropConfig()
    report: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_start": [round(v, 2) for v in os.getloadavg()],
            "python": platform.python_version(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
        },
        "detector": asdict(detector_config),
        "tracker": asdict(tracker_config),
        "crop": asdict(crop_config),
    }
    started = time.perf_counter()
    kept: dict[str, ClipRun] = {}
    if "clips" not in args.skip or "stability" not in args.skip:
        results, kept = measure_clips(clips, FaceDetector(detector_config), tracker_config, args.max_frames)
        if "clips" not in args.skip:
            report["single_face_clips"] = {"summary": summarise_clips(results), "per_clip": results}
    if "crowd" not in args.skip and (real / CROWD_CLIP).is_file():
        report["crowd"] = measure_crowd(real / CROWD_CLIP, tracker_config, args.crowd_frames)
    if "speed" not in args.skip and clips:
        report["speed"] = measure_speed(
            pick_speed_clip(clips, args.speed_frames), detector_config, args.speed_frames, args.speed_repeats
        )
    if "stability" not in args.skip:
        report["crop_stability"] = measure_crop_stability(kept, args.stability_frames, crop_config.margin)
    report["machine"]["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    report["seconds"] = round(time.perf_counter() - started, 1)

    if args.json:
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print_human(report)
    return 0


def print_human(report: dict[str, Any]) -> None:
    out = sys.stdout.write
    if "single_face_clips" in report:
        out("single-face clips (N=1):\n")
        for clip in report["single_face_clips"]["per_clip"]:
            run = clip["tracking"][0]
            out(
                f"  {clip['clip']:<48} ids {run['ids_created']} confirmed {run['confirmed_ids']} "
                f"switches {run['id_switches']} "
                f"jitter {run['jitter_raw']:.4f} -> {run['jitter_tracked']:.4f} "
                f"(x{run['jitter_ratio']})\n"
            )
        out(json.dumps(report["single_face_clips"]["summary"], indent=2) + "\n")
    for key in ("crowd", "speed"):
        if key in report:
            out(f"{key}: {json.dumps(report[key], indent=2)}\n")
    if "crop_stability" in report:
        stability = {k: v for k, v in report["crop_stability"].items() if k != "per_clip"}
        out(f"crop stability: {json.dumps(stability, indent=2)}\n")


if __name__ == "__main__":
    sys.exit(main())
