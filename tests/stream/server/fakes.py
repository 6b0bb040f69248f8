"""Small fakes for the server tests: a pipeline whose score is the frame's brightness, a client
peer built with aiortc, and a server-side source that produces solid frames."""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
from collections.abc import Sequence

import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription, VideoStreamTrack
from av import VideoFrame

from stream.contracts import Event, FaceResult, Frame, FrameResult


class BrightnessPipeline:
    """One "face" in the middle of the frame whose p_fake is the frame's mean brightness / 255, so
    a test can check that the frames the client sent are what the pipeline saw."""

    def __init__(
        self,
        source_id: str,
        *,
        alert_above: float = 2.0,
        delay_s: float = 0.0,
        fail_at: int | None = None,
        reference_alerts: bool = False,
    ) -> None:
        self.source_id = source_id
        self._reference_alerts = reference_alerts
        self._delay_s = delay_s
        self._fail_at = fail_at
        self.frames: list[int] = []
        self.thread_ids: set[int] = set()
        self.finished = threading.Event()
        self._alert_above = alert_above

    def process(self, frame: Frame) -> FrameResult:
        self.thread_ids.add(threading.get_ident())
        self.frames.append(frame.index)
        if self._fail_at is not None and len(self.frames) >= self._fail_at:
            raise RuntimeError("model exploded")
        if self._delay_s:
            time.sleep(self._delay_s)
        height, width = frame.image.shape[:2]
        p_fake = float(frame.image.mean()) / 255.0
        face = FaceResult(
            track_id=1,
            box_xyxy=np.array([width * 0.25, height * 0.25, width * 0.75, height * 0.75], dtype=np.float32),
            confirmed=True,
            p_fake=p_fake,
            ready=len(self.frames) >= 3,
            verdict="FAKE" if p_fake > 0.5 else "REAL",
            history=(p_fake,) * min(len(self.frames), 8),
            frames_scored=len(self.frames),
        )
        events: tuple[Event, ...] = ()
        if p_fake > self._alert_above:
            data: dict[str, object] = {"reason": "score", "p_fake": p_fake}
            if self._reference_alerts:
                # As stream.live.bookkeeping words an enrolment alert.
                match = {"inner_sim": 0.1, "outer_sim": 0.9, "verdict": "head_only", "samples": 8}
                data = {"reason": "reference", "p_fake": p_fake, "reference": match}
            events = (Event("alert", frame.source_id, 1, frame.timestamp_s, time.time(), data),)
        return FrameResult(frame=frame, faces=(face,), events=events, timings_ms={"total": 1.0})

    def finish(self) -> Sequence[Event]:
        self.finished.set()
        return []


class PipelineRecorder:
    """A pipeline factory that remembers what it built."""

    def __init__(
        self,
        alert_above: float = 2.0,
        delay_s: float = 0.0,
        fail_at: int | None = None,
        reference_alerts: bool = False,
    ) -> None:
        self.built: list[BrightnessPipeline] = []
        self._options = {
            "alert_above": alert_above,
            "delay_s": delay_s,
            "fail_at": fail_at,
            "reference_alerts": reference_alerts,
        }

    def __call__(self, source_id: str) -> BrightnessPipeline:
        pipeline = BrightnessPipeline(source_id, **self._options)  # type: ignore[arg-type]
        self.built.append(pipeline)
        return pipeline


class SolidTrack(VideoStreamTrack):
    """A 30 fps camera of solid grey frames at ``level`` (0-255), 320 x 240."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    async def recv(self) -> VideoFrame:
        pts, time_base = await self.next_timestamp()
        image = np.full((240, 320, 3), self.level, dtype=np.uint8)
        frame = VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts = pts
        frame.time_base = time_base
        return frame


class ClientPeer:
    """The page's side of a session, played by aiortc: sends a track (or only receives), collects
    data channel messages and the frames of the annotated track."""

    def __init__(self, track: VideoStreamTrack | None) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.channel = self.pc.createDataChannel("deepwatch")
        self.messages: list[dict] = []
        self.received_frames: list[np.ndarray] = []
        self.frames_received = 0
        self.channel.on("message", lambda raw: self.messages.append(json.loads(raw)))
        self._tasks: list[asyncio.Task[None]] = []
        if track is not None:
            self.pc.addTransceiver(track, direction="sendrecv")
        else:
            self.pc.addTransceiver("video", direction="recvonly")

        @self.pc.on("track")
        def on_track(remote) -> None:  # type: ignore[no-untyped-def]
            self._tasks.append(asyncio.ensure_future(self._collect(remote)))

    async def _collect(self, remote) -> None:  # type: ignore[no-untyped-def]
        try:
            while True:
                frame = await remote.recv()
                self.frames_received += 1
                if len(self.received_frames) < 50:
                    self.received_frames.append(frame.to_ndarray(format="rgb24"))
        except Exception:
            return

    async def offer_body(self, source: str | None = None) -> dict:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return {"type": "offer", "sdp": self.pc.localDescription.sdp, "source": source}

    async def accept(self, answer: dict) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))

    def scores(self) -> list[dict]:
        return [m for m in self.messages if m.get("type") == "scores"]

    async def wait_for(self, predicate, timeout_s: float = 20.0) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout_s
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout_s} s; {len(self.messages)} messages so far")
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await self.pc.close()


class SolidSource:
    """A live server-side source (``stream.sources.Source``) producing solid frames at ~30 fps."""

    live = True

    def __init__(self, level: int, *, fail_on_start: bool = False) -> None:
        self.source_id = f"solid-{level}"
        self.level = level
        self.fail_on_start = fail_on_start
        self.started = False
        self.stopped = threading.Event()
        self._origin = time.monotonic()
        self._index = 0

    def start(self) -> None:
        from stream.sources.source import SourceError

        if self.fail_on_start:
            raise SourceError(f"{self.source_id}: cannot connect")
        self.started = True
        self._origin = time.monotonic()

    def read(self, timeout_s: float | None = None) -> Frame | None:
        if self.stopped.is_set():
            return None
        time.sleep(1 / 30)
        self._index += 1
        image = np.full((240, 320, 3), self.level, dtype=np.uint8)
        return Frame(
            image=image,
            index=self._index,
            timestamp_s=time.monotonic() - self._origin,
            source_id=self.source_id,
        )

    def stop(self) -> None:
        self.stopped.set()

    @property
    def ended(self) -> bool:
        return self.stopped.is_set()

    @property
    def frames_dropped(self) -> int:
        return 0

    @property
    def frames_read(self) -> int:
        return self._index

    @property
    def clock_origin_s(self) -> float:
        return self._origin


def finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)
