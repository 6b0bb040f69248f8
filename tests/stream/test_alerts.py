"""The alert rule (sustain + hysteresis) and the non-blocking webhook."""

from __future__ import annotations

import http.server
import json
import threading
import time
from typing import ClassVar

import pytest

from stream.live.alerts import AlertConfig, AlertMonitor, ReferenceAlertMonitor
from stream.sinks.webhook import WebhookNotifier


def feed(monitor: AlertMonitor, values: list[float], period_s: float = 0.5) -> list[float]:
    """Times at which the alert fired for a score sequence sampled every period_s."""
    return [i * period_s for i, p in enumerate(values) if monitor.update("t", p, True, i * period_s)]


def test_fires_only_after_the_score_is_sustained():
    monitor = AlertMonitor(threshold=0.8, hysteresis=0.2, sustain_s=1.0)
    assert feed(monitor, [0.9, 0.9, 0.9, 0.9, 0.9]) == [1.0]


def test_short_spikes_do_not_fire():
    monitor = AlertMonitor(threshold=0.8, hysteresis=0.2, sustain_s=1.0)
    assert feed(monitor, [0.9, 0.5, 0.9, 0.5, 0.9, 0.5]) == []


def test_hysteresis_keeps_timer_through_small_dips_and_rearms_only_below_release():
    monitor = AlertMonitor(threshold=0.8, hysteresis=0.2, sustain_s=1.0)
    # Dips to 0.7 (above the 0.6 release level) do not reset the timer; it fires at t=1.0 where
    # the score is back above 0.8. Hovering at 0.7 afterwards does not re-arm; 0.5 does.
    values = [0.85, 0.7, 0.85, 0.7, 0.7, 0.85, 0.5, 0.9, 0.9, 0.9]
    assert feed(monitor, values) == [1.0, 4.5]


def test_not_ready_or_nan_scores_are_ignored_and_forget_resets():
    monitor = AlertMonitor(threshold=0.8, hysteresis=0.1, sustain_s=0.0)
    assert not monitor.update("t", float("nan"), True, 0.0)
    assert not monitor.update("t", 0.99, False, 0.1)
    assert monitor.update("t", 0.99, True, 0.2)
    assert monitor.is_alerting("t")
    monitor.forget("t")
    assert not monitor.is_alerting("t")
    assert monitor.update("t", 0.99, True, 0.3)


def feed_verdicts(monitor: ReferenceAlertMonitor, verdicts: str, period_s: float = 0.5) -> list[float]:
    """Times at which the enrolment alert fired; verdicts as letters: m match, f face_only,
    h head_only, o other, u unsure."""
    names = {"m": "match", "f": "face_only", "h": "head_only", "o": "other", "u": "unsure"}
    return [
        i * period_s for i, letter in enumerate(verdicts) if monitor.update("t", names[letter], i * period_s)
    ]


def test_the_enrolment_alert_fires_on_a_sustained_swap_signature_and_rearms_at_match():
    monitor = ReferenceAlertMonitor(sustain_s=1.0)
    assert feed_verdicts(monitor, "mmhhhhh") == [2.0]
    # Once fired, it stays quiet until a window matches again; then a new stretch fires again.
    assert feed_verdicts(ReferenceAlertMonitor(1.0), "hhhffffmhhh") == [1.0, 5.0]
    # "other" and "unsure" neither start the timer nor reset it; it fires only on a swap's signature.
    assert feed_verdicts(ReferenceAlertMonitor(1.0), "oooooouuuu") == []
    assert feed_verdicts(ReferenceAlertMonitor(1.0), "hoohm") == [1.5]
    assert feed_verdicts(ReferenceAlertMonitor(1.0), "hooo" + "h") == [2.0]
    # A stretch broken by a match starts over.
    assert feed_verdicts(ReferenceAlertMonitor(1.0), "hmhmhmhm") == []
    # While another face matches the enrolled person, the alert waits; it fires once none does.
    monitor = ReferenceAlertMonitor(1.0)
    assert not any(monitor.update("t", "head_only", 0.5 * i, held=True) for i in range(6))
    assert monitor.update("t", "head_only", 3.0, held=False)
    # Someone else enrolled: a track that already alerted starts afresh, without a match between.
    monitor = ReferenceAlertMonitor(1.0)
    assert feed_verdicts(monitor, "hhhh") == [1.0]
    monitor.rearm()
    assert [t for t in (2.0, 2.5, 3.0) if monitor.update("t", "head_only", t)] == [3.0]
    monitor = ReferenceAlertMonitor(0.0)
    assert monitor.update("t", "face_only", 0.0)
    monitor.forget("t")
    assert monitor.update("t", "face_only", 0.1)
    with pytest.raises(ValueError, match="sustain_s"):
        ReferenceAlertMonitor(-1.0)


