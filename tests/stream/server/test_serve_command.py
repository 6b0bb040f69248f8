"""``deepwatch serve``: refusing unsafe setups before anything loads, and a real start and stop."""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from stream.commands import serve

TOKEN = "a-long-enough-token-0123"


def run_serve(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    serve.register(parser.add_subparsers())
    args = parser.parse_args(["serve", *argv])
    return int(args.func(args))


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.10", "::", "example.org"])
def test_binding_beyond_loopback_without_a_token_refuses_to_start(
    host: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(serve.TOKEN_ENV, raising=False)
    assert run_serve(["--host", host]) == 2
    error = capsys.readouterr().err
    assert f"refusing to listen on {host} without a token" in error and "--token" in error


def test_bad_flags_are_refused_with_a_reason(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_serve(["--host", "0.0.0.0", "--token", "short"]) == 2
    assert "token must have at least 16 characters" in capsys.readouterr().err
    assert run_serve(["--max-sessions", "0"]) == 2
    assert "max_sessions must be >= 1" in capsys.readouterr().err
    assert run_serve(["--source", "no-equals-sign"]) == 2
    assert "NAME=SPEC" in capsys.readouterr().err
    assert run_serve(["--source", "a=1", "--source", "a=2"]) == 2
    assert "given twice" in capsys.readouterr().err


def test_parse_sources() -> None:
    assert serve.parse_sources(["door = rtsp://cam/1", "desk=0"]) == {"door": "rtsp://cam/1", "desk": "0"}
    with pytest.raises(ValueError, match="NAME=SPEC"):
        serve.parse_sources(["=x"])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_the_command_serves_until_interrupted(checkpoint_args: list[str]) -> None:
    port = _free_port()
    env = os.environ | {serve.TOKEN_ENV: TOKEN}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "stream.cli",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            *checkpoint_args,
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
                    assert json.load(response)["sessions_active"] == 0
                break
            except (urllib.error.URLError, ConnectionError):
                assert process.poll() is None, process.communicate()[0]
                assert time.monotonic() < deadline, "server did not come up"
                time.sleep(0.5)
        # The token from the environment guards the API.
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/sources", timeout=5)
        assert refused.value.code == 401
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/sources", headers={"Authorization": f"Bearer {TOKEN}"}
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            assert json.load(response)["sources"] == []
    finally:
        process.send_signal(signal.SIGINT)
        output = process.communicate(timeout=60)[0]
    assert process.returncode == 0, output
    assert TOKEN not in output
