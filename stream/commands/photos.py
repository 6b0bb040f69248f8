"""``deepwatch run PHOTO ...``: score every face of photos (image files, folders of photos).

A photo is not a video: ``stream.live.stills`` scores each face of each photo on its own, as one
window of copies of its features (how the model was calibrated on real photos). ``deepwatch run``
hands its sources here when every one of them names photos (``stream.sources.photos_in``); a folder
is read as photos unless ``source.image_folders`` is ``frames``.
"""

from __future__ import annotations

import argparse
import logging
import math
import signal
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stream.commands import EXIT_FAILED, EXIT_OK, EXIT_USAGE, REFERENCE_WORDS, run_failed
from stream.config import AppConfig
from stream.output_config import OutputConfig
from stream.sinks import EventsSink, PhotoSink, Sink, write_summary
from stream.sinks.sink import close_sinks
from stream.sources import SourceError, photos_in, read_image

if TYPE_CHECKING:
    from stream.contracts import FrameResult
    from stream.live.app import PipelineComponents
    from stream.live.stills import PhotoScorer

logger = logging.getLogger(__name__)

# Options of ``deepwatch run`` that only mean something for video, as (attribute, flag).
_VIDEO_ONLY_OPTIONS = (("show", "--show"), ("realtime", "--realtime"), ("loop", "--loop"), ("ray", "--ray"))


@dataclass(frozen=True)
class Photo:
    """One photo to score: its path, the name it goes by, and whether it was named on its own
    (an unreadable one is then an error of the run) or found in a folder (then skipped)."""

    path: Path
    source_id: str
    named: bool


def photo_inputs(specs: list[str], config: AppConfig) -> tuple[list[Photo], list[str]]:
    """The photos ``specs`` name and the specs that are not photos (video sources), in order.

    Raises:
        SourceError: a folder read as photos holds no image.
    """
    photos: list[Photo] = []
    others: list[str] = []
    seen: Counter[str] = Counter()
    for spec in specs:
        paths = photos_in(spec, config.source)
        if not paths:
            others.append(spec)
            continue
        folder = Path(spec.strip().removeprefix("file://")).expanduser()
        # A photo goes by its file name, in a folder by "folder/file" (the folder's own name, also
        # for "."); a folder or file name met again gets "#1", "#2", ... before its suffix, as two
        # video sources of one name get it after theirs: "album#1/x.jpg", "x#1.jpg".
        if folder.is_dir():
            prefix = _tagged(folder.resolve().name or str(folder.resolve()), seen) + "/"
            photos.extend(Photo(path=path, source_id=prefix + path.name, named=False) for path in paths)
        else:
            (path,) = paths
            photos.append(Photo(path=path, source_id=_tagged(path.name, seen), named=True))
    return photos, others


def _tagged(name: str, seen: Counter[str]) -> str:
    """``name``, or with ``#N`` before its suffix when it was seen N times before."""
    count = seen[name]
    seen[name] += 1
    if not count:
        return name
    path = Path(name)
    return f"{path.stem}#{count}{path.suffix}"


def refuse_mixed(photos: list[Photo], others: list[str]) -> str | None:
    """The usage error for photos and video sources in one run, or None."""
    if not photos or not others:
        return None
    return (
        f"{photos[0].path} is a photo and {others[0]!r} is not: score photos and video in separate "
        "runs (or set source.image_folders: frames to read a folder as the frames of one video)"
    )


def run_photos(args: argparse.Namespace, config: AppConfig, output: OutputConfig, photos: list[Photo]) -> int:
    """Score every face of ``photos``; print a line per face, write the outputs; the exit code."""
    for attribute, flag in _VIDEO_ONLY_OPTIONS:
        if getattr(args, attribute, None):
            return run_failed(f"{flag} is for video sources; photos are scored one by one", EXIT_USAGE)
    if config.alerts.webhook_url:
        logger.warning("alerts.webhook_url is for video sources; photos send no webhook")
    if output.video_path and any(_same_file(Path(output.video_path), photo.path) for photo in photos):
        message = f"--out {output.video_path} is one of the photos: it would be overwritten"
        return run_failed(message, EXIT_USAGE)
    if len(photos) == 1:
        # One photo is read before the models load, as a video source is opened first: a missing
        # or corrupt file is reported at once.
        try:
            read_image(photos[0].path)
        except SourceError as error:
            return run_failed(str(error), EXIT_FAILED)
    from stream.live.app import SetupError, load_components
    from stream.live.stills import PhotoScorer

    try:
        components = load_components(config)
    except SetupError as error:
        return run_failed(str(error), EXIT_FAILED)
    sinks: list[Sink] = []
    try:
        if output.video_path:
            out = Path(output.video_path)
            sinks.append(PhotoSink(out, single=len(photos) == 1 and not out.is_dir()))
        if output.events_path:
            sinks.append(EventsSink(output.events_path))
    except (OSError, ValueError) as error:
        close_sinks(sinks)
        components.close()
        return run_failed(f"cannot create an output: {error}", EXIT_FAILED)
    stop = threading.Event()
    previous_sigterm = _stop_on_sigterm(stop)
    started = time.monotonic()
    try:
        run = _score_photos(photos, PhotoScorer(components), sinks, stop, components)
    finally:
        close_sinks(sinks)
        components.close()
        if previous_sigterm is not None:
            signal.signal(signal.SIGTERM, previous_sigterm)
    counts = _counts(run.records)
    summary = {
        "model": components.describe(),
        "mode": "photos",
        "stopped_by": run.stopped_by,
        "elapsed_s": round(time.monotonic() - started, 3),
        "counts": counts,
        "photos": run.records,
    }
    if output.summary_path:
        write_summary(output.summary_path, summary)
        logger.info("summary written to %s", output.summary_path)
    _print_counts(counts, len(photos))
    nothing_read = not counts["read"] and run.stopped_by != "interrupt"
    errors = run.errors or (["no photo could be read"] if nothing_read else [])
    for line in errors:
        print(f"deepwatch run: error: {line}", file=sys.stderr)
    return EXIT_FAILED if errors else EXIT_OK


