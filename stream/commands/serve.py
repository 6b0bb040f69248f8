"""``deepwatch serve``: the WebRTC page and server (see ``stream.server``)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Mapping
from dataclasses import replace

from stream.server.options import ServerOptions, check_source

logger = logging.getLogger(__name__)

TOKEN_ENV = "DEEPWATCH_TOKEN"


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "serve",
        help="serve the browser page: share a camera, screen or tab, see faces scored live",
        description=(
            "Serve a page where a browser shares its camera, a screen, a window or a tab (or picks a "
            "server-side source); the server runs the pipeline and sends back the annotated video and "
            "per-face scores over WebRTC."
        ),
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; others need --token)"
    )
    parser.add_argument("--port", type=int, default=8080, help="TCP port (default 8080)")
    parser.add_argument(
        "--token",
        default=os.environ.get(TOKEN_ENV),
        help=f"secret every API request must carry (default: ${TOKEN_ENV}); required off loopback",
    )
    parser.add_argument("--config", default=None, help="app config YAML (default: built-in defaults)")
    parser.add_argument("--checkpoint", default=None, help="scorer checkpoint (default: the shipped model)")
    parser.add_argument("--max-sessions", type=int, default=4, help="concurrent browser sessions (default 4)")
    parser.add_argument(
        "--source",
        action="append",
        default=[],
        metavar="NAME=SPEC",
        help="a server-side source the page may pick, e.g. door=rtsp://cam/stream (repeatable)",
    )
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=10.0,
        help="close a session after this many seconds without a frame",
    )
    parser.add_argument(
        "--allow-loopback-ice",
        action="store_true",
        help="also gather 127.0.0.1 ICE candidates (for tests on a machine with only loopback)",
    )
    parser.set_defaults(func=run)


def parse_sources(items: list[str]) -> dict[str, str]:
    """``["door=rtsp://...", ...]`` -> ``{"door": "rtsp://..."}``; raises ValueError on bad items."""
    sources: dict[str, str] = {}
    for item in items:
        name, separator, spec = item.partition("=")
        name = name.strip()
        if not separator or not name or not spec.strip():
            raise ValueError(f"--source must be NAME=SPEC, got {item!r}")
        if name in sources:
            raise ValueError(f"--source name {name!r} given twice")
        check_source(name, spec.strip())
        sources[name] = spec.strip()
    return sources


def run(args: argparse.Namespace) -> int:
    try:
        options = ServerOptions(
            host=args.host,
            port=args.port,
            token=args.token or None,
            max_sessions=args.max_sessions,
            idle_timeout_s=args.idle_timeout,
            allow_loopback_ice=args.allow_loopback_ice,
        )
        source_flags = parse_sources(args.source)
    except ValueError as error:
        print(f"deepwatch serve: {error}", file=sys.stderr)
        return 2
    return _serve(options, source_flags, args.config, args.checkpoint)


def _serve(
    options: ServerOptions, source_flags: Mapping[str, str], config_path: str | None, checkpoint: str | None
) -> int:
    from aiohttp import web

    from stream.config import AppConfig, ConfigError, load_config
    from stream.live.app import SetupError, load_components
    from stream.server.app import create_app
    from stream.server.live import source_openers
    from stream.server.peer import overlay_annotator

    try:
        config = load_config(config_path) if config_path else AppConfig()
        if checkpoint is not None:
            config = replace(config, model=replace(config.model, checkpoint=checkpoint))
        # The config's server.sources, then the --source flags (a flag replaces a same-named source).
        source_specs = {**config.server.sources, **source_flags}
        components = load_components(config)
    except (ConfigError, SetupError) as error:
        print(f"deepwatch serve: {error}", file=sys.stderr)
        return 2
    try:
        app = create_app(
            options,
            pipeline_factory=components.session_pipeline,
            annotate=overlay_annotator(components.threshold),
            sources=source_openers(source_specs, config.source),
        )
        logger.info(
            "serving http://%s:%d/ (%s, at most %d sessions, server-side sources: %s)",
            options.host,
            options.port,
            "token required" if options.token else "no token: loopback only",
            options.max_sessions,
            ", ".join(sorted(source_specs)) or "none",
        )
        web.run_app(app, host=options.host, port=options.port, print=None, access_log=None)
    except OSError as error:
        print(
            f"deepwatch serve: cannot listen on {options.host}:{options.port}: {error.strerror or error}",
            file=sys.stderr,
        )
        return 1
    finally:
        components.close()
    return 0
