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
# Wrong tokens one client may present per window before it gets 429: a person mistyping gets a
# few tries, a guesser gets ~10 a minute, which makes a 16+ character token unguessable.
DEFAULT_MAX_TOKEN_FAILURES = 10
DEFAULT_TOKEN_FAILURE_WINDOW_S = 60.0
PLAIN_HTTP_FIXES = (
    "give it a certificate (--tls-cert FILE --tls-key FILE; `deepwatch serve --make-cert DIR` makes "
    "a self-signed one for trials), or keep it on 127.0.0.1 behind a TLS reverse proxy (nginx, "
    "Caddy: see the README); --allow-plain-http serves plain HTTP anyway"
)


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
        host: address to bind; anything but loopback requires ``token``, and TLS (``tls_cert``
            and ``tls_key``) unless ``allow_plain_http``.
        port: TCP port (0 picks a free one).
        token: shared secret every API request must carry (header or ``?token=``), or None.
        tls_cert: PEM certificate (chain) file to serve HTTPS with, or None for plain HTTP.
        tls_key: PEM private key of ``tls_cert``; given together with it.
        allow_plain_http: serve plain HTTP beyond loopback (the user knows the token and video
            cross the network in the clear, and browsers will not share a camera with the page).
        max_token_failures: wrong or missing tokens one client address may present within
            ``token_failure_window_s`` before its requests to protected routes get 429.
        token_failure_window_s: the window of ``max_token_failures``, seconds.
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
    tls_cert: str | None = None
    tls_key: str | None = None
    allow_plain_http: bool = False
    max_token_failures: int = DEFAULT_MAX_TOKEN_FAILURES
    token_failure_window_s: float = DEFAULT_TOKEN_FAILURE_WINDOW_S

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

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
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError(
                f"TLS needs both a certificate and its key, got tls_cert={self.tls_cert!r}, "
                f"tls_key={self.tls_key!r}"
            )
        if not self.tls and not self.allow_plain_http and not is_loopback_host(self.host):
            raise ValueError(
                f"refusing to serve plain HTTP on {self.host}: the token and the video would cross the "
                f"network in the clear, and browsers only share a camera or screen with an HTTPS page; "
                f"{PLAIN_HTTP_FIXES}"
            )
        if self.max_token_failures < 1:
            raise ValueError(f"max_token_failures must be >= 1, got {self.max_token_failures}")
        if not self.token_failure_window_s > 0:
            raise ValueError(f"token_failure_window_s must be > 0, got {self.token_failure_window_s}")


@dataclass(frozen=True)
class ServerConfig:
    """The app config's ``server`` section: what ``deepwatch serve`` offers besides the page's capture.

    Attributes:
        sources: server-side sources the page may pick, name -> source spec (an rtsp:// or
            http(s):// URL, a video file, ``webcam:0``, ``screen:...``), e.g.
            ``{"door": "rtsp://cam.local/stream"}``. ``--source NAME=SPEC`` adds to these and
            replaces a source of the same name.
        tls_cert: PEM certificate file to serve HTTPS with (``--tls-cert`` wins), or None.
        tls_key: PEM private key of ``tls_cert`` (``--tls-key`` wins), or None.
    """

    sources: Mapping[str, str] = field(default_factory=dict)
    tls_cert: str | None = None
    tls_key: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.sources, Mapping):
            raise ValueError(f"sources must be a mapping of name: spec, got {self.sources!r}")
        for name, spec in self.sources.items():
            check_source(name, spec)
        for key in ("tls_cert", "tls_key"):
            value = getattr(self, key)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ValueError(f"{key} must be a file path or null, got {value!r:.80}")


def check_source(name: object, spec: object) -> None:
    """Raise ValueError unless ``name`` is a plain source name and ``spec`` a non-empty string."""
    if not isinstance(name, str) or not SOURCE_NAME.fullmatch(name):
        raise ValueError(
            f"source name must be 1-64 letters, digits, '_', '.' or '-' (starting with a letter or "
            f"digit), got {name!r}"
        )
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"source {name!r} needs a non-empty spec (URL, file or device), got {spec!r}")
