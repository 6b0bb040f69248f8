"""The aiohttp app with a fake pipeline: security, limits, malformed input, metrics, health,
and whole WebRTC sessions against an aiortc client peer."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aioice.ice
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from stream.server.app import SERVER_KEY, SourceOpener, create_app
from stream.server.messages import MAX_CLIENT_MESSAGE_CHARS
from stream.server.model_info import NO_FIGURE_NOTE, ModelInfo
from stream.server.options import ServerOptions
from stream.server.peer import overlay_annotator, verdict_colour
from stream.server.security import TokenFailureLimiter
from tests.stream.server.fakes import ClientPeer, PipelineRecorder, SolidSource, SolidTrack

TOKEN = "t0ken-for-tests-0123456789"
HEADERS = {"X-Deepwatch-Token": TOKEN}
JSON_TYPE = {"Content-Type": "application/json"}


@asynccontextmanager
async def serving(
    *,
    recorder: PipelineRecorder | None = None,
    sources: dict[str, SourceOpener] | None = None,
    model: ModelInfo | None = None,
    enrolment: Any = None,
    **option_values: Any,
) -> AsyncIterator[TestClient]:
    values: dict[str, Any] = {"port": 0, "allow_loopback_ice": True, "idle_timeout_s": 5.0} | option_values
    app = create_app(
        ServerOptions(**values),
        pipeline_factory=recorder or PipelineRecorder(),
        annotate=overlay_annotator(),
        sources=sources,
        model=model,
        enrolment=enrolment,
    )
    async with TestClient(TestServer(app)) as client:
        yield client


def metric_value(text: str, name: str) -> float:
    """The value of an unlabelled sample in Prometheus text."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and not sample.labels:
                return float(sample.value)
    raise AssertionError(f"{name} not in metrics")


def run(coroutine_function: Callable[[], Any]) -> None:
    asyncio.run(asyncio.wait_for(coroutine_function(), timeout=60))


async def sessions_active(client: TestClient) -> int:
    response = await client.get("/healthz")
    assert response.status == 200
    return int((await response.json())["sessions_active"])


async def wait_until(predicate: Callable[[], Any], timeout_s: float = 15.0) -> None:
    async def poll() -> None:
        while not await predicate():
            await asyncio.sleep(0.05)

    await asyncio.wait_for(poll(), timeout_s)


async def json_error(response: Any, status: int) -> str:
    assert response.status == status, await response.text()
    assert response.content_type == "application/json"
    body = await response.json()
    assert body["status"] == status
    return str(body["error"])


# -- options -----------------------------------------------------------------------------


def test_binding_beyond_loopback_needs_a_token_and_tls() -> None:
    with pytest.raises(ValueError, match="without a token"):
        ServerOptions(host="0.0.0.0")
    with pytest.raises(ValueError, match="token must have at least"):
        ServerOptions(host="0.0.0.0", token="short")
    # Both ways out are named: a certificate, or loopback behind a TLS reverse proxy.
    with pytest.raises(ValueError, match=r"refusing to serve plain HTTP on 0\.0\.0\.0") as refused:
        ServerOptions(host="0.0.0.0", token=TOKEN)
    assert "--tls-cert" in str(refused.value) and "127.0.0.1 behind a TLS reverse proxy" in str(refused.value)
    assert "--allow-plain-http" in str(refused.value)
    with pytest.raises(ValueError, match="both a certificate and its key"):
        ServerOptions(host="0.0.0.0", token=TOKEN, tls_cert="cert.pem")
    secured = ServerOptions(host="0.0.0.0", token=TOKEN, tls_cert="c.pem", tls_key="k.pem")
    assert secured.token == TOKEN and secured.scheme == "https"
    plain = ServerOptions(host="0.0.0.0", token=TOKEN, allow_plain_http=True)
    assert plain.scheme == "http"
    assert ServerOptions(host="::1").token is None and ServerOptions(host="::1").scheme == "http"
    with pytest.raises(ValueError, match="max_token_failures must be >= 1"):
        ServerOptions(max_token_failures=0)


def test_loopback_ice_is_off_by_default_and_restored() -> None:
    original = aioice.ice.get_host_addresses

    async def body() -> None:
        async with serving(allow_loopback_ice=False):
            assert aioice.ice.get_host_addresses is original
            assert "127.0.0.1" not in aioice.ice.get_host_addresses(True, False)
        async with serving(allow_loopback_ice=True):
            assert "127.0.0.1" in aioice.ice.get_host_addresses(True, False)
        assert aioice.ice.get_host_addresses is original

    run(body)


