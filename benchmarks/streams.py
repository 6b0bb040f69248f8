"""Many streams on one machine: N = 1, 2, 4, 8 cameras in one process, against one process each.

    python benchmarks/streams.py --json             # everything, JSON on stdout
    python benchmarks/streams.py --streams 4 --seconds 20

The inputs are talking-head clips from ``$DEEPWATCH_DATA/real`` (default ``../shared/data/real``),
re-encoded into a temporary folder as 640 x 480 at 15 fps (``--size``/``--fps`` for heavier cameras,
e.g. ``--size 1280x720 --fps 25``, where one process per stream falls behind) and played as cameras
(``open_source(..., realtime=True, loop=True)``: paced at their frame rate, newest frame wins,
late frames dropped and counted).

- ``deepwatch``: one process runs all N streams through ``PipelineComponents.live_pipeline()``
  (what ``deepwatch run A B C D --realtime`` does): one detection batch and one encode + score
  batch for all streams, under the load-shedding rule.
- ``naive``: N processes, one per stream, each with its own models and the serial pipeline that
  ``deepwatch run`` had before streams were batched (``new_pipeline()``: detection, encoding and
  scoring inline in the one loop thread), started together once all have loaded their models.

- ``ray`` (with ``--ray``): the same N streams through ``deepwatch run --ray local``'s path,
  each stream a Ray actor with its own detector and tracker, one shared encoder actor; measured
  from the first result on (Ray and the actors' models start first).

``--precision int8`` runs every encoder as ONNX Runtime int8 (``encoder.precision``), built and
parity-checked once per weights. Models load before the sources start, so the figures cover the
streams only. Per N, a list of
``{streams, per_stream_fps_min, dropped_pct_max, score_hz_min, latency_p50_ms, latency_p95_ms,
frames_total}``: the slowest stream's processed frames per second, the worst stream's share of
frames dropped, the least-scored face's scorer updates per second (tracks seen for >= 2 s),
capture-to-output latency over all frames (for ``naive``, the worst process's percentile), and
all streams' processed frames together. Goal on a 2-core CPU: 4 streams each at >= 90 % of its
frames, every face scored >= 4 Hz, p95 <= 150 ms, and >= 2x the naive total at N = 4.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from stream.contracts import Frame, FrameResult

# The clips the goals are stated for; --size and --fps play heavier cameras.
WIDTH, HEIGHT, FPS = 640, 480, 15.0
CLIP_SECONDS = 20
STREAM_COUNTS = (1, 2, 4, 8)
# A face counted for score_hz must have been tracked this long, seconds: shorter tracks are the
# tracker's false starts, whose rate says nothing about scheduling.
MIN_TRACK_S = 2.0
SUMMARY_MARK = "deepwatch-summary: "
DEFAULT_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


class NullSink:
    """Makes the runner draw the overlay on every frame (as a window or a page would), keeps nothing."""

    needs_annotated = True

    def write(self, result: FrameResult, annotated: np.ndarray | None) -> None:
        pass

    def write_events(self, events: Any) -> None:
        pass

    def close(self) -> None:
        pass


def make_clips(
    data: Path, count: int, folder: Path, size: tuple[int, int] = (WIDTH, HEIGHT), fps: float = FPS
) -> list[Path]:
    """``count`` clips of 20 s at ``size`` (width, height) and ``fps`` from the talking-head videos
    (looped if short)."""
    import cv2

    videos = sorted(p for p in (data / "real").glob("*.mp4") if p.name != "crowd_street.mp4")
    if not videos:
        raise SystemExit(f"no talking-head clips in {data / 'real'}; set DEEPWATCH_DATA")
    paths = []
    for index in range(count):
        video = videos[index % len(videos)]
        capture = cv2.VideoCapture(str(video))
        source_fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
        frames = []
        while True:
            ok, image = capture.read()
            if not ok:
                break
            frames.append(image)
        capture.release()
        path = folder / f"stream{index}.mp4"
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
        for frame_index in range(round(CLIP_SECONDS * fps)):
            image = frames[int(frame_index / fps * source_fps) % len(frames)]
            interpolation = cv2.INTER_AREA if size[0] <= image.shape[1] else cv2.INTER_LINEAR
            writer.write(cv2.resize(image, size, interpolation=interpolation))
        writer.release()
        paths.append(path)
    return paths


def app_config(precision: str) -> Any:
    """The default app config with the encoder at ``precision``."""
    from dataclasses import replace

    from stream.config import AppConfig

    config = AppConfig()
    return replace(config, encoder=replace(config.encoder, precision=precision))


def child(clips: list[str], seconds: float, serial: bool, precision: str, size: tuple[int, int]) -> None:
    """Load the models, say ready, wait for go, run the clips as cameras, print the summary."""
    from stream.live.app import load_components
    from stream.live.runner import Runner
    from stream.sources import open_source

    config = app_config(precision)
    components = load_components(config)
    warm = components.new_pipeline()
    rng = np.random.default_rng(0)
    for index in range(6):  # first calls of MTCNN, the encoder and the scorer are slow
        image = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
        warm.process(Frame(image, index, index / FPS, "warm-up"))
    print("ready", flush=True)
    sys.stdin.readline()
    sources = [
        open_source(path, config.source, realtime=True, loop=True, source_id=f"stream{i}")
        for i, path in enumerate(clips)
    ]
    for source in sources:
        source.start()
    stop = threading.Event()
    timer = threading.Timer(seconds, stop.set)
    timer.start()
    runner = Runner(
        sources,
        components.new_pipeline() if serial else components.live_pipeline(),
        [NullSink()],
        threshold=components.threshold,
        log_interval_s=3600,
        stop_event=stop,
        sources_started=True,
    )
    try:
        summary = runner.run().summary
    finally:
        timer.cancel()
        components.close()
    print(SUMMARY_MARK + json.dumps(summary), flush=True)


def ray_child(clips: list[str], seconds: float, precision: str, stream_nice: int) -> None:
    """The clips as cameras through ``deepwatch run --ray local``'s path (``ClusterRun``): each
    stream an actor, one shared encoder actor. Actors load their models after the start, so the
    measured ``seconds`` count from the first result (``startup_s`` in the summary is the rest)."""
    from stream.cluster.command import stream_specs
    from stream.cluster.driver import ClusterOptions, ClusterRun
    from stream.cluster.stages import AppStages

    config = app_config(precision)
    specs = stream_specs(clips, config, realtime=True, loop=True, images_for=None)
    print("ready", flush=True)
    sys.stdin.readline()
    run = ClusterRun(
        specs,
        AppStages(config),
        [NullSink()],
        ClusterOptions(address="local", stream_nice=stream_nice),
        log_interval_s=3600,
    )

    def stop_after_measuring() -> None:
        while run.first_result_s is None and not run.stop_event.wait(0.1):
            pass
        run.stop_event.wait(seconds)
        run.stop_event.set()

    threading.Thread(target=stop_after_measuring, daemon=True).start()
    summary = run.run().summary
    print(SUMMARY_MARK + json.dumps(summary), flush=True)


def run_children(
    groups: list[list[Path]],
    seconds: float,
    *,
    serial: bool = False,
    ray: bool = False,
    precision: str = "fp32",
    size: tuple[int, int] = (WIDTH, HEIGHT),
    ray_stream_nice: int = 4,
) -> list[dict[str, Any]]:
    """One child process per group of clips, all released together; their summaries."""
    command = [
        sys.executable,
        __file__,
        "--child",
        "--seconds",
        str(seconds),
        "--precision",
        precision,
        "--size",
        f"{size[0]}x{size[1]}",
        *(["--serial"] if serial else []),
        *(["--ray", "--ray-stream-nice", str(ray_stream_nice)] if ray else []),
    ]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    children = [
        subprocess.Popen(
            [*command, *map(str, group)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        for group in groups
    ]
    try:
        for process in children:
            line = process.stdout.readline() if process.stdout else ""
            if line.strip() != "ready":
                raise RuntimeError(f"a benchmark child failed to start (said {line!r})")
        for process in children:
            if process.stdin:
                process.stdin.write("go\n")
                process.stdin.flush()
        summaries = []
        for process in children:
            out, _ = process.communicate(timeout=seconds + 120)
            # Ray's workers may print to the child's stdout too: the summary is the marked line.
            marked = [line for line in out.splitlines() if line.startswith(SUMMARY_MARK)]
            if not marked:
                raise RuntimeError(f"a benchmark child printed no summary; its output ended {out[-2000:]!r}")
            summaries.append(json.loads(marked[-1][len(SUMMARY_MARK) :]))
        return summaries
    finally:
        for process in children:
            if process.poll() is None:
                process.kill()


def figures(streams: int, summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """The row of one N from the children's run summaries."""
    sources = [entry for summary in summaries for entry in summary["sources"]]
    fps = [
        entry["frames_processed"] / summary["elapsed_s"]
        for summary in summaries
        for entry in summary["sources"]
    ]
    tracks = [
        track
        for summary in summaries
        for track in summary["tracks"]
        if track["last_timestamp_s"] - track["first_timestamp_s"] >= MIN_TRACK_S
    ]
    score_hz = [t["frames_scored"] / (t["last_timestamp_s"] - t["first_timestamp_s"]) for t in tracks]
    p50 = [
        s["capture_to_output_ms"]["p50"] for s in summaries if s["capture_to_output_ms"]["p50"] is not None
    ]
    p95 = [
        s["capture_to_output_ms"]["p95"] for s in summaries if s["capture_to_output_ms"]["p95"] is not None
    ]
    return {
        "streams": streams,
        "per_stream_fps_min": round(min(fps), 2),
        "dropped_pct_max": round(max(entry["dropped_pct"] for entry in sources), 2),
        "score_hz_min": round(min(score_hz), 2) if score_hz else None,
        "latency_p50_ms": max(p50) if p50 else None,
        "latency_p95_ms": max(p95) if p95 else None,
        "frames_total": sum(entry["frames_processed"] for entry in sources),
        "faces_scored": len(tracks),
        "load": [summary.get("load") for summary in summaries] if len(summaries) == 1 else None,
    }


