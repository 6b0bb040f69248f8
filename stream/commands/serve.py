"""``deepwatch serve``: the WebRTC page and server (see ``stream.server``)."""

from __future__ import annotations

import argparse
import logging
import os
import ssl
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING

from stream.commands import add_reference_argument
from stream.server.options import ServerOptions, check_source
from stream.server.tls import SELF_SIGNED_VALIDITY_DAYS, TlsError, server_ssl_context, write_self_signed

if TYPE_CHECKING:
    from stream.config import AppConfig

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
        "--host",
        default="127.0.0.1",
        help="address to bind (default 127.0.0.1; others need --token and --tls-cert/--tls-key)",
    )
    parser.add_argument("--port", type=int, default=8080, help="TCP port (default 8080)")
    parser.add_argument(
        "--token",
        default=os.environ.get(TOKEN_ENV),
        help=f"secret every API request must carry (default: ${TOKEN_ENV}); required off loopback",
    )
    parser.add_argument("--config", default=None, help="app config YAML (default: built-in defaults)")
    parser.add_argument("--checkpoint", default=None, help="scorer checkpoint (default: the shipped model)")
    add_reference_argument(parser)
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
        "--tls-cert", default=None, metavar="FILE", help="PEM certificate: serve HTTPS (with --tls-key)"
    )
    parser.add_argument("--tls-key", default=None, metavar="FILE", help="PEM private key of --tls-cert")
    parser.add_argument(
        "--allow-plain-http",
        action="store_true",
        help="serve plain HTTP beyond 127.0.0.1 (the token and video cross the network in the clear, "
        "and browsers will not share a camera with the page)",
    )
    parser.add_argument(
        "--make-cert",
        default=None,
        metavar="DIR",
        help="write a self-signed certificate and key into DIR for trials, then exit",
    )
    parser.add_argument(
        "--cert-host",
        default=None,
        metavar="NAME",
        help="host name or IP address the --make-cert certificate is for (default: --host, or "
        "localhost for a wildcard address)",
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
    if args.make_cert is not None:
        return _make_cert(args.make_cert, args.cert_host or _default_cert_host(args.host))
    from stream.config import AppConfig, ConfigError, load_config, with_model

    try:
        config = load_config(args.config) if args.config else AppConfig()
        options = ServerOptions(
            host=args.host,
            port=args.port,
            token=args.token or None,
            max_sessions=args.max_sessions,
            idle_timeout_s=args.idle_timeout,
            allow_loopback_ice=args.allow_loopback_ice,
            # A flag wins over the config's server section.
            tls_cert=args.tls_cert or config.server.tls_cert,
            tls_key=args.tls_key or config.server.tls_key,
            allow_plain_http=args.allow_plain_http,
        )
        source_flags = parse_sources(args.source)
        ssl_context = (
            server_ssl_context(options.tls_cert, options.tls_key)
            if options.tls_cert is not None and options.tls_key is not None
            else None
        )
    except (ValueError, ConfigError) as error:
        print(f"deepwatch serve: {error}", file=sys.stderr)
        return 2
    return _serve(options, ssl_context, source_flags, with_model(config, args.checkpoint, args.reference))


def _default_cert_host(host: str) -> str:
    return "localhost" if host in ("0.0.0.0", "::", "") else host


def _make_cert(directory: str, host_name: str) -> int:
    try:
        files = write_self_signed(directory, host_name)
    except TlsError as error:
        print(f"deepwatch serve: {error}", file=sys.stderr)
        return 2
    print(
        f"wrote a self-signed certificate for {', '.join(files.names)} (valid "
        f"{SELF_SIGNED_VALIDITY_DAYS} days):\n  {files.cert_path}\n"
        f"  {files.key_path} (private key, owner-only)\n"
        f"serve with: deepwatch serve --host HOST --token TOKEN --tls-cert {files.cert_path} "
        f"--tls-key {files.key_path}\n"
        "Each browser warns about a self-signed certificate once; accept it for this host."
    )
    return 0


def _serve(
    options: ServerOptions,
    ssl_context: ssl.SSLContext | None,
    source_flags: Mapping[str, str],
    config: AppConfig,
) -> int:
    from aiohttp import web

    from stream.live.app import SetupError, load_components
    from stream.server.app import create_app
    from stream.server.live import model_info, source_openers
    from stream.server.peer import overlay_annotator

    try:
        # The config's server.sources, then the --source flags (a flag replaces a same-named source).
        source_specs = {**config.server.sources, **source_flags}
        components = load_components(config)
    except SetupError as error:
        print(f"deepwatch serve: {error}", file=sys.stderr)
        return 2
    try:
        app = create_app(
            options,
            pipeline_factory=components.session_pipeline,
            annotate=overlay_annotator(components.threshold),
            sources=source_openers(source_specs, config.source),
            model=model_info(components),
            enrolment=components if components.can_enrol else None,
        )
        logger.info(
            "serving %s://%s:%d/ (%s, at most %d sessions, server-side sources: %s)",
            options.scheme,
            options.host,
            options.port,
            "token required" if options.token else "no token: loopback only",
            options.max_sessions,
            ", ".join(sorted(source_specs)) or "none",
        )
        web.run_app(
            app, host=options.host, port=options.port, ssl_context=ssl_context, print=None, access_log=None
        )
    except OSError as error:
        print(
            f"deepwatch serve: cannot listen on {options.host}:{options.port}: {error.strerror or error}",
            file=sys.stderr,
        )
        return 1
    finally:
        components.close()
    return 0