# -- static files and headers ------------------------------------------------------------


def test_page_and_assets_are_served_with_security_headers() -> None:
    async def body() -> None:
        async with serving() as client:
            page = await client.get("/")
            assert page.status == 200
            html = await page.text()
            assert "/static/app.js" in html and "score-chart" in html
            policy = page.headers["Content-Security-Policy"]
            assert "default-src 'self'" in policy and "script-src 'self';" in policy
            assert "frame-ancestors 'none'" in policy and "unsafe-inline" not in policy
            # No inline script for the policy to have to allow: every <script> has a src.
            assert html.count("<script") == html.count('<script type="module" src=')
            assert page.headers["X-Content-Type-Options"] == "nosniff"
            assert page.headers["Referrer-Policy"] == "no-referrer"
            for name, kind in (
                ("app.js", "text/javascript"),
                ("chart.js", "text/javascript"),
                ("style.css", "text/css"),
            ):
                asset = await client.get(f"/static/{name}")
                assert asset.status == 200 and asset.content_type == kind
                assert len(await asset.read()) > 500

    run(body)


@pytest.mark.parametrize(
    "path",
    [
        "/static/",
        "/static",
        "/static/../app.py",
        "/static/%2e%2e/app.py",
        "/static/..%2fapp.py",
        "/static/%2e%2e%2f%2e%2e%2fpyproject.toml",
        "/static/__init__.py",
        "/static/app.js/",
        "/stream/server/app.py",
        "/etc/passwd",
        "/index.html/../../pyproject.toml",
    ],
)
def test_no_file_access_beyond_the_page_assets(path: str) -> None:
    async def body() -> None:
        async with serving() as client:
            response = await client.get(path)
            assert response.status == 404, (path, response.status)
            text = await response.text()
            assert "import" not in text and "[project]" not in text and "Index of" not in text

    run(body)


# -- token ---------------------------------------------------------------------------------


def test_token_is_required_on_every_api_route_and_metrics() -> None:
    async def body() -> None:
        async with serving(token=TOKEN, max_token_failures=100) as client:
            for method, path in (
                ("GET", "/api/model"),
                ("GET", "/api/sources"),
                ("GET", "/api/sessions"),
                ("POST", "/api/offer"),
                ("DELETE", "/api/sessions/abc"),
                ("GET", "/api/reference"),
                ("PUT", "/api/reference"),
                ("DELETE", "/api/reference"),
                ("GET", "/metrics"),
            ):
                for headers in (
                    {},
                    {"X-Deepwatch-Token": "wrong-" + TOKEN},
                    {"Authorization": "Bearer nope"},
                ):
                    response = await client.request(method, path, headers=headers)
                    assert "token" in await json_error(response, 401)
            assert (await client.get("/api/sources", headers=HEADERS)).status == 200
            assert (
                await client.get("/api/sources", headers={"Authorization": f"Bearer {TOKEN}"})
            ).status == 200
            assert (await client.get(f"/api/sources?token={TOKEN}")).status == 200
            assert (await client.get(f"/metrics?token={TOKEN}")).status == 200
            # The page itself and the liveness probe need no token.
            assert (await client.get("/")).status == 200
            assert (await client.get("/healthz")).status == 200

    run(body)


def test_token_errors_say_how_to_fix_them_and_every_rejection_is_logged_without_the_token(
    caplog: pytest.LogCaptureFixture,
) -> None:
    wrong = "wrong-guess-" + TOKEN

    async def body() -> None:
        async with serving(token=TOKEN) as client:
            missing = await json_error(await client.get("/api/model"), 401)
            assert missing.startswith("this server needs its access token") and "/?token=" in missing
            guessed = await json_error(await client.get(f"/api/sources?token={wrong}"), 401)
            assert guessed.startswith("wrong access token") and "--token" in guessed
            response = await client.post("/api/offer", data=b"{not json", headers=HEADERS | JSON_TYPE)
            assert (await json_error(response, 400)).startswith("body must be JSON")
            await json_error(await client.get("/no/such/page"), 404)

    with caplog.at_level(logging.INFO, logger="stream.server.security"):
        run(body)
    rejected = [r.getMessage() for r in caplog.records if r.getMessage().startswith("rejected ")]
    assert len(rejected) == 4, rejected
    assert rejected[0].startswith("rejected GET '/api/model' from 127.0.0.1: 401 this server needs")
    assert rejected[1].startswith("rejected GET '/api/sources' from 127.0.0.1: 401 wrong access token")
    assert rejected[2].startswith("rejected POST '/api/offer' from 127.0.0.1: 400 body must be JSON")
    assert rejected[3].startswith("rejected GET '/no/such/page' from 127.0.0.1: 404")
    assert all(TOKEN not in record.getMessage() for record in caplog.records)