def test_config_validation():
    with pytest.raises(ValueError, match="webhook_url must be an http"):
        AlertConfig(webhook_url="file:///etc/passwd")
    with pytest.raises(ValueError, match="hysteresis"):
        AlertConfig(hysteresis=1.5)


class _Recorder(http.server.BaseHTTPRequestHandler):
    received: ClassVar[list[dict]] = []
    authorizations: ClassVar[list[str | None]] = []
    delay_s = 0.0

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        time.sleep(self.delay_s)
        type(self).received.append(json.loads(body))
        type(self).authorizations.append(self.headers.get("Authorization"))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook_server():
    handler = type("Handler", (_Recorder,), {"received": [], "authorizations": [], "delay_s": 0.0})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, handler
    server.shutdown()
    server.server_close()


def test_webhook_posts_json(webhook_server):
    server, handler = webhook_server
    notifier = WebhookNotifier(f"http://127.0.0.1:{server.server_address[1]}/hook", timeout_s=2.0)
    notifier.start()
    assert notifier.send({"kind": "alert", "track_id": 3})
    assert notifier.send({"kind": "alert", "track_id": 4})
    notifier.stop()
    assert handler.received == [{"kind": "alert", "track_id": 3}, {"kind": "alert", "track_id": 4}]
    assert (notifier.sent, notifier.failed, notifier.dropped) == (2, 0, 0)


def test_webhook_credentials_in_the_url_become_basic_auth(webhook_server, caplog):
    server, handler = webhook_server
    notifier = WebhookNotifier(f"http://alert%40bot:p%3Ass@127.0.0.1:{server.server_address[1]}/hook")
    notifier.start()
    notifier.send({"kind": "alert"})
    notifier.stop()
    assert handler.received == [{"kind": "alert"}]
    # base64("alert@bot:p:ss")
    assert handler.authorizations == ["Basic YWxlcnRAYm90OnA6c3M="]
    assert "p%3Ass" not in caplog.text


def test_slow_webhook_never_blocks_and_drops_beyond_the_queue(webhook_server):
    server, handler = webhook_server
    handler.delay_s = 0.5
    notifier = WebhookNotifier(
        f"http://127.0.0.1:{server.server_address[1]}/hook", timeout_s=5.0, queue_size=2
    )
    notifier.start()
    accepted = [notifier.send({"n": n}) for n in range(10)]
    # One is being posted, two wait in the queue; the rest are dropped, not waited for.
    assert accepted.count(True) in (2, 3)
    assert notifier.dropped == accepted.count(False)
    notifier.stop()


def test_unreachable_webhook_counts_failures_and_redacts(caplog):
    notifier = WebhookNotifier("http://user:secret@127.0.0.1:9/hook", timeout_s=1.0)
    notifier.start()
    notifier.send({"kind": "alert"})
    notifier.stop()
    assert notifier.failed == 1
    assert "secret" not in caplog.text
    assert "http://user:***@127.0.0.1:9/hook" in caplog.text
