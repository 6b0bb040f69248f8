"""Outputs of a run: an OpenCV window, an annotated video file or photos, JSONL events, a webhook."""

from stream.sinks.events import EventsSink, event_record, write_summary
from stream.sinks.photos import PhotoSink
from stream.sinks.sink import Sink
from stream.sinks.video_file import VideoFileSink
from stream.sinks.webhook import WebhookNotifier, WebhookSink
from stream.sinks.window import WindowSink

__all__ = [
    "EventsSink",
    "PhotoSink",
    "Sink",
    "VideoFileSink",
    "WebhookNotifier",
    "WebhookSink",
    "WindowSink",
    "event_record",
    "write_summary",
]
