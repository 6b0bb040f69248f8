"""``deepwatch run``: watch a source live, overlay a score per face, write events and a summary."""

from __future__ import annotations

import argparse
import logging
import math
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from stream.cluster.command import add_arguments as add_cluster_arguments
from stream.cluster.command import run_on_ray
from stream.commands import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    REFERENCE_WORDS,
    add_reference_argument,
    run_failed,
)
from stream.commands.photos import photo_inputs, refuse_mixed, run_photos
from stream.config import AppConfig, ConfigError, load_config, with_model
from stream.output_config import OutputConfig
from stream.sinks import (
    EventsSink,
    Sink,
    VideoFileSink,
    WebhookSink,
    WindowSink,
    write_summary,
)
from stream.sources import DEMO_SPEC, SPEC_HELP, FrameReader, SourceError, open_source
from stream.sources.redact import install_log_redaction

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run",
        help="watch a webcam, stream, file or screen region and score every face",
        description=(
            "Watch a video source live and keep an authenticity score for every face. "
            "Without SOURCE, runs on a built-in offline demo (a real photo moving and zooming). "
            f"SOURCE is {SPEC_HELP}; several SOURCEs run in one process and share encoder batches. "
            "An image file, or a folder of them, is scored photo by photo, every face on its own."
        ),
    )
    parser.add_argument("sources", nargs="*", metavar="SOURCE", help="input(s); default: the offline demo")
    parser.add_argument(
        "--config", type=Path, help="app config YAML (default: built-in defaults = configs/default.yaml)"
    )
    parser.add_argument("--checkpoint", help="scorer checkpoint (default: the shipped model)")
    add_reference_argument(parser)
    parser.add_argument(
        "--show", action="store_true", help="show the annotated video in a window (q or Esc quits)"
    )
    parser.add_argument(
        "--out",
        metavar="FILE.mp4",
        help="write the annotated video (for photos: an annotated image file, or a folder for several)",
    )
    parser.add_argument("--events", metavar="FILE.jsonl", help="write track events as JSON Lines")
    parser.add_argument("--summary", metavar="FILE.json", help="write the final summary as JSON")
    parser.add_argument(
        "--realtime",
        action="store_true",
        help="play files at their frame rate like a camera (late frames dropped)",
    )
    parser.add_argument("--loop", action="store_true", help="restart video files at their end")
    add_cluster_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    install_log_redaction()
    try:
        config = load_config(args.config) if args.config is not None else AppConfig()
    except ConfigError as error:
        return run_failed(str(error), EXIT_USAGE)
    output = _output_config(config.output, args)
    specs = args.sources or [DEMO_SPEC]
    try:
        photos, others = photo_inputs(specs, config)
    except SourceError as error:
        return run_failed(str(error), EXIT_FAILED)
    mixed = refuse_mixed(photos, others)
    if mixed:
        return run_failed(mixed, EXIT_USAGE)
    if photos:
        return run_photos(args, with_model(config, args.checkpoint, args.reference), output, photos)
    if args.ray:
        return run_on_ray(args, config, output, specs, print_summary=_print_summary, fail=run_failed)
    try:
        sources = _open_sources(specs, config, realtime=args.realtime, loop=args.loop)
    except SourceError as error:
        return run_failed(str(error), EXIT_FAILED)
    config = with_model(config, args.checkpoint, args.reference)

    # Open the inputs first: a missing, corrupt or unreachable one is reported before the models
    # load. With several, one that fails is reported for itself and the others run.
    started: list[FrameReader] = []
    failed: dict[str, str] = {}
    for source in sources:
        try:
            source.start()
        except SourceError as error:
            if len(sources) == 1:
                return run_failed(str(error), EXIT_FAILED)
            failed[source.source_id] = str(error)
            logger.error("%s", error)
            continue
        started.append(source)
    if not started:
        return run_failed("; ".join(failed.values()), EXIT_FAILED)

    # Heavy imports (torch, facenet-pytorch) only once the inputs are known to be sound.
    from stream.live.app import SetupError, load_components
    from stream.live.runner import Runner

    try:
        components = load_components(config)
    except SetupError as error:
        _stop_all(sources)
        return run_failed(str(error), EXIT_FAILED)
    try:
        sinks, window = _make_sinks(output, sources, config)
    except (OSError, ValueError) as error:
        _stop_all(sources)
        components.close()
        return run_failed(f"cannot create an output: {error}", EXIT_FAILED)
    stop_event = threading.Event()
    runner = Runner(
        sources,
        # Live inputs never wait for the models: their detection and scoring run on the shared
        # worker threads. Files read as fast as possible keep every frame's results complete.
        components.live_pipeline() if any(source.live for source in started) else components.new_pipeline(),
        sinks,
        threshold=components.threshold,
        log_interval_s=output.log_interval_s,
        stop_event=stop_event,
        window=window,
        sources_started=True,
        failed_at_start=failed,
    )
    previous_sigterm = _stop_on_sigterm(stop_event)
    try:
        outcome = runner.run()
    except SourceError as error:
        return run_failed(str(error), EXIT_FAILED)
    finally:
        components.close()
        if previous_sigterm is not None:
            signal.signal(signal.SIGTERM, previous_sigterm)
    summary: dict[str, Any] = {"model": components.describe(), **outcome.summary}
    if output.summary_path:
        write_summary(output.summary_path, summary)
        logger.info("summary written to %s", output.summary_path)
    _print_summary(summary)
    if outcome.errors:
        for error_line in outcome.errors:
            print(f"deepwatch run: error: {error_line}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _output_config(output: OutputConfig, args: argparse.Namespace) -> OutputConfig:
    from dataclasses import replace

    return replace(
        output,
        show=output.show or args.show,
        video_path=args.out or output.video_path,
        events_path=args.events or output.events_path,
        summary_path=args.summary or output.summary_path,
    )


def _open_sources(specs: list[str], config: AppConfig, *, realtime: bool, loop: bool) -> list[FrameReader]:
    sources = [open_source(spec, config.source, realtime=realtime, loop=loop) for spec in specs]
    seen: dict[str, int] = {}
    for index, source in enumerate(sources):
        # Two sources of the same name (e.g. two files called clip.mp4) need distinct ids.
        count = seen.get(source.source_id, 0)
        seen[source.source_id] = count + 1
        if count:
            sources[index] = open_source(
                specs[index],
                config.source,
                realtime=realtime,
                loop=loop,
                source_id=f"{source.source_id}#{count}",
            )
    return sources


def _stop_all(sources: list[FrameReader]) -> None:
    for source in sources:
        source.stop()


def _make_sinks(
    output: OutputConfig, sources: list[FrameReader], config: AppConfig
) -> tuple[list[Sink], Any]:
    sinks: list[Sink] = []
    window = None
    if output.show:
        window = WindowSink(output.window_title)
        sinks.append(window)
    if output.video_path:
        fps = output.video_fps or sources[0].nominal_fps or 25.0
        sinks.append(VideoFileSink(output.video_path, fps=fps, source_id=sources[0].source_id))
        if len(sources) > 1:
            logger.warning("--out records only the first source, %s", sources[0].source_id)
    if output.events_path:
        sinks.append(EventsSink(output.events_path))
    alerts, url = config.alerts, config.alerts.webhook_url
    if url:
        sinks.append(WebhookSink.for_url(url, alerts.webhook_timeout_s, alerts.webhook_queue_size))
    return sinks, window


def _stop_on_sigterm(stop_event: threading.Event) -> Any:
    """SIGTERM stops the run cleanly, like Ctrl-C (only possible from the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, lambda signum, frame: stop_event.set())


def _print_summary(summary: dict[str, Any]) -> None:
    fps = summary.get("fps")
    print(
        f"processed {summary['frames_processed']} frames in {summary['elapsed_s']:.1f} s "
        f"({fps:.1f} fps), stopped by {summary['stopped_by']}"
        if isinstance(fps, float) and not math.isnan(fps)
        else f"processed {summary['frames_processed']} frames, stopped by {summary['stopped_by']}"
    )
    for source in summary["sources"]:
        print(
            f"source {source['source_id']}: {source['frames_read']} frames read, "
            f"{source['frames_dropped']} dropped"
        )
    enrolled = (summary.get("model") or {}).get("reference")
    for track in summary["tracks"]:
        p_fake = "--" if track["p_fake"] is None else f"{track['p_fake']:.2f}"
        reference = ""
        if enrolled is not None and "reference" in track:
            match = track["reference"]
            reference = (
                f"; {REFERENCE_WORDS.get(match['verdict'], match['verdict'])} {enrolled['name']} "
                f"(inner {match['inner_sim']:.2f}, outer {match['outer_sim']:.2f})"
            )
        print(
            f"track {track['source_id']}/{track['track_id']}: {track['verdict']} p_fake {p_fake} "
            f"({track['frames']} frames, {track['frames_scored']} scored){reference}"
        )
    if not summary["tracks"]:
        print("no face was tracked")
