"""Request checks in front of every route: the API token (with a per-client limit on wrong
ones), body size, JSON errors, safe headers, and one log line per rejected request."""

from __future__ import annotations

import hmac
import json
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Middleware

from stream.server.metrics import ServerMetrics

logger = logging.getLogger(__name__)

TOKEN_HEADER = "X-Deepwatch-Token"
LOOPBACK_HOST_NAMES = ("127.0.0.1", "localhost", "::1", "[::1]")
TOKEN_QUERY = "token"
# Routes that need the token: everything that starts sessions or reveals server state.
PROTECTED_PREFIXES = ("/api/", "/metrics")

# The page loads only its own assets; media comes over WebRTC (blob:/mediastream:), and the
# screenshot canvas uses data: URLs.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "media-src 'self' blob: mediastream:; connect-src 'self'; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'; form-action 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # The token may be in the page URL; never leak it to another site.
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# How the page is opened with a token; every token error says it.
TOKEN_FIX = (
    "open the page as /?token=YOUR_TOKEN, with the token deepwatch serve was started with "
    "(--token or $DEEPWATCH_TOKEN), or send it as 'Authorization: Bearer YOUR_TOKEN'"
)
# Client addresses remembered by the failure limiter before stale ones are swept.
_MAX_TRACKED_CLIENTS = 4096


class TokenFailureLimiter:
    """Counts wrong or missing tokens per client address in a sliding window.

    ``retry_after_s(client)`` is None while ``client`` has had fewer than ``max_failures``
    failures in the last ``window_s`` seconds, else the seconds until the oldest one ages out.
    A correct token clears the client's count. Behind a reverse proxy every client has the
    proxy's address and shares one count: the proxy should limit as well.
    """

    def __init__(
        self, max_failures: int, window_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if max_failures < 1 or not window_s > 0:
            raise ValueError(f"need max_failures >= 1 and window_s > 0, got {max_failures}, {window_s}")
        self.max_failures = max_failures
        self.window_s = window_s
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}

    def retry_after_s(self, client: str) -> float | None:
        failures = self._failures.get(client)
        if failures is None:
            return None
        now = self._clock()
        while failures and failures[0] <= now - self.window_s:
            failures.popleft()
        if not failures:
            del self._failures[client]
            return None
        if len(failures) < self.max_failures:
            return None
        return failures[0] + self.window_s - now

    def record_failure(self, client: str) -> None:
        if client not in self._failures and len(self._failures) >= _MAX_TRACKED_CLIENTS:
            self._sweep()
        self._failures.setdefault(client, deque(maxlen=self.max_failures)).append(self._clock())

    def clear(self, client: str) -> None:
        self._failures.pop(client, None)

    def _sweep(self) -> None:
        horizon = self._clock() - self.window_s
        for client in [
            c for c, failures in self._failures.items() if not failures or failures[-1] <= horizon
        ]:
            del self._failures[client]
        while len(self._failures) >= _MAX_TRACKED_CLIENTS:
            # Still full of recent failures (many addresses): forget the oldest-inserted client.
            del self._failures[next(iter(self._failures))]


