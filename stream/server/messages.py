"""The JSON the server and the page exchange: offers over HTTP, results over the data channel.

Everything coming from the page is untrusted: parsers here check type, shape and size and raise
``ValueError`` saying what was expected and what came, which the server turns into a 4xx answer
(HTTP) or an ``error`` message (data channel).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from stream.contracts import Event, FaceResult, FrameResult

# A real browser offer is 3-12 kB; anything much bigger is not an SDP we want to parse.
MAX_SDP_CHARS = 64 * 1024
# Source names are short identifiers from the config.
MAX_SOURCE_NAME_CHARS = 64
# Page-to-server data channel messages are tiny control messages.
MAX_CLIENT_MESSAGE_CHARS = 4096
CLIENT_MESSAGE_TYPES = ("ping",)


@dataclass(frozen=True)
class Offer:
    """A parsed ``POST /api/offer`` body.

    Attributes:
        sdp: the browser's SDP offer (ICE gathering complete: aiortc does not trickle).
        source: name of a configured server-side source, or None to analyse the browser's track.
    """

    sdp: str
    source: str | None


@dataclass(frozen=True)
class ClientMessage:
    """A control message from the page; ``client_time_ms`` is echoed back to measure round trips."""

    type: str
    client_time_ms: float | None


def parse_offer(body: Any) -> Offer:
    """Validate a decoded JSON offer body: ``{"type": "offer", "sdp": str, "source"?: str|null}``."""
    if not isinstance(body, dict):
        raise ValueError(f"offer must be a JSON object, got {type(body).__name__}")
    unknown = sorted(set(body) - {"type", "sdp", "source"})
    if unknown:
        raise ValueError(f"offer has unknown keys {unknown}; expected type, sdp, source")
    if body.get("type") != "offer":
        raise ValueError(f"offer type must be 'offer', got {body.get('type')!r}")
    sdp = body.get("sdp")
    if not isinstance(sdp, str) or not sdp.startswith("v=0"):
        raise ValueError("offer sdp must be an SDP string starting with 'v=0'")
    if len(sdp) > MAX_SDP_CHARS:
        raise ValueError(f"offer sdp must be at most {MAX_SDP_CHARS} characters, got {len(sdp)}")
    source = body.get("source")
    if source is not None:
        if not isinstance(source, str) or not source or len(source) > MAX_SOURCE_NAME_CHARS:
            raise ValueError(
                f"offer source must be null or a name of 1-{MAX_SOURCE_NAME_CHARS} characters, "
                f"got {source!r:.80}"
            )
    return Offer(sdp=sdp, source=source)


def parse_client_message(raw: str | bytes) -> ClientMessage:
    """Validate one data channel message from the page: ``{"type": "ping", "client_time_ms"?: n}``."""
    if isinstance(raw, bytes):
        raise ValueError("data channel messages must be text JSON, got binary")
    if len(raw) > MAX_CLIENT_MESSAGE_CHARS:
        raise ValueError(f"message must be at most {MAX_CLIENT_MESSAGE_CHARS} characters, got {len(raw)}")
    try:
        body = json.loads(raw)
    except json.JSONDecodeError as error:
        raise ValueError(f"message must be JSON: {error.msg} at position {error.pos}") from error
    if not isinstance(body, dict):
        raise ValueError(f"message must be a JSON object, got {type(body).__name__}")
    kind = body.get("type")
    if kind not in CLIENT_MESSAGE_TYPES:
        raise ValueError(f"message type must be one of {list(CLIENT_MESSAGE_TYPES)}, got {kind!r:.80}")
    client_time = body.get("client_time_ms")
    if client_time is not None and (
        isinstance(client_time, bool)
        or not isinstance(client_time, (int, float))
        or not math.isfinite(client_time)
    ):
        raise ValueError(f"client_time_ms must be a finite number, got {client_time!r:.80}")
    return ClientMessage(type=kind, client_time_ms=None if client_time is None else float(client_time))


def _finite_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _json_safe(value: Any) -> Any:
    """Event data as plain JSON: NaN/inf become null, numpy scalars become numbers."""
    if isinstance(value, dict):
        return {str(key): _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    if isinstance(value, bool) or value is None or isinstance(value, (str, int)):
        return value
    if isinstance(value, float):
        return _finite_or_none(value)
    if hasattr(value, "item"):  # numpy scalar or 0-d array
        return _json_safe(value.item())
    if hasattr(value, "tolist"):
        return _json_safe(value.tolist())
    return str(value)


def face_to_json(face: FaceResult) -> dict[str, Any]:
    return {
        "track_id": int(face.track_id),
        "box_xyxy": [round(float(v), 1) for v in face.box_xyxy],
        "confirmed": bool(face.confirmed),
        "p_fake": _finite_or_none(face.p_fake),
        "ready": bool(face.ready),
        "verdict": face.verdict,
        "frames_scored": int(face.frames_scored),
        "reference": None if face.reference is None else _json_safe(face.reference.to_dict()),
    }


def event_to_json(event: Event) -> dict[str, Any]:
    return {
        "kind": event.kind,
        "source_id": event.source_id,
        "track_id": int(event.track_id),
        "timestamp_s": _finite_or_none(event.timestamp_s),
        "wall_time": _finite_or_none(event.wall_time),
        "data": _json_safe(event.data),
    }


def frame_message(
    result: FrameResult,
    *,
    server_latency_ms: float,
    fps: float,
    frames_dropped: int,
    server_video_latency_ms: float | None = None,
) -> str:
    """The ``scores`` message sent on the data channel for every processed frame.

    ``server_latency_ms``: this frame's arrival at the server to its scores ready (how far the
    scores lag the video: a few ms on a tracked frame, a detection's time on a detected one).
    ``server_video_latency_ms``: the server's share of camera-to-screen latency, frame arrival to
    annotated frame sent back (smoothed; None before the first frame went back).
    ``frames_dropped``: frames the analysis skipped to stay live (the video shows them all).
    """
    message = {
        "type": "scores",
        "frame_index": int(result.frame.index),
        "timestamp_s": _finite_or_none(result.frame.timestamp_s),
        "width": int(result.frame.image.shape[1]),
        "height": int(result.frame.image.shape[0]),
        "faces": [face_to_json(face) for face in result.faces],
        "events": [event_to_json(event) for event in result.events],
        "server_latency_ms": round(server_latency_ms, 2),
        "server_video_latency_ms": (
            None if server_video_latency_ms is None else round(server_video_latency_ms, 2)
        ),
        "fps": round(fps, 2),
        "frames_dropped": int(frames_dropped),
        "timings_ms": {name: round(float(ms), 2) for name, ms in result.timings_ms.items()},
    }
    return json.dumps(message, allow_nan=False)


def error_message(reason: str) -> str:
    return json.dumps({"type": "error", "error": reason})


def pong_message(client_time_ms: float | None, server_time_s: float) -> str:
    return json.dumps({"type": "pong", "client_time_ms": client_time_ms, "server_time_s": server_time_s})
