"""Live pipeline speed on the CPU: fps, capture-to-overlay latency and score refresh rate.

    python benchmarks/pipeline.py --json

For 640x480 and 1280x720 with 1 and 3 faces (the offline demo scene: a real photo moving and
zooming), runs the real pipeline (MTCNN every N frames, Kalman tracker, aligned crops, encoder
batch, sequence scorer, overlay) twice over the same pre-rendered clip:

- as fast as possible (frames queued, none dropped) -> ``fps`` and where the time goes;
- paced at the clip's 30 fps like a camera (newest frame wins) -> ``latency_p50_ms`` and
  ``latency_p95_ms`` from capture to the drawn overlay, and ``score_hz``, the scorer updates
  per second per face.

Then the naive original recipe on the same frames (MTCNN at full resolution and the encoder on
every face of every frame, no tracker) and the speed ratio. Prints a JSON list (``--json``) or a
table. Goals on a 2-core CPU: >= 30 fps at 640x480 with one face, p95 <= 60 ms, >= 8 Hz per face.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from stream.config import AppConfig
from stream.contracts import Event, Frame, FrameResult
from stream.live.app import PipelineComponents, load_components
from stream.live.runner import Runner
from stream.sources.demo import render_demo_frame
from stream.sources.reader import FrameReader
from stream.sources.source import GrabbedImage

CLIP_FPS = 30.0
SIZES = ((640, 480), (1280, 720))
FACE_COUNTS = (1, 3)


class ClipGrabber:
    """Replays pre-rendered frames with their timestamps (a ``FrameGrabber``)."""

    live = False

    def __init__(self, frames: list[np.ndarray], fps: float) -> None:
        self.name = "bench"
        self.fps = fps
        self._frames = frames
        self._position = 0

    def open(self) -> None:
        self._position = 0

    def grab(self) -> GrabbedImage | None:
        if self._position >= len(self._frames):
            return None
        image = self._frames[self._position]
        timestamp_s = self._position / self.fps
        self._position += 1
        return GrabbedImage(image=image, timestamp_s=timestamp_s)

    def close(self) -> None:
        pass

    def interrupt(self) -> None:
        pass


class OverlaySink:
    """Makes the runner draw the overlay on every frame, and keeps nothing."""

    needs_annotated = True

    def write(self, result: FrameResult, annotated: np.ndarray | None) -> None:
        pass

    def write_events(self, events: Sequence[Event]) -> None:
        pass  # not measured

    def close(self) -> None:
        pass


def render_clip(width: int, height: int, faces: int, seconds: float) -> list[np.ndarray]:
    return [render_demo_frame(i / CLIP_FPS, width, height, faces) for i in range(round(seconds * CLIP_FPS))]


def run_pipeline(components: PipelineComponents, frames: list[np.ndarray], *, paced: bool) -> dict[str, Any]:
    source = FrameReader(ClipGrabber(frames, CLIP_FPS), pace_realtime=paced, queue_size=4)
    # Paced like a camera, as deepwatch run --realtime does: the live pipeline (shared stages on
    # worker threads); as fast as possible, the inline one (every frame's results complete).
    pipeline = components.live_pipeline() if paced else components.new_pipeline()
    runner = Runner([source], pipeline, [OverlaySink()], log_interval_s=3600)
    return runner.run().summary


def warm_up(components: PipelineComponents, frames: list[np.ndarray]) -> None:
    pipeline = components.new_pipeline()
    for index, image in enumerate(frames[:12]):
        pipeline.process(Frame(image, index, index / CLIP_FPS, "warmup"))
    pipeline.finish()


def naive(components: PipelineComponents, frames: list[np.ndarray], detector: Any) -> dict[str, Any]:
    """The original recipe: full-resolution MTCNN and the encoder on every face, every frame."""
    from tracking import Track, TrackState, crop_faces

    latencies = []
    encoded = 0
    started = time.perf_counter()
    for image in frames:
        t0 = time.perf_counter()
        detections = detector.detect(image)
        tracks = [
            Track(i, d.box_xyxy, TrackState.CONFIRMED, 1, 1, "naive", d.landmarks_5x2)
            for i, d in enumerate(detections)
        ]
        if tracks:
            components.encoder.encode(crop_faces(image, tracks, components.config.crop))
            encoded += len(tracks)
        latencies.append((time.perf_counter() - t0) * 1000)
    elapsed = time.perf_counter() - started
    p50, p95 = np.percentile(latencies, [50, 95])
    return {"fps": len(frames) / elapsed, "p50": float(p50), "p95": float(p95), "encoded": encoded}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print only the JSON list")
    parser.add_argument("--seconds", type=float, default=6.0, help="clip length per configuration, seconds")
    parser.add_argument("--naive-frames", type=int, default=30, help="frames for the naive pipeline")
    parser.add_argument(
        "--torch-threads", type=int, default=None, help="torch CPU threads (default: torch's)"
    )
    parser.add_argument("--checkpoint", default=None, help="scorer checkpoint (default: the shipped model)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

    import torch

    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    config = AppConfig()
    config = replace(config, model=replace(config.model, checkpoint=args.checkpoint))
    components = load_components(config)
    from tracking import DetectorConfig, FaceDetector

    # facenet-pytorch's MTCNN defaults, as the original recipe used them: full frame, 20 px faces.
    naive_detector = FaceDetector(DetectorConfig(max_side_px=None, min_face_size_px=20.0))
    rows = []
    for width, height in SIZES:
        for faces in FACE_COUNTS:
            frames = render_clip(width, height, faces, args.seconds)
            warm_up(components, frames)
            fast = run_pipeline(components, frames, paced=False)
            paced = run_pipeline(components, frames, paced=True)
            scored = sum(track["frames_scored"] for track in paced["tracks"])
            clip_s = len(frames) / CLIP_FPS
            baseline = naive(components, frames[: args.naive_frames], naive_detector)
            # Where the time goes: each stage's milliseconds averaged over all frames (a stage that
            # runs on every third frame costs a third of its own time per frame).
            stages = {
                stage: round(figures["total_ms"] / fast["frames_processed"], 2)
                for stage, figures in fast["stage_latency_ms"].items()
            }
            row = {
                "width": width,
                "height": height,
                "faces": faces,
                "fps": round(fast["fps"], 1),
                "latency_p50_ms": paced["capture_to_output_ms"]["p50"],
                "latency_p95_ms": paced["capture_to_output_ms"]["p95"],
                "score_hz": round(scored / faces / clip_s, 2),
                "frames_dropped_at_30fps": paced["sources"][0]["frames_dropped"],
                "tracks": len(fast["tracks"]),
                "stage_ms_per_frame": stages,
                "naive_fps": round(baseline["fps"], 2),
                "naive_latency_p50_ms": round(baseline["p50"], 1),
                "speedup_vs_naive": round(fast["fps"] / baseline["fps"], 1),
            }
            rows.append(row)
            if not args.json:
                print(json.dumps(row), flush=True)
    components.close()
    print(json.dumps(rows, indent=None if args.json else 2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