class MalformedHttpLogFilter(logging.Filter):
    """Turns aiohttp's log record for a malformed request (which it answers 400 itself) from an
    ERROR with a traceback into one WARNING line like every other rejected request: the fault is
    the client's, and a traceback in the log would read as a server bug. Other records pass as
    they are. Installed on the ``aiohttp.server`` logger while the app runs."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, HttpProcessingError) and 400 <= error.code < 500:
            client = record.args[0] if isinstance(record.args, tuple) and record.args else "unknown"
            reason = " ".join(str(error.message).split()) or "malformed"
            record.msg = "rejected malformed HTTP from %s: %d %s"
            record.args = (client, error.code, reason[:200])
            record.exc_info = None
            record.exc_text = None
            record.levelno = logging.WARNING
            record.levelname = logging.getLevelName(logging.WARNING)
        return True


def json_error(status: int, message: str) -> web.Response:
    return web.Response(
        status=status, text=json.dumps({"error": message, "status": status}), content_type="application/json"
    )


def http_error(
    error_class: type[web.HTTPException], message: str, headers: dict[str, str] | None = None
) -> web.HTTPException:
    """An aiohttp HTTP error carrying ``{"error": message}``; the middleware keeps the message."""
    return error_class(text=json.dumps({"error": message}), content_type="application/json", headers=headers)


def presented_token(request: web.Request) -> str | None:
    """The token from ``Authorization: Bearer``, the ``X-Deepwatch-Token`` header or ``?token=``."""
    authorization = request.headers.get("Authorization", "")
    if authorization.startswith("Bearer "):
        return authorization[len("Bearer ") :].strip()
    if TOKEN_HEADER in request.headers:
        return request.headers[TOKEN_HEADER]
    return request.query.get(TOKEN_QUERY)


def token_matches(presented: str | None, expected: str) -> bool:
    """Constant-time comparison, so response timing does not reveal how much of a guess was right."""
    if presented is None:
        return False
    return hmac.compare_digest(presented.encode("utf-8", "surrogateescape"), expected.encode("utf-8"))


def cross_site_problem(request: web.Request, loopback_only: bool) -> str | None:
    """Why a request looks like it comes from another site, or None.

    Without a token the server relies on being reachable only from this machine; a web page the
    user visits could still send requests to 127.0.0.1 from the user's browser. A foreign
    ``Origin`` (cross-site fetch) or a foreign ``Host`` (DNS rebinding) gives such requests away.
    """
    origin = request.headers.get("Origin")
    if origin is not None and urlsplit(origin).netloc != request.host:
        return f"cross-origin request from {origin!r:.100} refused"
    if loopback_only and request.url.host not in LOOPBACK_HOST_NAMES:
        return f"Host {request.host!r:.100} is not a loopback name; open the page at http://127.0.0.1"
    return None


def token_problem(presented: str | None, expected: str) -> str | None:
    """Why ``presented`` is refused (saying how to fix it, never echoing it), or None."""
    if presented is None:
        return f"this server needs its access token: {TOKEN_FIX}"
    if not token_matches(presented, expected):
        return f"wrong access token: {TOKEN_FIX}"
    return None


def security_middleware(
    token: str | None,
    max_body_bytes: int,
    metrics: ServerMetrics,
    *,
    loopback_only: bool,
    limiter: TokenFailureLimiter | None = None,
    larger_bodies: Mapping[str, int] | None = None,
) -> Middleware:
    """Checks the token and the origin on protected routes, refuses oversized bodies before
    reading them, turns every HTTP error into a JSON body, logs one line per rejected request,
    and adds the security headers to every response. ``loopback_only``: the server listens on
    loopback without a token. ``limiter``: answers 429 to a client after repeated bad tokens.
    ``larger_bodies``: paths that take more than ``max_body_bytes`` (their handler reads the body
    with its own limits), and how much."""
    limits = dict(larger_bodies or {})

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        client = request.remote or "unknown"
        limit = limits.get(request.path, max_body_bytes)
        try:
            if request.path.startswith(PROTECTED_PREFIXES):
                if token is not None:
                    _check_token(request, token, client, limiter)
                problem = cross_site_problem(request, loopback_only)
                if problem is not None:
                    raise http_error(web.HTTPForbidden, problem)
            if request.content_length is not None and request.content_length > limit:
                raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length)
            response = await handler(request)
        except web.HTTPException as error:
            if error.status >= 400:
                metrics.bad_requests.labels(status=str(error.status)).inc()
                if error.status == 413:
                    message = _message_of(error, f"request body larger than {limit} bytes")
                else:
                    message = _message_of(error, error.reason)
                # The path without its query (which may hold the token), quoted against log injection.
                logger.warning(
                    "rejected %s %r from %s: %d %s",
                    request.method,
                    request.path[:200],
                    client,
                    error.status,
                    message,
                )
                response = json_error(error.status, message)
                if "Retry-After" in error.headers:
                    response.headers["Retry-After"] = error.headers["Retry-After"]
            else:
                response = error
        response.headers.update(SECURITY_HEADERS)
        return response

    return middleware


def _check_token(request: web.Request, token: str, client: str, limiter: TokenFailureLimiter | None) -> None:
    """Raise 429 for a client over its failure limit, 401 for a missing or wrong token."""
    if limiter is not None:
        wait_s = limiter.retry_after_s(client)
        if wait_s is not None:
            seconds = max(1, math.ceil(wait_s))
            raise http_error(
                web.HTTPTooManyRequests,
                f"too many wrong or missing tokens from {client}; retry in {seconds} s with the right one",
                headers={"Retry-After": str(seconds)},
            )
    problem = token_problem(presented_token(request), token)
    if problem is not None:
        if limiter is not None:
            limiter.record_failure(client)
        raise http_error(web.HTTPUnauthorized, problem)
    if limiter is not None:
        limiter.clear(client)


def _message_of(error: web.HTTPException, fallback: str) -> str:
    """The ``error`` field of a JSON HTTPException raised by a handler, else ``fallback``."""
    if error.content_type == "application/json" and error.text:
        try:
            body = json.loads(error.text)
        except json.JSONDecodeError:
            return fallback
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            return body["error"]
    return fallback