def test_repeated_bad_tokens_from_one_client_get_429_until_the_window_passes() -> None:
    async def body() -> None:
        async with serving(token=TOKEN, max_token_failures=3, token_failure_window_s=0.5) as client:
            for _ in range(3):
                await json_error(
                    await client.get("/api/sources", headers={"X-Deepwatch-Token": "x" * 20}), 401
                )
            # Locked out: even the right token waits, so guessing cannot continue at full speed.
            locked = await client.get("/api/sources", headers=HEADERS)
            assert "too many wrong or missing tokens" in await json_error(locked, 429)
            assert 1 <= int(locked.headers["Retry-After"]) <= 1
            # The page and the liveness probe stay up for everyone.
            assert (await client.get("/healthz")).status == 200
            await asyncio.sleep(0.6)
            assert (await client.get("/api/sources", headers=HEADERS)).status == 200

    run(body)


def test_failure_limiter_counts_per_client_in_a_sliding_window() -> None:
    now = [100.0]
    limiter = TokenFailureLimiter(max_failures=3, window_s=10.0, clock=lambda: now[0])
    for _ in range(3):
        assert limiter.retry_after_s("10.0.0.1") is None
        limiter.record_failure("10.0.0.1")
        now[0] += 1.0
    # Failures at 100, 101, 102; now 103: the oldest ages out at 110.
    assert limiter.retry_after_s("10.0.0.1") == pytest.approx(7.0)
    assert limiter.retry_after_s("10.0.0.2") is None
    now[0] = 110.5
    assert limiter.retry_after_s("10.0.0.1") is None
    limiter.record_failure("10.0.0.1")
    assert limiter.retry_after_s("10.0.0.1") == pytest.approx(0.5)
    limiter.clear("10.0.0.1")
    assert limiter.retry_after_s("10.0.0.1") is None
    with pytest.raises(ValueError, match="max_failures >= 1"):
        TokenFailureLimiter(0, 1.0)


def test_model_info_reports_the_verdict_rule_and_the_checkpoints_validated_figure() -> None:
    shipped_like = ModelInfo.from_checkpoint(
        {"video_auc": 0.547979, "videos": 69, "window_auc": 0.55}, threshold=0.999, uncertain_margin=0.1
    )
    assert (
        shipped_like.trust_note == "cross-validated video AUC 0.55 on 69 videos: treat scores as unreliable"
    )
    assert shipped_like.trust_level == "unreliable"
    assert ModelInfo.from_checkpoint({"video_auc": 0.9}, threshold=0.5, uncertain_margin=0).trust_note == (
        "cross-validated video AUC 0.90: a score is a hint, not proof"
    )
    assert ModelInfo.from_checkpoint({"video_auc": 0.97}, threshold=0.5, uncertain_margin=0).trust_level == (
        "validated"
    )
    for metrics in ({}, {"video_auc": float("nan")}, {"video_auc": "0.9"}, {"video_auc": True}):
        none = ModelInfo.from_checkpoint(metrics, threshold=0.7, uncertain_margin=0.05)
        assert none.trust_note == NO_FIGURE_NOTE and none.trust_level == "unknown"
        assert none.trust_note.startswith("no validated figure in this checkpoint")

    async def body() -> None:
        async with serving(model=shipped_like) as client:
            response = await client.get("/api/model")
            assert response.status == 200
            assert await response.json() == {
                "trust_level": "unreliable",
                "threshold": 0.999,
                "uncertain_margin": 0.1,
                "real_at_most": None,
                "unsure_low": pytest.approx(0.899),
                "unsure_high": pytest.approx(1.099),
                "verdict_rule": shipped_like.verdict_rule,
                "validated_auc": 0.547979,
                "validated_videos": 69,
                "trust_note": shipped_like.trust_note,
            }
        async with serving() as client:
            default = await (await client.get("/api/model")).json()
            assert default["trust_note"] == NO_FIGURE_NOTE and default["threshold"] == 0.5

    run(body)


