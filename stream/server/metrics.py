"""Prometheus metrics of the WebRTC server, in a registry owned by one server instance.

A per-app registry (not prometheus_client's global one) lets several servers run in one process,
as the tests do, without "duplicated timeseries" errors.
"""

from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

# Seconds; the end-to-end goal is p95 <= 250 ms.
LATENCY_BUCKETS_S = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.35, 0.5, 1.0, 2.5)

__all__ = ["CONTENT_TYPE_LATEST", "ServerMetrics"]


class ServerMetrics:
    """Every ``deepwatch_`` metric the server exports.

    Per-session gauges (fps, active tracks) are kept per session and exported as their sum, so a
    session id never becomes a label (unbounded label values would grow the registry forever).
    Thread-safe: sessions update it from the event loop and from their executor threads.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.sessions_active = Gauge(
            "deepwatch_sessions_active", "WebRTC sessions currently open", registry=self.registry
        )
        self.sessions = Counter("deepwatch_sessions", "WebRTC sessions accepted", registry=self.registry)
        self.sessions_rejected = Counter(
            "deepwatch_sessions_rejected",
            "offers refused, by reason",
            ["reason"],
            registry=self.registry,
        )
        self.frames_processed = Counter(
            "deepwatch_frames_processed", "frames run through the pipeline", registry=self.registry
        )
        self.frames_dropped = Counter(
            "deepwatch_frames_dropped",
            "frames the pipeline never saw: replaced by a newer one, or shown while it was busy",
            registry=self.registry,
        )
        self.fps = Gauge(
            "deepwatch_fps", "frames processed per second, summed over sessions", registry=self.registry
        )
        self.latency = Histogram(
            "deepwatch_latency_seconds",
            "frame arrival at the server to its scores ready (inference path)",
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.video_latency = Histogram(
            "deepwatch_video_latency_seconds",
            "frame arrival at the server to annotated frame ready to send (display path)",
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.active_tracks = Gauge(
            "deepwatch_active_tracks", "faces tracked now, summed over sessions", registry=self.registry
        )
        self.alerts = Counter("deepwatch_alerts", "alert events raised", registry=self.registry)
        self.bad_requests = Counter(
            "deepwatch_bad_requests",
            "API requests answered with a 4xx status",
            ["status"],
            registry=self.registry,
        )
        self._lock = threading.Lock()
        self._fps_by_session: dict[str, float] = {}
        self._tracks_by_session: dict[str, int] = {}

    def set_session_fps(self, session_id: str, fps: float) -> None:
        with self._lock:
            self._fps_by_session[session_id] = fps
            self.fps.set(sum(self._fps_by_session.values()))

    def set_session_tracks(self, session_id: str, active_tracks: int) -> None:
        with self._lock:
            self._tracks_by_session[session_id] = active_tracks
            self.active_tracks.set(sum(self._tracks_by_session.values()))

    def forget_session(self, session_id: str) -> None:
        """Drop a closed session's share of the summed gauges."""
        with self._lock:
            self._fps_by_session.pop(session_id, None)
            self._tracks_by_session.pop(session_id, None)
            self.fps.set(sum(self._fps_by_session.values()))
            self.active_tracks.set(sum(self._tracks_by_session.values()))

    def render(self) -> bytes:
        """The Prometheus text exposition of this registry."""
        return generate_latest(self.registry)