@dataclass
class _PhotoRun:
    """What scoring the photos gave: a record per photo reached, the errors that fail the run
    (named photos that could not be read, an output that could not be written), and why it
    stopped: ``end``, ``interrupt`` (Ctrl-C or SIGTERM) or ``error`` (an output failed)."""

    records: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    stopped_by: str = "end"


def _score_photos(
    photos: list[Photo],
    scorer: PhotoScorer,
    sinks: list[Sink],
    stop: threading.Event,
    components: PipelineComponents,
) -> _PhotoRun:
    """Score ``photos`` in order until the end, ``stop``, Ctrl-C or an output that fails; every
    photo finished is in the result, so the summary keeps it."""
    from stream.live.overlay import draw_overlay

    run = _PhotoRun()
    enrolled = components.reference.name if components.reference else None
    needs_annotated = any(sink.needs_annotated for sink in sinks)
    threshold = components.threshold
    try:
        for index, photo in enumerate(photos):
            if stop.is_set():
                run.stopped_by = "interrupt"
                break
            try:
                image = read_image(photo.path)
            except SourceError as error:
                if photo.named:
                    run.errors.append(str(error))
                run.records.append(_record(photo, None, str(error)))
                print(f"photo {photo.source_id}: unreadable, {error}")
                continue
            result = scorer.score(image, photo.source_id, index)
            annotated = None
            if needs_annotated:
                annotated = draw_overlay(result, threshold=threshold, hud=False)
            record = _record(photo, result, None)
            try:
                for sink in sinks:
                    sink.write(result, annotated)
            except OSError as error:
                # Scored, but not all of its outputs were written: kept, and said so.
                run.records.append(record | {"output_error": str(error)})
                run.errors.append(f"cannot write an output: {error}")
                run.stopped_by = "error"
                break
            run.records.append(record)
            _print_photo(record, enrolled)
    except KeyboardInterrupt:
        run.stopped_by = "interrupt"
    return run


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and a.samefile(b))
    except OSError:
        return False


def _stop_on_sigterm(stop: threading.Event) -> Any:
    """SIGTERM stops after the photo in hand, like Ctrl-C (only possible from the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())


def _record(photo: Photo, result: FrameResult | None, error: str | None) -> dict[str, Any]:
    record: dict[str, Any] = {"source_id": photo.source_id, "path": str(photo.path), "error": error}
    if result is None:
        return record | {"width": None, "height": None, "faces": []}
    height, width = result.frame.image.shape[:2]
    faces = []
    for face, event in zip(result.faces, result.events, strict=True):
        faces.append({"face": face.track_id, **event.data})
    return record | {"width": width, "height": height, "faces": faces}


def _counts(records: list[dict[str, Any]]) -> dict[str, int]:
    verdicts = Counter(face["verdict"] for record in records for face in record["faces"])
    read = [record for record in records if record["error"] is None]
    return {
        "photos": len(records),
        "read": len(read),
        "unreadable": len(records) - len(read),
        "without_face": sum(1 for record in read if not record["faces"]),
        "faces": sum(verdicts.values()),
        **{verdict: verdicts.get(verdict, 0) for verdict in ("REAL", "FAKE", "UNSURE")},
    }


def _print_photo(record: dict[str, Any], enrolled: str | None) -> None:
    if not record["faces"]:
        print(f"photo {record['source_id']}: no face found")
    for face in record["faces"]:
        p_fake = face["p_fake"]
        text = "--" if p_fake is None or math.isnan(p_fake) else f"{p_fake:.2f}"
        line = f"photo {record['source_id']} face {face['face']}: {face['verdict']} p_fake {text}"
        match = face.get("reference")
        if match is not None and enrolled is not None:
            line += (
                f"; {REFERENCE_WORDS.get(match['verdict'], match['verdict'])} {enrolled} "
                f"(inner {match['inner_sim']:.2f}, outer {match['outer_sim']:.2f})"
            )
        print(line)


def _print_counts(counts: dict[str, int], named: int) -> None:
    reached = "" if counts["photos"] == named else f" of {named} (stopped early)"
    print(
        f"{counts['photos']} photos{reached} ({counts['unreadable']} unreadable, {counts['without_face']} "
        f"without a face), {counts['faces']} faces: {counts['REAL']} REAL, {counts['FAKE']} FAKE, "
        f"{counts['UNSURE']} UNSURE"
    )