def test_the_verdict_rule_is_spelled_out_in_both_forms() -> None:
    shipped = ModelInfo(threshold=0.999, uncertain_margin=0.1)
    # The truth about the shipped checkpoint: with its threshold and the default margin no face
    # can ever be called FAKE.
    assert shipped.verdict_rule == (
        "Verdicts follow this model's threshold 0.999, margin 0.100: REAL below 0.899, FAKE never "
        "(threshold + margin is above 1), UNSURE between (and until a face has a full window of samples)."
    )
    calibrated = ModelInfo(threshold=0.93, uncertain_margin=0.1, real_at_most=0.41)
    assert calibrated.unsure_band == (0.41, 0.93)
    assert calibrated.verdict_rule.startswith(
        "Verdicts follow thresholds calibrated on real faces (FAKE threshold 0.930): REAL at or below 0.410, "
        "FAKE above 0.930, UNSURE between"
    )
    with pytest.raises(ValueError, match="real_at_most must be in"):
        ModelInfo(threshold=0.5, real_at_most=0.6)


def test_boxes_on_the_page_video_take_their_verdicts_colour() -> None:
    import numpy as np

    from stream.contracts import FaceResult
    from stream.live.overlay import NOT_READY_RGB

    def face(verdict: str, p_fake: float, ready: bool = True) -> FaceResult:
        box = np.array([0, 0, 10, 10], dtype=np.float32)
        return FaceResult(1, box, True, p_fake, ready, verdict, (p_fake,), 16)

    # p_fake 0.71 under a 0.999 threshold is REAL: green, not the orange its score alone would give.
    assert verdict_colour(face("REAL", 0.71)) == (0, 255, 0)
    assert verdict_colour(face("UNSURE", 0.95)) == (255, 255, 0)
    assert verdict_colour(face("FAKE", 0.2)) == (255, 0, 0)
    assert verdict_colour(face("UNSURE", 0.5, ready=False)) == NOT_READY_RGB


# -- cross-site requests -----------------------------------------------------------------


def test_cross_site_requests_are_refused() -> None:
    async def body() -> None:
        async with serving() as client:
            offer = json.dumps({"type": "offer", "sdp": "v=0\r\n"})
            # A form or a "simple" fetch from another site cannot send application/json.
            response = await client.post("/api/offer", data=offer, headers={"Content-Type": "text/plain"})
            assert "application/json" in await json_error(response, 415)
            response = await client.post(
                "/api/offer", data=offer, headers=JSON_TYPE | {"Origin": "https://evil.example"}
            )
            assert "cross-origin" in await json_error(response, 403)
            # DNS rebinding: evil.example resolving to 127.0.0.1 reaches us with its own Host.
            response = await client.get("/api/sources", headers={"Host": "evil.example:8080"})
            assert "not a loopback name" in await json_error(response, 403)
            same_origin = {"Origin": str(client.make_url("")).rstrip("/")}
            assert (await client.get("/api/sources", headers=same_origin)).status == 200
            assert (await client.get("/api/sources", headers={"Host": "localhost:8080"})).status == 200
            assert await sessions_active(client) == 0
        # With a token (any host may be right, e.g. a reverse proxy) only Origin is checked.
        async with serving(token=TOKEN, host="0.0.0.0", allow_plain_http=True) as client:
            response = await client.get("/api/sources", headers=HEADERS | {"Host": "deepwatch.lan"})
            assert response.status == 200

    run(body)


# -- malformed input -----------------------------------------------------------------------


