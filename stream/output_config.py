"""Settings of a run's outputs (the ``output`` section of the app config)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OutputConfig:
    """Where results go; the ``deepwatch run`` flags override the paths.

    Attributes:
        show: show the annotated video in a window.
        video_path: annotated video file to write (.mp4, .avi, ...); None for none.
        events_path: JSON Lines event file to write; None for none.
        summary_path: final JSON summary file to write; None for none.
        video_fps: frame rate written into the annotated video, frames per second; None uses
            the source's own rate when known (files), else 25.
        log_interval_s: seconds between the periodic INFO line (fps, stage latency, drops).
        window_title: title of the window.
    """

    show: bool = False
    video_path: str | None = None
    events_path: str | None = None
    summary_path: str | None = None
    video_fps: float | None = None
    log_interval_s: float = 5.0
    window_title: str = "deepwatch"

    def __post_init__(self) -> None:
        if not isinstance(self.show, bool):
            raise ValueError(f"show must be true or false, got {self.show!r}")
        for name in ("video_path", "events_path", "summary_path"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise ValueError(f"{name} must be a file path or null, got {value!r}")
        if self.video_fps is not None and not (
            isinstance(self.video_fps, int | float) and self.video_fps > 0
        ):
            raise ValueError(f"video_fps must be a number > 0 or null, got {self.video_fps!r}")
        if not (isinstance(self.log_interval_s, int | float) and self.log_interval_s > 0):
            raise ValueError(f"log_interval_s must be a number > 0, got {self.log_interval_s!r}")
        if not isinstance(self.window_title, str) or not self.window_title:
            raise ValueError(f"window_title must be a non-empty string, got {self.window_title!r}")
