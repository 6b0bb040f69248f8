"""Settings of the WebRTC server (the ``deepwatch serve`` flags)."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

# Signalling bodies are an SDP offer of a few kB; 64 kB leaves room without inviting abuse.
DEFAULT_MAX_BODY_BYTES = 64 * 1024
# A token shorter than this is guessable; the CLI generates nothing, so insist on a real one.
MIN_TOKEN_CHARS = 16
# Source names appear in the page's picker and in URLs; keep them plain.
SOURCE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def is_loopback_host(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, "localhost")."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ServerOptions:
    """How the server listens and what it allows.

    Attributes:
        host: address to bind; anything but loopback requires ``token``.
        port: TCP port (0 picks a free one).
        token: shared secret every API request must carry (header or ``?token=``), or None.
        max_sessions: concurrent WebRTC sessions; more offers get 503.
        max_body_bytes: largest accepted request body.
        idle_timeout_s: a session whose input sends no frame for this long is closed.
        negotiation_timeout_s: longest time to answer one offer.
        allow_loopback_ice: also gather 127.0.0.1 ICE candidates (tests on a loopback-only machine).
    """

    host: str = "127.0.0.1"
    port: int = 8080
    token: str | None = None
    max_sessions: int = 4
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    idle_timeout_s: float = 10.0
    negotiation_timeout_s: float = 15.0
    allow_loopback_ice: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be in 0..65535, got {self.port}")
        if self.max_sessions < 1:
            raise ValueError(f"max_sessions must be >= 1, got {self.max_sessions}")
        if self.max_body_bytes < 1024:
            raise ValueError(f"max_body_bytes must be >= 1024, got {self.max_body_bytes}")
        if self.idle_timeout_s <= 0:
            raise ValueError(f"idle_timeout_s must be > 0, got {self.idle_timeout_s}")
        if self.negotiation_timeout_s <= 0:
            raise ValueError(f"negotiation_timeout_s must be > 0, got {self.negotiation_timeout_s}")
        if self.token is not None and len(self.token) < MIN_TOKEN_CHARS:
            raise ValueError(f"token must have at least {MIN_TOKEN_CHARS} characters, got {len(self.token)}")
        if self.token is None and not is_loopback_host(self.host):
            raise ValueError(
                f"refusing to listen on {self.host} without a token: anyone who can reach it could "
                "watch the analysed video; pass --token, or bind 127.0.0.1"
            )


@dataclass(frozen=True)
class ServerConfig:
    """The app config's ``server`` section: what ``deepwatch serve`` offers besides the page's capture.

    Attributes:
        sources: server-side sources the page may pick, name -> source spec (an rtsp:// or
            http(s):// URL, a video file, ``webcam:0``, ``screen:...``), e.g.
            ``{"door": "rtsp://cam.local/stream"}``. ``--source NAME=SPEC`` adds to these and
            replaces a source of the same name.
    """

    sources: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.sources, Mapping):
            raise ValueError(f"sources must be a mapping of name: spec, got {self.sources!r}")
        for name, spec in self.sources.items():
            check_source(name, spec)


def check_source(name: object, spec: object) -> None:
    """Raise ValueError unless ``name`` is a plain source name and ``spec`` a non-empty string."""
    if not isinstance(name, str) or not SOURCE_NAME.fullmatch(name):
        raise ValueError(
            f"source name must be 1-64 letters, digits, '_', '.' or '-' (starting with a letter or "
            f"digit), got {name!r}"
        )
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"source {name!r} needs a non-empty spec (URL, file or device), got {spec!r}")