def test_malformed_offers_get_json_errors_and_the_server_keeps_serving() -> None:
    garbage_sdp = (
        "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nm=video notaport UDP/TLS/RTP/SAVPF 96\r\nthis is not sdp\r\n"
    )
    bodies: list[tuple[bytes, int, str]] = [
        (b"", 400, "JSON"),
        (b"{not json", 400, "JSON"),
        (b"\xff\xfe\x00garbage", 400, "JSON"),
        (b"[1, 2, 3]", 400, "JSON object"),
        (json.dumps({"type": "answer", "sdp": "v=0"}).encode(), 400, "type"),
        (json.dumps({"type": "offer"}).encode(), 400, "sdp"),
        (json.dumps({"type": "offer", "sdp": 42}).encode(), 400, "sdp"),
        (json.dumps({"type": "offer", "sdp": "v=0", "extra": 1}).encode(), 400, "unknown keys"),
        (json.dumps({"type": "offer", "sdp": "v=0", "source": 7}).encode(), 400, "source"),
        (json.dumps({"type": "offer", "sdp": garbage_sdp}).encode(), 400, "offer"),
        (json.dumps({"type": "offer", "sdp": "v=0\r\n"}).encode(), 400, "offer"),
        (json.dumps({"type": "offer", "sdp": "v=0\r\n", "source": "nope"}).encode(), 404, "unknown source"),
        (b"x" * (64 * 1024 + 1), 413, "larger than"),
    ]

    async def body() -> None:
        async with serving(token=TOKEN) as client:
            for raw, status, words in bodies:
                response = await client.post("/api/offer", data=raw, headers=HEADERS | JSON_TYPE)
                assert words in await json_error(response, status), raw[:60]
                assert await sessions_active(client) == 0
            metrics = await (await client.get("/metrics", headers=HEADERS)).text()
            assert 'deepwatch_bad_requests_total{status="400"} 11.0' in metrics
            assert 'deepwatch_bad_requests_total{status="413"} 1.0' in metrics
            # Still serving a real peer after all that.
            peer = ClientPeer(SolidTrack(100))
            response = await client.post("/api/offer", json=await peer.offer_body(), headers=HEADERS)
            assert response.status == 200, await response.text()
            await peer.accept(await response.json())
            await peer.wait_for(lambda: len(peer.scores()) >= 3)
            await peer.close()

    run(body)


def test_chunked_oversized_body_is_refused() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(100):
            yield b"y" * 1024

    async def body() -> None:
        async with serving() as client:
            response = await client.post("/api/offer", data=chunks(), headers=JSON_TYPE)
            await json_error(response, 413)
            assert await sessions_active(client) == 0

    run(body)


def test_offer_with_audio_or_without_video_is_rejected() -> None:
    async def body() -> None:
        async with serving() as client:
            peer = ClientPeer(SolidTrack(100))
            peer.pc.addTransceiver("audio", direction="sendrecv")
            response = await client.post("/api/offer", json=await peer.offer_body())
            assert "exactly one video" in await json_error(response, 400)
            await peer.close()
            receive_only = ClientPeer(None)
            response = await client.post("/api/offer", json=await receive_only.offer_body())
            assert "no video track" in await json_error(response, 400)
            await receive_only.close()
            assert await sessions_active(client) == 0

    run(body)


def test_offer_bundling_onto_a_missing_section_is_refused_and_leaves_no_session() -> None:
    # Found by fuzzing: aiortc bundled every section onto a transport that did not exist, the
    # answer failed with AttributeError (a 500) and the half-built session never closed.
    async def body() -> None:
        async with serving() as client:
            peer = ClientPeer(SolidTrack(100))
            offer = await peer.offer_body()
            await peer.close()
            assert "a=group:BUNDLE 0 1" in offer["sdp"]
            offer["sdp"] = offer["sdp"].replace("a=group:BUNDLE 0 1", "a=group:BUNDLE 7 0 1")
            response = await client.post("/api/offer", json=offer)
            assert "BUNDLE group starts with mid '7'" in await json_error(response, 400)
            assert await sessions_active(client) == 0

    run(body)


def test_malformed_http_is_one_warning_line_not_a_traceback(caplog: pytest.LogCaptureFixture) -> None:
    async def body() -> None:
        async with serving() as client:
            reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
            writer.write(b"POST /api/offer \xa9\x06\r\n\r\n")
            await writer.drain()
            answer = await reader.read()
            writer.close()
            assert answer.startswith((b"HTTP/1.0 400", b"HTTP/1.1 400")), answer[:40]
            assert await sessions_active(client) == 0

    with caplog.at_level(logging.INFO, logger="aiohttp.server"):
        run(body)
    records = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert [r.levelname for r in records] == ["WARNING"]
    assert records[0].getMessage().startswith("rejected malformed HTTP from 127.0.0.1: 400 Bad status line")
    assert "\n" not in records[0].getMessage()
    assert records[0].exc_info is None


