"""One browser connected over WebRTC: its peer connection, its pipeline and the loop between them.

Two paths per session, so that slow inference never slows the video:

- display: every frame the feed hands out (the newest; older ones are dropped and counted) is
  converted and drawn with the most recent results on the server's display executor, and goes
  back at once on ``AnnotatedVideoTrack`` (newest only);
- inference: whenever the pipeline is idle, the frame just taken is also given to it, on the
  server's inference executor (one thread shared by all sessions: the models are shared, and a
  2-core machine gains nothing from two inferences at once). Its results replace the ones drawn
  and go to the page on the data channel (skipped while the channel's send buffer is full).

Nothing runs on the event loop and nothing queues without bound, so latency cannot grow. The
boxes drawn on a frame come from the newest frame inference has finished, at most one inference
time older than the frame (``server_latency_ms`` in each message).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Executor
from typing import Any, Protocol

import numpy as np
from aiortc import RTCConfiguration, RTCDataChannel, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack
from aiortc.sdp import SessionDescription
from av import VideoFrame

from stream.contracts import Event, FaceResult, Frame, FrameResult
from stream.live.overlay import NOT_READY_RGB, PALETTE_RGB, OverlayStatus, draw_overlay
from stream.server.feeds import FeedEnded, FrameFeed, SourceFeed, TrackFeed
from stream.server.messages import (
    Offer,
    error_message,
    frame_message,
    parse_client_message,
    pong_message,
)
from stream.server.metrics import ServerMetrics
from stream.server.outgoing import AnnotatedVideoTrack
from stream.sources.source import Source

logger = logging.getLogger(__name__)

# Scores are small; a send buffer this full means the page stopped reading, so skip, don't queue.
MAX_CHANNEL_BUFFERED_BYTES = 256 * 1024
# Smoothing of the per-session fps estimate (weight of the newest frame interval).
_FPS_SMOOTHING = 0.1
# Smoothing of the per-session video-path latency (weight of the newest frame).
_LATENCY_SMOOTHING = 0.1


class FramePipeline(Protocol):
    """What a session needs from the pipeline (``stream.live.pipeline.Pipeline``): ``process`` once per
    frame, in frame order, one call at a time; ``finish`` once at the end (it ends the tracks; the
    session is gone, so their events are only logged)."""

    def process(self, frame: Frame) -> FrameResult: ...

    def finish(self) -> Sequence[Event]: ...


PipelineFactory = Callable[[str], FramePipeline]
"""Builds a fresh pipeline for one session, given the session's source id (runs on its thread)."""

Annotator = Callable[[FrameResult, float, int], np.ndarray]
"""``annotate(result, fps, frames_dropped)``: a copy of ``result.frame.image`` (H x W x 3 uint8
RGB) with the results drawn on it; runs on the session's executor thread."""


def verdict_colour(face: FaceResult) -> tuple[int, int, int]:
    """Box colour of a face on the page's video: its verdict's (REAL green, UNSURE yellow, FAKE
    red; grey until scored), so the box agrees with the label whatever the threshold. The
    colours are the overlay palette's ends and middle."""
    if not face.ready or math.isnan(face.p_fake):
        return NOT_READY_RGB
    return VERDICT_RGB.get(face.verdict, NOT_READY_RGB)


