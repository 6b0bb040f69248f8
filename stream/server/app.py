"""The aiohttp application: the page, the signalling API, health and metrics.

Routes (``/api/*`` and ``/metrics`` need the token when one is set):

- ``GET /`` and ``GET /static/{name}``: the page's own assets, from an in-memory table; no other
  file is ever read, so there is no directory listing or path traversal to get wrong.
- ``GET /healthz``: liveness and the number of open sessions.
- ``GET /metrics``: Prometheus text, every name prefixed ``deepwatch_``.
- ``GET /api/model``: the verdict rule (threshold, UNSURE margin) and the model's validated
  figure, which the page shows beside every verdict; the page also uses it to check its token.
- ``GET /api/sources``: names of the configured server-side sources.
- ``POST /api/offer``: ``{"type": "offer", "sdp": ..., "source": name|null}`` -> the answer.
- ``GET /api/sessions``, ``DELETE /api/sessions/{id}``: list and close sessions.
- ``GET /api/reference``: whether faces can be compared with an enrolled person, and who is.
- ``PUT /api/reference?name=N``: a JPEG or PNG photo (within the body limit: the page shrinks it
  first), or multipart/form-data of up to 8 photos or of a clip's frames
  (``stream.server.enrolment``), enrols the person who should be on screen, for every session
  (``engine.reference``); ``DELETE /api/reference`` forgets them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from typing import Any

from aiohttp import web

from engine.reference import Reference, ReferenceError
from stream.server.enrolment import Enrolment, Upload, multipart_body_limit, read_upload, reference_json
from stream.server.ice import disable_loopback_candidates, enable_loopback_candidates
from stream.server.messages import parse_offer
from stream.server.metrics import CONTENT_TYPE_LATEST, ServerMetrics
from stream.server.model_info import ModelInfo
from stream.server.options import ServerOptions, is_loopback_host
from stream.server.peer import Annotator, OfferRejected, PeerSession, PipelineFactory
from stream.server.security import (
    MalformedHttpLogFilter,
    TokenFailureLimiter,
    http_error,
    security_middleware,
)
from stream.sources.source import Source, SourceError

logger = logging.getLogger(__name__)

# The page's assets: the only files the server hands out.
STATIC_ASSETS = {
    "index.html": "text/html",
    "app.js": "text/javascript",
    "chart.js": "text/javascript",
    "latency.js": "text/javascript",
    "style.css": "text/css",
}

SourceOpener = Callable[[], Source]
"""Builds an unstarted ``Source`` for one session (each session gets its own reader)."""


@dataclass(frozen=True)
class _Asset:
    body: bytes
    content_type: str


class Server:
    """The state behind the routes: options, open sessions, metrics. One per application."""

    def __init__(
        self,
        options: ServerOptions,
        *,
        pipeline_factory: PipelineFactory,
        annotate: Annotator,
        sources: Mapping[str, SourceOpener] | None = None,
        model: ModelInfo | None = None,
        enrolment: Enrolment | None = None,
    ) -> None:
        self.options = options
        self.model = model or ModelInfo()
        self.enrolment = enrolment
        self.metrics = ServerMetrics()
        self.sessions: dict[str, PeerSession] = {}
        self._pipeline_factory = pipeline_factory
        self._annotate = annotate
        self._sources = dict(sources or {})
        self._assets = _load_assets()
        # One inference thread and one drawing thread for all sessions: see stream.server.peer.
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="deepwatch-inference")
        self.display_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="deepwatch-display")

    # -- static ----------------------------------------------------------------------------

    async def index(self, request: web.Request) -> web.Response:
        return self._asset_response("index.html")

    async def static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in self._assets:
            raise http_error(web.HTTPNotFound, "no such asset")
        return self._asset_response(name)

    async def favicon(self, request: web.Request) -> web.Response:
        # Browsers ask for it on every page load; "no content" keeps their consoles clean.
        return web.Response(status=204)

    def _asset_response(self, name: str) -> web.Response:
        asset = self._assets[name]
        return web.Response(body=asset.body, content_type=asset.content_type, charset="utf-8")

    # -- operations ------------------------------------------------------------------------

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"status": "ok", "sessions_active": len(self.sessions), "max_sessions": self.options.max_sessions}
        )

    async def metrics_text(self, request: web.Request) -> web.Response:
        response = web.Response(body=self.metrics.render())
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    # -- API -------------------------------------------------------------------------------

    async def model_info(self, request: web.Request) -> web.Response:
        return web.json_response(self.model.to_json())

    async def list_sources(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"sources": sorted(self._sources), "max_sessions": self.options.max_sessions}
        )

    async def list_sessions(self, request: web.Request) -> web.Response:
        return web.json_response({"sessions": [session.describe() for session in self.sessions.values()]})

    async def delete_session(self, request: web.Request) -> web.Response:
        session = self.sessions.get(request.match_info["session_id"])
        if session is None:
            raise http_error(web.HTTPNotFound, "no such session")
        await session.close("closed by the page")
        return web.json_response({"closed": session.session_id})

    async def offer(self, request: web.Request) -> web.Response:
        # A JSON content type makes a cross-site fetch need a CORS preflight, which is never granted.
        if request.content_type != "application/json":
            raise http_error(
                web.HTTPUnsupportedMediaType,
                f"offer must be application/json, got {request.content_type!r:.60}",
            )
        try:
            body: Any = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise http_error(web.HTTPBadRequest, f"body must be JSON: {error}") from error
        try:
            offer = parse_offer(body)
        except ValueError as error:
            raise http_error(web.HTTPBadRequest, str(error)) from error
        opener: SourceOpener | None = None
        if offer.source is not None:
            opener = self._sources.get(offer.source)
            if opener is None:
                raise http_error(
                    web.HTTPNotFound, f"unknown source {offer.source!r}; configured: {sorted(self._sources)}"
                )
        if len(self.sessions) >= self.options.max_sessions:
            self.metrics.sessions_rejected.labels(reason="limit").inc()
            raise http_error(
                web.HTTPServiceUnavailable,
                f"session limit reached ({self.options.max_sessions} open); close one and retry",
            )
        # Reserve the slot before the first await, so concurrent offers cannot exceed the limit.
        session = PeerSession(
            secrets.token_hex(8),
            pipeline_factory=self._pipeline_factory,
            annotate=self._annotate,
            executor=self.executor,
            display_executor=self.display_executor,
            metrics=self.metrics,
            idle_timeout_s=self.options.idle_timeout_s,
            on_closed=self._forget,
        )
        self.sessions[session.session_id] = session
        self.metrics.sessions_active.set(len(self.sessions))
        try:
            source = await self._start_source(offer.source, opener) if opener is not None else None
            answer = await asyncio.wait_for(
                session.negotiate(offer, source), self.options.negotiation_timeout_s
            )
        except BaseException as error:
            await session.close(f"negotiation failed: {error!r:.200}")
            self.metrics.sessions_rejected.labels(reason="offer").inc()
            if isinstance(error, web.HTTPException):
                raise
            if isinstance(error, OfferRejected):
                raise http_error(web.HTTPBadRequest, str(error)) from error
            if isinstance(error, asyncio.TimeoutError):
                raise http_error(web.HTTPGatewayTimeout, "negotiation timed out") from error
            if isinstance(error, Exception):
                # aiortc raises assorted errors (ValueError, KeyError, ...) on SDP it cannot use.
                logger.warning("rejected an offer: %r", error)
                raise http_error(
                    web.HTTPBadRequest, f"offer could not be negotiated: {error!r:.200}"
                ) from error
            raise
        self.metrics.sessions.inc()
        logger.info("session %s started (%s)", session.session_id, session.source_id)
        return web.json_response({"type": answer.type, "sdp": answer.sdp, "session_id": session.session_id})

    async def get_reference(self, request: web.Request) -> web.Response:
        return web.json_response(self._reference_state())

    async def put_reference(self, request: web.Request) -> web.Response:
        enrolment = self._require_enrolment()
        upload = await read_upload(request, self.options.max_body_bytes)
        loop = asyncio.get_running_loop()
        try:
            # Decoding, detection and encoding run on the inference thread, never on the event loop.
            reference = await loop.run_in_executor(self.executor, _enrol_upload, enrolment, upload)
        except ReferenceError as error:
            raise http_error(web.HTTPUnprocessableEntity, str(error)) from error
        logger.info("enrolled %r from the page", reference.name)
        return web.json_response(self._reference_state())

    async def delete_reference(self, request: web.Request) -> web.Response:
        self._require_enrolment().set_reference(None)
        logger.info("the page cleared the enrolled person")
        return web.json_response(self._reference_state())

    def _require_enrolment(self) -> Enrolment:
        if self.enrolment is None:
            raise http_error(web.HTTPNotFound, "this model cannot compare faces with an enrolled person")
        return self.enrolment

    def _reference_state(self) -> dict[str, Any]:
        reference = None if self.enrolment is None else self.enrolment.reference
        return {"available": self.enrolment is not None, "reference": reference_json(reference)}

    async def _start_source(self, name: str | None, opener: SourceOpener) -> Source:
        loop = asyncio.get_running_loop()
        try:
            source = opener()
            # Opening an RTSP camera blocks for up to its open timeout: keep it off the event loop.
            await loop.run_in_executor(None, source.start)
        except SourceError as error:
            raise http_error(web.HTTPBadGateway, f"source {name!r} cannot be opened: {error}") from error
        return source

    def _forget(self, session: PeerSession) -> None:
        self.sessions.pop(session.session_id, None)
        self.metrics.sessions_active.set(len(self.sessions))

    async def close_all(self) -> None:
        """Close every session, then wait for the worker threads to finish (and pipelines to end)."""
        await asyncio.gather(*(session.close("server stopping") for session in list(self.sessions.values())))
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.display_executor.shutdown, True)
        await loop.run_in_executor(None, self.executor.shutdown, True)


SERVER_KEY = web.AppKey("server", Server)


def create_app(
    options: ServerOptions,
    *,
    pipeline_factory: PipelineFactory,
    annotate: Annotator,
    sources: Mapping[str, SourceOpener] | None = None,
    model: ModelInfo | None = None,
    enrolment: Enrolment | None = None,
) -> web.Application:
    """The aiohttp application for ``options``. Sessions build their pipeline with
    ``pipeline_factory`` and draw with ``annotate``; ``sources`` are the server-side inputs the
    page may pick by name; ``model`` is what the page says about the verdicts (default: threshold
    0.5 and no validated figure); ``enrolment`` compares faces with a person enrolled from the page
    (None: the model cannot, and the reference routes answer 404)."""
    server = Server(
        options,
        pipeline_factory=pipeline_factory,
        annotate=annotate,
        sources=sources,
        model=model,
        enrolment=enrolment,
    )
    app = web.Application(
        client_max_size=options.max_body_bytes,
        middlewares=[
            security_middleware(
                options.token,
                options.max_body_bytes,
                server.metrics,
                loopback_only=options.token is None and is_loopback_host(options.host),
                limiter=TokenFailureLimiter(options.max_token_failures, options.token_failure_window_s),
                larger_bodies={"/api/reference": multipart_body_limit(options.max_body_bytes)},
            )
        ],
    )
    app[SERVER_KEY] = server
    app.router.add_get("/", server.index)
    app.router.add_get("/static/{name}", server.static)
    app.router.add_get("/favicon.ico", server.favicon)
    app.router.add_get("/healthz", server.healthz)
    app.router.add_get("/metrics", server.metrics_text)
    app.router.add_get("/api/model", server.model_info)
    app.router.add_get("/api/sources", server.list_sources)
    app.router.add_post("/api/offer", server.offer)
    app.router.add_get("/api/sessions", server.list_sessions)
    app.router.add_delete("/api/sessions/{session_id}", server.delete_session)
    app.router.add_get("/api/reference", server.get_reference)
    app.router.add_put("/api/reference", server.put_reference)
    app.router.add_delete("/api/reference", server.delete_reference)

    async def quiet_malformed_http(app: web.Application):  # type: ignore[no-untyped-def]
        log_filter = MalformedHttpLogFilter()
        logging.getLogger("aiohttp.server").addFilter(log_filter)
        yield
        logging.getLogger("aiohttp.server").removeFilter(log_filter)

    app.cleanup_ctx.append(quiet_malformed_http)

    if options.allow_loopback_ice:

        async def loopback_ice(app: web.Application):  # type: ignore[no-untyped-def]
            enable_loopback_candidates()
            yield
            disable_loopback_candidates()

        app.cleanup_ctx.append(loopback_ice)

    async def close_sessions(app: web.Application) -> None:
        await server.close_all()

    app.on_shutdown.append(close_sessions)
    return app


def _enrol_upload(enrolment: Enrolment, upload: Upload) -> Reference:
    return enrolment.enrol(upload.media())


def _load_assets() -> dict[str, _Asset]:
    folder = resources.files("stream.server") / "static"
    return {
        name: _Asset(body=(folder / name).read_bytes(), content_type=content_type)
        for name, content_type in STATIC_ASSETS.items()
    }