def frame_size(text: str) -> tuple[int, int]:
    """``WxH`` -> (width, height), each within 64..4096."""
    width, _, height = text.lower().partition("x")
    if not (width.isdigit() and height.isdigit()) or not all(64 <= int(v) <= 4096 for v in (width, height)):
        raise argparse.ArgumentTypeError(f"expected WxH within 64..4096, e.g. 1280x720, got {text!r}")
    return int(width), int(height)


def frame_rate(text: str) -> float:
    """A camera frame rate in (0, 120]."""
    try:
        rate = float(text)
    except ValueError:
        rate = float("nan")
    if not 0 < rate <= 120:
        raise argparse.ArgumentTypeError(f"expected frames per second in (0, 120], got {text!r}")
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", action="store_true", help="print JSON only")
    parser.add_argument("--seconds", type=float, default=30.0, help="measured time per run (default 30)")
    parser.add_argument("--streams", type=int, nargs="*", default=list(STREAM_COUNTS), help="N values")
    parser.add_argument(
        "--precision",
        choices=("fp32", "int8", "auto"),
        default="fp32",
        help="encoder.precision of every run (default fp32, the shipped config's)",
    )
    parser.add_argument(
        "--ray",
        action="store_true",
        help="also run each N through the --ray local path (needs deepwatch[ray])",
    )
    parser.add_argument("--no-naive", action="store_true", help="skip the naive baseline")
    parser.add_argument(
        "--ray-stream-nice",
        type=int,
        default=4,
        metavar="N",
        help="nice levels the Ray stream actors add (as deepwatch run --ray-stream-nice; default 4, "
        "0 = as Ray starts them)",
    )
    parser.add_argument(
        "--size",
        type=frame_size,
        default=(WIDTH, HEIGHT),
        help=f"camera frame size WxH (default {WIDTH}x{HEIGHT}, the goals' size)",
    )
    parser.add_argument(
        "--fps", type=frame_rate, default=FPS, help=f"camera frame rate (default {FPS:g}, the goals' rate)"
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serial", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("clips", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        logging.basicConfig(level=logging.WARNING)
        if args.ray:
            ray_child(args.clips, args.seconds, args.precision, args.ray_stream_nice)
        else:
            child(args.clips, args.seconds, args.serial, args.precision, args.size)
        return
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    data = Path(os.environ.get("DEEPWATCH_DATA", DEFAULT_DATA))
    load_before = os.getloadavg()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="deepwatch-streams-") as folder:
        clips = make_clips(data, max(args.streams), Path(folder), args.size, args.fps)
        settings: dict[str, Any] = {"precision": args.precision, "size": args.size}
        ray_settings = {**settings, "ray_stream_nice": args.ray_stream_nice}
        rows: dict[str, list[dict[str, Any]]] = {"deepwatch": []}
        if not args.no_naive:
            rows["naive"] = []
        if args.ray:
            rows["ray"] = []
        for streams in args.streams:
            logging.info("N = %d: one process", streams)
            rows["deepwatch"].append(
                figures(streams, run_children([clips[:streams]], args.seconds, **settings))
            )
            if "naive" in rows:
                logging.info("N = %d: %d processes", streams, streams)
                groups = [[clip] for clip in clips[:streams]]
                rows["naive"].append(figures(streams, run_children(groups, args.seconds, **settings)))
            if "ray" in rows:
                logging.info("N = %d: --ray local", streams)
                rows["ray"].append(
                    figures(
                        streams,
                        run_children([clips[:streams]], args.seconds, ray=True, **ray_settings),
                    )
                )
    result: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "load_average_before": [round(v, 2) for v in load_before],
            "load_average_after": [round(v, 2) for v in os.getloadavg()],
            "note": "shared machine: other jobs ran during the measurement",
        },
        "seconds_per_run": args.seconds,
        "precision": args.precision,
        **({"ray_stream_nice": args.ray_stream_nice} if args.ray else {}),
        "clip": {"width": args.size[0], "height": args.size[1], "fps": args.fps},
        **rows,
        "wall_s": round(time.monotonic() - started, 1),
    }
    at_4 = {name: next((row for row in table if row["streams"] == 4), None) for name, table in rows.items()}
    row = at_4["deepwatch"]
    if row is not None:
        goals: dict[str, Any] = {
            "frames_kept_ge_90pct": row["per_stream_fps_min"] >= 0.9 * args.fps,
            "score_hz_ge_4": row["score_hz_min"] is not None and row["score_hz_min"] >= 4.0,
            "p95_le_150ms": row["latency_p95_ms"] is not None and row["latency_p95_ms"] <= 150.0,
        }
        if at_4.get("naive") is not None:
            goals["total_vs_naive"] = round(row["frames_total"] / max(1, at_4["naive"]["frames_total"]), 2)
        ray_row = at_4.get("ray")
        if ray_row is not None:
            # Ray within 20 % of in-process: its frames and its slowest face's score rate.
            goals["ray_frames_vs_in_process"] = round(
                ray_row["frames_total"] / max(1, row["frames_total"]), 2
            )
            if ray_row["score_hz_min"] is not None and row["score_hz_min"]:
                goals["ray_score_hz_vs_in_process"] = round(ray_row["score_hz_min"] / row["score_hz_min"], 2)
        result["goals_at_4"] = goals
    if args.json:
        print(json.dumps(result, indent=2))
        return
    for name, table in rows.items():
        print(name)
        for row in table:
            print("  " + ", ".join(f"{key} {value}" for key, value in row.items() if key != "load"))
    if "goals_at_4" in result:
        print("goals at N = 4:", result["goals_at_4"])


if __name__ == "__main__":
    main()
