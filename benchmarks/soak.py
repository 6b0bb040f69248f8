"""Soak test: a looping clip at real-time pace through the full live pipeline for many minutes.

    python benchmarks/soak.py --minutes 30 [--clip FILE.mp4]

Reports resident memory at the start (after warm-up) and end (goal: growth < 5 %), capture-to-
overlay latency p50/p95 per minute (goal: no upward drift), and frames dropped. The clip defaults
to a real talking head from ../shared/data (DEEPWATCH_DATA), else a generated demo clip.
Prints one JSON line per minute and a JSON summary at the end.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from stream.config import AppConfig, load_config
from stream.contracts import Event, FrameResult
from stream.live.app import load_components
from stream.live.overlay import OverlayStatus, draw_overlay
from stream.live.runner import Runner
from stream.sources import open_source
from stream.sources.demo import write_demo_video
from stream.sources.reader import FrameReader

DEFAULT_CLIP = Path(os.environ.get("DEEPWATCH_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
DEFAULT_CLIP = DEFAULT_CLIP / "real" / "retalking_face1.mp4"


class MinuteReport:
    """A sink that measures capture-to-overlay latency itself and reports once per period."""

    needs_annotated = True

    def __init__(self, source: FrameReader, period_s: float, process: psutil.Process) -> None:
        self._source = source
        self._period_s = period_s
        self._process = process
        self._latencies: list[float] = []
        self._frames = 0
        self._period_started = time.monotonic()
        self._dropped_at_start = 0
        self.minutes: list[dict[str, Any]] = []

    def write(self, result: FrameResult, annotated: np.ndarray | None) -> None:
        now = time.monotonic()
        self._latencies.append((now - self._source.clock_origin_s - result.frame.timestamp_s) * 1000)
        self._frames += 1
        if now - self._period_started >= self._period_s:
            self.flush(now)

    def flush(self, now: float) -> None:
        if not self._latencies:
            return
        p50, p95 = np.percentile(self._latencies, [50, 95])
        dropped = self._source.frames_dropped
        row = {
            "minute": len(self.minutes) + 1,
            "frames": self._frames,
            "fps": round(self._frames / (now - self._period_started), 1),
            "latency_p50_ms": round(float(p50), 1),
            "latency_p95_ms": round(float(p95), 1),
            "dropped": dropped - self._dropped_at_start,
            "rss_mb": round(self._process.memory_info().rss / 2**20, 1),
        }
        self.minutes.append(row)
        print(json.dumps(row), flush=True)
        self._latencies, self._frames = [], 0
        self._period_started = now
        self._dropped_at_start = dropped

    def write_events(self, events: Sequence[Event]) -> None:
        pass  # not measured

    def close(self) -> None:
        self.flush(time.monotonic())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--clip", type=Path, default=None)
    parser.add_argument("--config", type=Path, default=None)
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--period-s", type=float, default=60.0, help="report period, seconds (a 'minute')")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

    clip = args.clip
    temporary = None
    if clip is None:
        if DEFAULT_CLIP.is_file():
            clip = DEFAULT_CLIP
        else:
            temporary = tempfile.TemporaryDirectory()
            clip = Path(temporary.name) / "demo.mp4"
            write_demo_video(clip, seconds=10, fps=30, width=640, height=480)
    config = load_config(args.config) if args.config else AppConfig()
    if args.checkpoint:
        from dataclasses import replace

        config = replace(config, model=replace(config.model, checkpoint=args.checkpoint))
    process = psutil.Process()
    components = load_components(config)

    # Warm up (allocators, ONNX Runtime arenas, torch caches) before the starting RSS.
    warm = open_source(str(clip), config.source)
    warm_pipeline = components.new_pipeline()
    with warm:
        for _ in range(60):
            frame = warm.read(5.0)
            if frame is None:
                break
            draw_overlay(warm_pipeline.process(frame), OverlayStatus(), components.threshold)
    warm_pipeline.finish()
    rss_start = process.memory_info().rss

    source = open_source(str(clip), config.source, realtime=True, loop=True)
    report = MinuteReport(source, args.period_s, process)
    stop = threading.Event()
    timer = threading.Timer(args.minutes * 60, stop.set)
    timer.start()
    runner = Runner(
        [source], components.new_pipeline(), [report], threshold=components.threshold, stop_event=stop
    )
    try:
        outcome = runner.run()
    finally:
        timer.cancel()
        components.close()
    rss_end = process.memory_info().rss
    p95s = [row["latency_p95_ms"] for row in report.minutes]
    summary = {
        "clip": str(clip),
        "minutes": args.minutes,
        "rss_start_mb": round(rss_start / 2**20, 1),
        "rss_end_mb": round(rss_end / 2**20, 1),
        "rss_growth_pct": round(100 * (rss_end - rss_start) / rss_start, 2),
        "latency_p95_ms_per_minute": p95s,
        "latency_p95_drift_ms": round(p95s[-1] - p95s[0], 1) if len(p95s) >= 2 else None,
        "frames_read": source.frames_read,
        "frames_processed": outcome.summary["frames_processed"],
        "frames_dropped": source.frames_dropped,
        "fps": outcome.summary["fps"],
        "tracks": len(outcome.summary["tracks"]),
    }
    print(json.dumps(summary, indent=2))
    if temporary is not None:
        temporary.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
