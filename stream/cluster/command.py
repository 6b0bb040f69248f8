"""``deepwatch run SRC ... --ray local|ADDRESS``: the run command's cluster path.

Sources are named and checked on the driver (a misspelt spec fails before Ray starts), then
opened by their actors on the nodes. The outputs (annotated video of the first source, events,
summary, webhook) stay on the driver.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.reference import ReferenceError
from stream.config import AppConfig, with_model
from stream.output_config import OutputConfig
from stream.sinks import EventsSink, Sink, VideoFileSink, WebhookSink, write_summary
from stream.sources import SourceError
from stream.sources.spec import make_grabber

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The cluster options of ``deepwatch run``."""
    parser.add_argument(
        "--ray",
        metavar="local|ADDRESS",
        help="run each source as a Ray actor and the encoder as a shared pool: 'local' starts Ray "
        "on this machine, else a cluster address (needs pip install 'deepwatch[ray]')",
    )
    parser.add_argument(
        "--ray-encoders", type=int, default=1, metavar="N", help="encoder actors in the shared pool (--ray)"
    )
    parser.add_argument(
        "--ray-gpus",
        type=float,
        default=0.0,
        metavar="G",
        help="GPUs per encoder actor; > 0 places them on GPU nodes and runs the encoder on cuda (--ray)",
    )
    parser.add_argument(
        "--ray-max-restarts",
        type=int,
        default=3,
        metavar="N",
        help="times a stream's actor is restarted after it dies (--ray)",
    )
    parser.add_argument(
        "--ray-stream-nice",
        type=int,
        default=4,
        metavar="N",
        help="nice levels the stream actors go below the encoder pool (0..19), so that on a node they "
        "share with it frames drop before faces go unscored (--ray)",
    )


def ray_installed() -> bool:
    return importlib.util.find_spec("ray") is not None


def stream_specs(
    specs: list[str], config: AppConfig, *, realtime: bool, loop: bool, images_for: str | None
) -> list[Any]:
    """One ``StreamSpec`` per source string, with unique ids (as the in-process run names them).

    Raises ``SourceError`` for a spec that names nothing usable.
    """
    from stream.cluster.stream_worker import StreamSpec

    streams = []
    seen: dict[str, int] = {}
    for spec in specs:
        name = make_grabber(spec, config.source, loop=loop).name
        count = seen.get(name, 0)
        seen[name] = count + 1
        source_id = f"{name}#{count}" if count else name
        streams.append(
            StreamSpec(
                spec=spec,
                source_id=source_id,
                source_config=config.source,
                realtime=realtime,
                loop=loop,
                want_images=source_id == images_for,
            )
        )
    return streams