# -- sessions ------------------------------------------------------------------------------


def test_a_session_scores_the_frames_the_peer_sends_and_cleans_up() -> None:
    recorder = PipelineRecorder()

    async def body() -> None:
        async with serving(recorder=recorder) as client:
            server = client.app[SERVER_KEY]
            peer = ClientPeer(SolidTrack(204))
            response = await client.post("/api/offer", json=await peer.offer_body())
            assert response.status == 200
            answer = await response.json()
            await peer.accept(answer)
            await peer.wait_for(lambda: sum(1 for m in peer.scores() if m["faces"][0]["ready"]) >= 10)
            await peer.wait_for(lambda: len(peer.received_frames) >= 5)
            assert await sessions_active(client) == 1
            listed = await (await client.get("/api/sessions")).json()
            assert [s["session_id"] for s in listed["sessions"]] == [answer["session_id"]]

            last = peer.scores()[-1]
            face = last["faces"][0]
            # The fake scores brightness: 204/255 = 0.8, give or take the video codec.
            assert face["p_fake"] == pytest.approx(0.8, abs=0.03)
            assert face["verdict"] == "FAKE" and face["track_id"] == 1
            assert last["width"] == 320 and last["height"] == 240 and last["server_latency_ms"] >= 0
            # The server's share of camera-to-screen: arrival to annotated frame sent back.
            assert 0 < last["server_video_latency_ms"] < 1000
            # The video that comes back carries the overlay: the box edge is drawn at x = 80
            # in the FAKE verdict's colour (red, as the label says), the middle keeps the grey.
            frame = peer.received_frames[-1]
            assert frame.shape == (240, 320, 3)
            assert abs(int(frame[120, 160].mean()) - 204) < 10
            edge = frame[100:140, 79:82].reshape(-1, 3).mean(axis=0)
            assert edge[0] > 200 and edge[1] < 60 and edge[2] < 60, edge

            pipeline = recorder.built[0]
            inference_threads = {
                t.ident for t in threading.enumerate() if t.name.startswith("deepwatch-inference")
            }
            assert len(pipeline.thread_ids) == 1 and pipeline.thread_ids <= inference_threads

            metrics = await (await client.get("/metrics")).text()
            for name in (
                "deepwatch_fps",
                "deepwatch_latency_seconds_bucket",
                "deepwatch_frames_dropped_total",
                "deepwatch_frames_processed_total",
                "deepwatch_active_tracks",
                "deepwatch_alerts_total",
                "deepwatch_sessions_active",
            ):
                assert name in metrics
            assert "deepwatch_active_tracks 1.0" in metrics
            assert "deepwatch_sessions_active 1.0" in metrics

            await peer.close()
            await wait_until(lambda: _is_zero(client))
            assert pipeline.finished.wait(5)
            metrics = await (await client.get("/metrics")).text()
            assert "deepwatch_active_tracks 0.0" in metrics and "deepwatch_fps 0.0" in metrics
            assert not server.sessions

    run(body)


async def _is_zero(client: TestClient) -> bool:
    return await sessions_active(client) == 0


def test_alerts_reach_the_page_and_the_metrics() -> None:
    async def body() -> None:
        async with serving(recorder=PipelineRecorder(alert_above=0.5)) as client:
            peer = ClientPeer(SolidTrack(230))
            response = await client.post("/api/offer", json=await peer.offer_body())
            await peer.accept(await response.json())
            await peer.wait_for(lambda: sum(len(m["events"]) for m in peer.scores()) >= 3)
            event = next(e for m in peer.scores() for e in m["events"])
            assert event["kind"] == "alert" and event["track_id"] == 1 and event["data"]["p_fake"] > 0.8
            metrics = await (await client.get("/metrics")).text()
            assert metric_value(metrics, "deepwatch_alerts_total") >= 3
            await peer.close()

    run(body)