VERDICT_RGB = {"REAL": PALETTE_RGB[0], "UNSURE": PALETTE_RGB[len(PALETTE_RGB) // 2], "FAKE": PALETTE_RGB[-1]}


def overlay_annotator(threshold: float = 0.5) -> Annotator:
    """The standard annotator: ``stream.live.overlay.draw_overlay`` with the session's fps and drops,
    boxes coloured by verdict and ``threshold`` marked in each sparkline."""

    def annotate(result: FrameResult, fps: float, frames_dropped: int) -> np.ndarray:
        status = OverlayStatus(fps=fps, dropped_frames=frames_dropped)
        return draw_overlay(result, status, threshold, box_colour=verdict_colour)

    return annotate


class OfferRejected(ValueError):
    """The offer is well-formed SDP but not something this server answers (a 4xx, not a crash)."""


def check_bundle(sdp: str) -> None:
    """Raise ``OfferRejected`` if the offer's BUNDLE group starts with a mid no media section has.

    aiortc would bundle every listed section onto that missing section's transport (None) and
    fail later, inside answer creation and in a background task, instead of refusing the offer.
    """
    description = SessionDescription.parse(sdp)
    # The sections aiortc builds a transport for.
    mids = {media.rtp.muxId for media in description.media if media.kind in ("audio", "video", "application")}
    for group in description.group:
        if group.semantic == "BUNDLE" and group.items and group.items[0] not in mids:
            raise OfferRejected(
                f"offer's BUNDLE group starts with mid {group.items[0]!r:.40}, which no media section has"
            )


class PeerSession:
    """One WebRTC session. ``negotiate`` once, then it runs until the peer leaves, its input ends,
    no frame arrives for ``idle_timeout_s``, or ``close`` is called.

    Args:
        session_id: unique id, used in logs and in ``DELETE /api/sessions/{id}``.
        pipeline_factory: builds this session's pipeline (on the executor).
        annotate: draws results on the frame (on the executor).
        executor: runs every pipeline call of this session; the server's inference executor.
        display_executor: converts and draws frames; the server's display executor.
        metrics: the server's metrics.
        idle_timeout_s: a peer that sends no frame for this long is considered gone.
        on_closed: called once on the event loop after everything is released.
    """

    def __init__(
        self,
        session_id: str,
        *,
        pipeline_factory: PipelineFactory,
        annotate: Annotator,
        executor: Executor,
        display_executor: Executor,
        metrics: ServerMetrics,
        idle_timeout_s: float,
        on_closed: Callable[[PeerSession], Awaitable[None] | None],
    ) -> None:
        if idle_timeout_s <= 0:
            raise ValueError(f"idle_timeout_s must be > 0, got {idle_timeout_s}")
        self.session_id = session_id
        self.source_id = f"webrtc-{session_id}"
        self.created_monotonic_s = time.monotonic()
        self._pipeline_factory = pipeline_factory
        self._annotate = annotate
        self._metrics = metrics
        self._idle_timeout_s = idle_timeout_s
        self._on_closed = on_closed
        # Host candidates only: the default STUN server is on the internet, which we never use.
        self._pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self._executor = executor
        self._display_executor = display_executor
        self._inference: asyncio.Future[None] | None = None
        self._latest_result: FrameResult | None = None
        self._latest_result_arrival_s = 0.0
        self.frames_displayed = 0
        self.frames_not_analysed = 0
        self._out = AnnotatedVideoTrack()
        self._channel: RTCDataChannel | None = None
        self._remote_tracks: list[MediaStreamTrack] = []
        self._feed: FrameFeed | None = None
        self._pipeline: FramePipeline | None = None
        self._task: asyncio.Task[None] | None = None
        self._closer: asyncio.Task[None] | None = None
        self._closing = False
        self.closed = asyncio.Event()
        self.close_reason = ""
        self.frames_processed = 0
        self.messages_sent = 0
        self.messages_skipped = 0
        self.fps = 0.0
        # The server's share of camera-to-screen latency: frame arrival to annotated frame sent
        # back (smoothed), reported beside every score so the page can show it.
        self.video_latency_ms: float | None = None
        self._last_done_s: float | None = None
        self._interval_s: float | None = None
        self._dropped_reported = 0

    @property
    def connection_state(self) -> str:
        return str(self._pc.connectionState)

    def describe(self) -> dict[str, Any]:
        """A JSON-able snapshot for ``GET /api/sessions``."""
        return {
            "session_id": self.session_id,
            "source_id": self.source_id,
            "connection_state": self.connection_state,
            "frames_processed": self.frames_processed,
            "frames_displayed": self.frames_displayed,
            "frames_dropped": self.frames_dropped,
            "fps": round(self.fps, 2),
            "age_s": round(time.monotonic() - self.created_monotonic_s, 1),
        }

    async def negotiate(self, offer: Offer, source: Source | None) -> RTCSessionDescription:
        """Answer ``offer``. With ``source`` (already started; the session stops it) the page only
        receives; without, the page must send exactly one video track, which is analysed.

        Raises ``OfferRejected`` for offers this server does not serve, and whatever aiortc raises
        for SDP it cannot parse; the caller closes the session on any error.
        """
        pc = self._pc
        if source is not None:
            self.source_id = source.source_id
            # Owned from here on, so close() stops it even if negotiation fails.
            self._feed = SourceFeed(source)

        @pc.on("datachannel")
        def on_datachannel(channel: RTCDataChannel) -> None:
            if self._channel is not None:
                channel.close()
                return
            self._channel = channel
            channel.on("message", self._on_message)

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            self._remote_tracks.append(track)

        @pc.on("connectionstatechange")
        async def on_connectionstatechange() -> None:
            logger.info("session %s: connection %s", self.session_id, pc.connectionState)
            if pc.connectionState in ("failed", "closed"):
                await self.close(f"connection {pc.connectionState}")

        check_bundle(offer.sdp)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer.sdp, type="offer"))
        kinds = [transceiver.kind for transceiver in pc.getTransceivers()]
        if kinds != ["video"]:
            raise OfferRejected(f"offer must have exactly one video section and no audio, got {kinds}")
        if source is None:
            if len(self._remote_tracks) != 1:
                raise OfferRejected("offer sends no video track: share a camera, a screen, or name a source")
            self._feed = TrackFeed(self._remote_tracks[0], self.source_id)
        elif self._remote_tracks:
            raise OfferRejected("an offer for a server-side source must only receive video (recvonly)")
        pc.addTrack(self._out)
        await pc.setLocalDescription(await pc.createAnswer())
        self._task = asyncio.create_task(self._run(), name=f"session-{self.session_id}")
        return pc.localDescription

    def _on_message(self, raw: str | bytes) -> None:
        try:
            message = parse_client_message(raw)
        except ValueError as error:
            self._send(error_message(str(error)))
            return
        if message.type == "ping":
            self._send(pong_message(message.client_time_ms, time.time()))

    def _send(self, text: str) -> bool:
        channel = self._channel
        if (
            channel is None
            or channel.readyState != "open"
            or channel.bufferedAmount > MAX_CHANNEL_BUFFERED_BYTES
        ):
            self.messages_skipped += 1
            return False
        channel.send(text)
        self.messages_sent += 1
        return True

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        reason = "stopped"
        try:
            await loop.run_in_executor(self._executor, self._build_pipeline)
            assert self._feed is not None  # set by negotiate before the task starts
            while True:
                pending = await self._feed.next(self._idle_timeout_s)
                if pending is None:
                    reason = f"no frame for {self._idle_timeout_s:g} s"
                    break
                frame = await loop.run_in_executor(self._display_executor, pending.to_frame)
                if self._inference is not None and self._inference.done():
                    # Raises a pipeline failure here, where it ends the session.
                    self._inference.result()
                    self._inference = None
                if self._inference is None:
                    self._inference = asyncio.ensure_future(self._infer(frame, pending.arrival_monotonic_s))
                else:
                    self.frames_not_analysed += 1
                video_frame = await loop.run_in_executor(self._display_executor, self._draw, frame)
                self._out.publish(video_frame)
                self.frames_displayed += 1
                video_latency_s = time.monotonic() - pending.arrival_monotonic_s
                self._metrics.video_latency.observe(video_latency_s)
                self.video_latency_ms = (
                    video_latency_s * 1000
                    if self.video_latency_ms is None
                    else (1 - _LATENCY_SMOOTHING) * self.video_latency_ms
                    + _LATENCY_SMOOTHING * video_latency_s * 1000
                )
        except FeedEnded as ended:
            reason = str(ended)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            # A pipeline failure ends this session only; the server keeps serving the others.
            logger.exception("session %s failed", self.session_id)
            reason = f"failed: {error}"
            self._send(error_message(f"processing failed: {error}"))
        # Closing cancels this task, so it must run as its own task (kept referenced until done).
        self._closer = loop.create_task(self.close(reason))

    def _build_pipeline(self) -> None:
        """Executor thread. Stores the pipeline here, not via the awaited result, so that a close
        during a slow build still finds and closes it."""
        self._pipeline = self._pipeline_factory(self.source_id)

    def _close_pipeline(self) -> None:
        """Executor thread, queued by ``close`` after any frame still being processed."""
        if self._pipeline is None:
            return
        pipeline, self._pipeline = self._pipeline, None
        try:
            events = pipeline.finish()
        except Exception:
            # Runs after the session is gone: nobody else could report it.
            logger.exception("session %s: finishing the pipeline failed", self.session_id)
            return
        for event in events:
            logger.info("session %s: %s track %d %s", self.session_id, event.kind, event.track_id, event.data)

    @property
    def frames_dropped(self) -> int:
        """Frames the pipeline never saw: dropped by the feed, or shown while it was busy."""
        feed_dropped = self._feed.frames_dropped if self._feed is not None else 0
        return feed_dropped + self.frames_not_analysed

    def _draw(self, frame: Frame) -> VideoFrame:
        """Display executor: ``frame`` with the newest results drawn on it, as a VideoFrame."""
        latest = self._latest_result
        faces = latest.faces if latest is not None else ()
        timings = latest.timings_ms if latest is not None else {}
        shown = FrameResult(frame=frame, faces=faces, events=(), timings_ms=timings)
        annotated = self._annotate(shown, self.fps, self.frames_dropped)
        return VideoFrame.from_ndarray(np.ascontiguousarray(annotated), format="rgb24")

    async def _infer(self, frame: Frame, arrival_monotonic_s: float) -> None:
        assert self._pipeline is not None
        result = await asyncio.get_running_loop().run_in_executor(
            self._executor, self._pipeline.process, frame
        )
        self._latest_result = result
        self._latest_result_arrival_s = arrival_monotonic_s
        self._after_inference(arrival_monotonic_s, result)

    def _after_inference(self, arrival_monotonic_s: float, result: FrameResult) -> None:
        now = time.monotonic()
        latency_s = now - arrival_monotonic_s
        if self._last_done_s is not None:
            interval = max(now - self._last_done_s, 1e-6)
            # Smooth the interval, not its inverse: a mean of 1/interval overstates the rate.
            self._interval_s = (
                interval
                if self._interval_s is None
                else (1 - _FPS_SMOOTHING) * self._interval_s + _FPS_SMOOTHING * interval
            )
            self.fps = 1.0 / self._interval_s
        self._last_done_s = now
        self.frames_processed += 1
        dropped = self.frames_dropped
        metrics = self._metrics
        metrics.frames_processed.inc()
        if dropped > self._dropped_reported:
            metrics.frames_dropped.inc(dropped - self._dropped_reported)
            self._dropped_reported = dropped
        metrics.latency.observe(latency_s)
        metrics.set_session_fps(self.session_id, self.fps)
        metrics.set_session_tracks(self.session_id, sum(1 for face in result.faces if face.confirmed))
        alerts = sum(1 for event in result.events if event.kind == "alert")
        if alerts:
            metrics.alerts.inc(alerts)
        self._send(
            frame_message(
                result,
                server_latency_ms=latency_s * 1000,
                fps=self.fps,
                frames_dropped=dropped,
                server_video_latency_ms=self.video_latency_ms,
            )
        )

    async def close(self, reason: str) -> None:
        """Release everything: the loop task, the feed (and its source), the executor and the
        pipeline, the tracks and the peer connection. Idempotent."""
        if self._closing:
            await self.closed.wait()
            return
        self._closing = True
        self.close_reason = reason
        logger.info("session %s closing: %s", self.session_id, reason)
        task = self._task
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        if self._inference is not None and not self._inference.done():
            # The pipeline call itself finishes on its thread; finish() is queued behind it.
            self._inference.cancel()
        if self._feed is not None:
            await self._feed.close()
        self._out.stop()
        for track in self._remote_tracks:
            track.stop()
        try:
            await self._pc.close()
        except Exception as error:
            # aiortc cannot always take apart a connection built from a strange offer; the
            # session must still end, or it would hold its slot (and server shutdown) forever.
            logger.warning(
                "session %s: the peer connection did not close cleanly: %r", self.session_id, error
            )
        self._executor.submit(self._close_pipeline)
        self._metrics.forget_session(self.session_id)
        self.closed.set()
        outcome = self._on_closed(self)
        if outcome is not None:
            await outcome