def run_on_ray(
    args: argparse.Namespace,
    config: AppConfig,
    output: OutputConfig,
    specs: list[str],
    *,
    print_summary: Callable[[dict[str, Any]], None],
    fail: Callable[[str, int], int],
) -> int:
    """Run on Ray and report like the in-process run; returns the exit code (0, 1, or 2 for usage)."""
    from stream.cluster.driver import ClusterOptions, ClusterRun, connect
    from stream.cluster.encoder_pool import PoolOptions
    from stream.cluster.stages import AppStages

    config = with_model(config, args.checkpoint, args.reference)
    if not ray_installed():
        return fail("--ray needs Ray: pip install 'deepwatch[ray]'", 1)
    if output.show:
        return fail("--show is not available with --ray (use --out to record the first source)", 2)
    try:
        options = ClusterOptions(
            address=args.ray,
            max_restarts=args.ray_max_restarts,
            stream_nice=args.ray_stream_nice,
            pool=PoolOptions(size=args.ray_encoders, num_gpus=args.ray_gpus),
        )
    except ValueError as error:
        return fail(str(error), 2)
    try:
        first_id = make_grabber(specs[0], config.source, loop=args.loop).name
        streams = stream_specs(
            specs,
            config,
            realtime=args.realtime,
            loop=args.loop,
            images_for=first_id if output.video_path else None,
        )
    except SourceError as error:
        return fail(str(error), 1)
    try:
        photos = reference_photos(config.model.reference)
    except ReferenceError as error:
        return fail(str(error), 1)
    try:
        sinks = _make_sinks(output, config, specs[0], first_id)
    except (OSError, ValueError) as error:
        return fail(f"cannot create an output: {error}", 1)
    crowded = crowded_local_warning(options.address, len(streams), os.cpu_count() or 1)
    if crowded:
        logger.warning("%s", crowded)
    # Ray installs its own SIGTERM handler when it connects: connect first, then put ours back on top.
    connect(
        options.address,
        local_cpus=len(streams) * options.stream_num_cpus + options.pool.size * options.pool.num_cpus,
    )
    stop_event = threading.Event()
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, lambda signum, frame: stop_event.set())
    try:
        outcome = ClusterRun(
            streams,
            AppStages(config, photos),
            sinks,
            options,
            stop_event=stop_event,
            log_interval_s=output.log_interval_s,
        ).run()
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    summary = {"ray": args.ray, **outcome.summary}
    if output.summary_path:
        write_summary(output.summary_path, summary)
        logger.info("summary written to %s", output.summary_path)
    print_summary(summary)
    for error_line in outcome.errors:
        print(f"deepwatch run: error: {error_line}", file=sys.stderr)
    return 1 if outcome.errors else 0


def crowded_local_warning(address: str, streams: int, cpus: int) -> str | None:
    """What to tell someone who runs more than two streams a core through a local Ray instance, or
    None. Each stream is then a process with its own detector, and the shared encoder competes with
    all of them (docs/cluster.md, 2 cores: at 4 streams Ray was within 20 % of one process; at 8
    it encoded 148 samples in 30 s against 330, and some faces got no score)."""
    if address != "local" or streams <= 2 * cpus:
        return None
    return (
        f"{streams} streams on {cpus} CPU cores through a local Ray instance: each stream runs its own "
        "process and detector and the encoder competes with all of them, so faces get fewer scores "
        "than in one process; on one machine, run without --ray (see docs/cluster.md)"
    )


def reference_photos(paths: tuple[str, ...]) -> tuple[tuple[str, bytes], ...]:
    """``(name, bytes)`` of each enrolment photo or clip, each checked to decode here, on the
    driver, so a wrong file fails before any actor starts (faces are found on the workers)."""
    from stream.live.reference import (
        decode_reference_photo,
        is_reference_clip,
        open_reference_clip,
        photo_bytes,
    )

    photos = []
    for raw in paths:
        path = Path(raw)
        if is_reference_clip(path):
            open_reference_clip(path)  # exists, not too large, decodes
            photos.append((path.name, photo_bytes(path)))
        else:
            data = photo_bytes(path)
            decode_reference_photo(data, path.name)
            photos.append((path.name, data))
    return tuple(photos)


def _make_sinks(output: OutputConfig, config: AppConfig, first_spec: str, first_id: str) -> list[Sink]:
    sinks: list[Sink] = []
    if output.video_path:
        fps = output.video_fps or _file_fps(first_spec) or 25.0
        sinks.append(VideoFileSink(output.video_path, fps=fps, source_id=first_id))
    if output.events_path:
        sinks.append(EventsSink(output.events_path))
    alerts, url = config.alerts, config.alerts.webhook_url
    if url:
        sinks.append(WebhookSink.for_url(url, alerts.webhook_timeout_s, alerts.webhook_queue_size))
    return sinks


def _file_fps(spec: str) -> float | None:
    import cv2

    if not Path(spec).is_file():
        return None
    capture = cv2.VideoCapture(spec)
    try:
        fps = capture.get(cv2.CAP_PROP_FPS)
    finally:
        capture.release()
    return float(fps) if fps and 0 < fps < 1000 else None
