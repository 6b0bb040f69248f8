"""Request checks in front of every route: the API token, body size, JSON errors, safe headers."""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from aiohttp import web
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


def json_error(status: int, message: str) -> web.Response:
    return web.Response(
        status=status, text=json.dumps({"error": message, "status": status}), content_type="application/json"
    )


def http_error(error_class: type[web.HTTPException], message: str) -> web.HTTPException:
    """An aiohttp HTTP error carrying ``{"error": message}``; the middleware keeps the message."""
    return error_class(text=json.dumps({"error": message}), content_type="application/json")


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


def security_middleware(
    token: str | None, max_body_bytes: int, metrics: ServerMetrics, *, loopback_only: bool
) -> Middleware:
    """Checks the token and the origin on protected routes, refuses oversized bodies before
    reading them, turns every HTTP error into a JSON body, and adds the security headers to
    every response. ``loopback_only``: the server listens on loopback without a token."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            if request.path.startswith(PROTECTED_PREFIXES):
                if token is not None and not token_matches(presented_token(request), token):
                    raise web.HTTPUnauthorized(reason="missing or wrong token")
                problem = cross_site_problem(request, loopback_only)
                if problem is not None:
                    raise http_error(web.HTTPForbidden, problem)
            if request.content_length is not None and request.content_length > max_body_bytes:
                raise web.HTTPRequestEntityTooLarge(
                    max_size=max_body_bytes, actual_size=request.content_length
                )
            response = await handler(request)
        except web.HTTPException as error:
            if error.status >= 400:
                metrics.bad_requests.labels(status=str(error.status)).inc()
                if error.status == 413:
                    message = f"request body larger than {max_body_bytes} bytes"
                else:
                    message = _message_of(error, error.reason)
                response = json_error(error.status, message)
            else:
                response = error
        response.headers.update(SECURITY_HEADERS)
        return response

    return middleware


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
