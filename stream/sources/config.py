"""Settings shared by all sources (the ``source`` section of the app config)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class SourceConfig:
    """How sources are opened and read.

    Attributes:
        open_timeout_s: network streams: give up opening after this many seconds.
        read_timeout_s: network streams: a stream silent this long counts as lost, seconds.
        reconnect_initial_backoff_s: first wait before reconnecting a lost live source, seconds.
        reconnect_max_backoff_s: the wait doubles per failure up to this, seconds.
        reconnect_max_attempts: consecutive failed reconnections before giving up (0 = never).
        file_queue_frames: frames buffered ahead when reading a file as fast as possible.
        screen_max_fps: screen capture rate limit, frames per second.
        image_folders: how ``deepwatch run`` reads a folder of images: ``photos`` (each image
            on its own, every face scored as a still, as a single image file always is) or
            ``frames`` (the frames of one video, tracked, at ``image_folder_fps``).
        image_folder_fps: frame rate assigned to an image folder's images in ``frames`` mode,
            frames per second.
    """

    open_timeout_s: float = 5.0
    read_timeout_s: float = 5.0
    reconnect_initial_backoff_s: float = 0.5
    reconnect_max_backoff_s: float = 10.0
    reconnect_max_attempts: int = 0
    file_queue_frames: int = 8
    screen_max_fps: float = 30.0
    image_folders: Literal["photos", "frames"] = "photos"
    image_folder_fps: float = 1.0

    def __post_init__(self) -> None:
        for name in (
            "open_timeout_s",
            "read_timeout_s",
            "reconnect_initial_backoff_s",
            "screen_max_fps",
            "image_folder_fps",
        ):
            value = getattr(self, name)
            if not value > 0:
                raise ValueError(f"{name} must be > 0, got {value}")
        if self.reconnect_max_backoff_s < self.reconnect_initial_backoff_s:
            raise ValueError(
                f"reconnect_max_backoff_s must be >= reconnect_initial_backoff_s "
                f"({self.reconnect_initial_backoff_s}), got {self.reconnect_max_backoff_s}"
            )
        if self.reconnect_max_attempts < 0:
            raise ValueError(f"reconnect_max_attempts must be >= 0, got {self.reconnect_max_attempts}")
        if self.file_queue_frames < 1:
            raise ValueError(f"file_queue_frames must be >= 1, got {self.file_queue_frames}")
