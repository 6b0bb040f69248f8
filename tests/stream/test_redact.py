"""Credentials never reach a log line."""

from __future__ import annotations

import logging

import pytest

from stream.sources.redact import RedactingFilter, redact


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("rtsp://admin:hunter2@10.0.0.5:554/stream1", "rtsp://admin:***@10.0.0.5:554/stream1"),
        ("http://token@cam.local/video.mjpg", "http://***@cam.local/video.mjpg"),
        ("https://cam/x?user=a&password=s3cr%40t&fps=5", "https://cam/x?user=a&password=***&fps=5"),
        ("rtsp://u:p@h/a?token=abc", "rtsp://u:***@h/a?token=***"),
        (
            "lost rtsp://a:b@h/x: timeout; retry rtsp://c:d@k/y",
            "lost rtsp://a:***@h/x: timeout; retry rtsp://c:***@k/y",
        ),
        ("rtsp://u:p@ss:w0rd@host/s", "rtsp://u:***@host/s"),
        ("/videos/clip.mp4", "/videos/clip.mp4"),
        ("rtsp://camera.local/stream", "rtsp://camera.local/stream"),
        ("what? nothing=secret here", "what? nothing=secret here"),
    ],
)
def test_redact(text, expected):
    assert redact(text) == expected
    assert "hunter2" not in redact(text) and "s3cr" not in redact(text)


def test_filter_redacts_formatted_log_lines(caplog):
    logger = logging.getLogger("tests.redact")
    caplog.handler.addFilter(RedactingFilter())
    with caplog.at_level(logging.INFO, logger="tests.redact"):
        logger.info("connecting to %s (attempt %d)", "rtsp://admin:hunter2@10.0.0.5/s", 3)
    assert caplog.records[0].getMessage() == "connecting to rtsp://admin:***@10.0.0.5/s (attempt 3)"
    assert "hunter2" not in caplog.text