def test_slow_inference_does_not_slow_the_video() -> None:
    recorder = PipelineRecorder(delay_s=0.3)

    async def body() -> None:
        async with serving(recorder=recorder) as client:
            peer = ClientPeer(SolidTrack(180))
            response = await client.post("/api/offer", json=await peer.offer_body())
            await peer.accept(await response.json())
            await peer.wait_for(lambda: len(peer.scores()) >= 4, timeout_s=30)
            scores, frames = len(peer.scores()), peer.frames_received
            # 30 fps in, about 3 inferences a second: the video keeps its rate, the scores lag.
            assert frames >= 3 * scores, (frames, scores)
            assert len(recorder.built[0].frames) <= scores + 1
            last = peer.scores()[-1]
            assert last["frames_dropped"] >= frames // 2
            assert last["faces"][0]["p_fake"] == pytest.approx(180 / 255, abs=0.03)
            metrics = await (await client.get("/metrics")).text()
            assert metric_value(metrics, "deepwatch_frames_dropped_total") >= frames // 2
            assert metric_value(metrics, "deepwatch_video_latency_seconds_count") >= frames - 5
            # Every displayed frame after the first result carries its box (drawn by the overlay).
            edge = peer.received_frames[-1][100:140, 79:82].reshape(-1, 3).mean(axis=0)
            assert edge[0] > 200 and edge[2] < 60, edge
            await peer.close()

    run(body)


def test_a_failing_pipeline_ends_its_session_only() -> None:
    async def body() -> None:
        failing = PipelineRecorder(fail_at=5)
        async with serving(recorder=failing) as client:
            peer = ClientPeer(SolidTrack(40))
            response = await client.post("/api/offer", json=await peer.offer_body())
            await peer.accept(await response.json())
            await wait_until(lambda: _is_zero(client))
            errors = [m["error"] for m in peer.messages if m["type"] == "error"]
            assert errors and "model exploded" in errors[0]
            assert failing.built[0].finished.wait(5)
            await peer.close()
            # The next session gets a fresh pipeline (which fails at its own 5th frame, later).
            fresh = ClientPeer(SolidTrack(60))
            response = await client.post("/api/offer", json=await fresh.offer_body())
            await fresh.accept(await response.json())
            await fresh.wait_for(lambda: len(fresh.scores()) >= 3)
            assert len(failing.built) == 2
            await fresh.close()

    run(body)


def test_session_limit_refuses_extra_offers_until_one_closes() -> None:
    async def body() -> None:
        async with serving(max_sessions=1) as client:
            first = ClientPeer(SolidTrack(50))
            response = await client.post("/api/offer", json=await first.offer_body())
            assert response.status == 200
            answer = await response.json()
            await first.accept(answer)
            second = ClientPeer(SolidTrack(60))
            response = await client.post("/api/offer", json=await second.offer_body())
            assert "session limit" in await json_error(response, 503)
            metrics = await (await client.get("/metrics")).text()
            assert 'deepwatch_sessions_rejected_total{reason="limit"} 1.0' in metrics
            # The page's Stop button: DELETE frees the slot at once.
            deleted = await client.delete(f"/api/sessions/{answer['session_id']}")
            assert deleted.status == 200
            assert await sessions_active(client) == 0
            await json_error(await client.delete(f"/api/sessions/{answer['session_id']}"), 404)
            third = ClientPeer(SolidTrack(70))
            response = await client.post("/api/offer", json=await third.offer_body())
            assert response.status == 200
            await third.accept(await response.json())
            await third.wait_for(lambda: len(third.scores()) >= 3)
            for peer in (first, second, third):
                await peer.close()

    run(body)


def test_a_peer_that_vanishes_is_closed_after_the_idle_timeout() -> None:
    recorder = PipelineRecorder()

    async def body() -> None:
        async with serving(recorder=recorder, idle_timeout_s=1.0) as client:
            track = SolidTrack(120)
            peer = ClientPeer(track)
            response = await client.post("/api/offer", json=await peer.offer_body())
            await peer.accept(await response.json())
            await peer.wait_for(lambda: len(peer.scores()) >= 3)
            # The camera freezes: no RTCP BYE, no DTLS close, just silence.
            track.stop()
            await wait_until(lambda: _is_zero(client), timeout_s=10)
            assert recorder.built[0].finished.wait(5)
            sessions = await (await client.get("/api/sessions")).json()
            assert sessions["sessions"] == []
            # A new peer is served.
            fresh = ClientPeer(SolidTrack(30))
            response = await client.post("/api/offer", json=await fresh.offer_body())
            await fresh.accept(await response.json())
            await fresh.wait_for(lambda: len(fresh.scores()) >= 3)
            assert fresh.scores()[-1]["faces"][0]["p_fake"] == pytest.approx(30 / 255, abs=0.03)
            await fresh.close()
            await peer.close()

    run(body)


def test_data_channel_messages_are_checked() -> None:
    async def body() -> None:
        async with serving() as client:
            peer = ClientPeer(SolidTrack(90))
            response = await client.post("/api/offer", json=await peer.offer_body())
            await peer.accept(await response.json())
            await peer.wait_for(lambda: len(peer.scores()) >= 2)
            for raw in (
                "not json",
                "[]",
                '{"type": "hack"}',
                '{"type": "ping", "client_time_ms": "x"}',
                "x" * (MAX_CLIENT_MESSAGE_CHARS + 1),
                b"\x00\x01",
            ):
                peer.channel.send(raw)
            peer.channel.send('{"type": "ping", "client_time_ms": 12.5}')
            await peer.wait_for(lambda: any(m["type"] == "pong" for m in peer.messages))
            errors = [m["error"] for m in peer.messages if m["type"] == "error"]
            assert len(errors) == 6, errors
            assert any("JSON" in e for e in errors) and any("binary" in e for e in errors)
            pong = next(m for m in peer.messages if m["type"] == "pong")
            assert pong["client_time_ms"] == 12.5
            # The session goes on.
            count = len(peer.scores())
            await peer.wait_for(lambda: len(peer.scores()) > count + 3)
            await peer.close()

    run(body)


def test_server_side_source_is_streamed_to_a_receive_only_peer() -> None:
    made: list[SolidSource] = []

    def open_door() -> SolidSource:
        made.append(SolidSource(150))
        return made[-1]

    async def body() -> None:
        sources: dict[str, SourceOpener] = {
            "door": open_door,
            "broken": lambda: SolidSource(1, fail_on_start=True),
        }
        async with serving(sources=sources) as client:
            listed = await (await client.get("/api/sources")).json()
            assert listed["sources"] == ["broken", "door"]
            peer = ClientPeer(None)
            response = await client.post("/api/offer", json=await peer.offer_body(source="door"))
            assert response.status == 200, await response.text()
            await peer.accept(await response.json())
            await peer.wait_for(lambda: len(peer.scores()) >= 5)
            await peer.wait_for(lambda: len(peer.received_frames) >= 3)
            assert peer.scores()[-1]["faces"][0]["p_fake"] == pytest.approx(150 / 255, abs=1e-6)
            assert abs(int(peer.received_frames[-1][120, 160].mean()) - 150) < 10
            # A peer that sends video while naming a source is refused, and so is a dead source.
            sender = ClientPeer(SolidTrack(10))
            response = await client.post("/api/offer", json=await sender.offer_body(source="door"))
            assert "recvonly" in await json_error(response, 400)
            broken = ClientPeer(None)
            response = await client.post("/api/offer", json=await broken.offer_body(source="broken"))
            assert "cannot connect" in await json_error(response, 502)
            await wait_until(lambda: _is_at_most_one(client))
            await peer.close()
            await wait_until(lambda: _is_zero(client))
            assert all(source.stopped.is_set() for source in made), "every opened source is stopped"
            for other in (sender, broken):
                await other.close()

    run(body)


async def _is_at_most_one(client: TestClient) -> bool:
    return await sessions_active(client) <= 1


def test_server_shutdown_closes_open_sessions() -> None:
    recorder = PipelineRecorder()

    async def body() -> None:
        app = create_app(
            ServerOptions(port=0, allow_loopback_ice=True),
            pipeline_factory=recorder,
            annotate=overlay_annotator(),
        )
        client = TestClient(TestServer(app))
        await client.start_server()
        peer = ClientPeer(SolidTrack(80))
        response = await client.post("/api/offer", json=await peer.offer_body())
        await peer.accept(await response.json())
        await peer.wait_for(lambda: len(peer.scores()) >= 2)
        await client.close()
        assert recorder.built[0].finished.is_set()
        assert not app[SERVER_KEY].sessions
        assert not [t for t in threading.enumerate() if t.name.startswith("deepwatch-inference")]
        await peer.close()

    run(body)


def test_unused_handler_types_are_aiohttp_apps() -> None:
    assert isinstance(
        create_app(ServerOptions(), pipeline_factory=PipelineRecorder(), annotate=overlay_annotator()),
        web.Application,
    )
