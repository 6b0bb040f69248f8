"""``deepwatch serve``: refusing unsafe setups before anything loads, and a real start and stop."""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
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
    with pytest.raises(ValueError, match="source name must be"):
        serve.parse_sources(["front door=rtsp://cam/1"])


@pytest.mark.parametrize(
    ("sources", "pattern"),
    [
        ("[a, b]", r"bad value for 'server\.sources'.*mapping"),
        ("{'bad name': x.mp4}", r"bad value for 'server\.sources'.*source name must be"),
        ("{door: ''}", r"bad value for 'server\.sources'.*non-empty spec"),
        ("{door: 5}", r"bad value for 'server\.sources'.*non-empty spec"),
    ],
)
def test_config_sources_are_checked_when_the_file_loads(
    sources: str, pattern: str, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "serve.yaml"
    path.write_text(f"server:\n  sources: {sources}\n")
    assert run_serve(["--config", str(path)]) == 2
    assert re.search(pattern, capsys.readouterr().err)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_the_command_serves_until_interrupted(checkpoint_args: list[str], tmp_path: pathlib.Path) -> None:
    port = _free_port()
    config = tmp_path / "serve.yaml"
    # Sources come from the config's server section and from --source (which wins on a name clash).
    config.write_text(
        "server:\n  sources:\n    lobby: rtsp://viewer:hunter2@127.0.0.1:9/lobby\n    door: old.mp4\n"
    )
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
            "--config",
            str(config),
            "--source",
            "door=rtsp://127.0.0.1:9/door",
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
            assert sorted(json.load(response)["sources"]) == ["door", "lobby"]
    finally:
        process.send_signal(signal.SIGINT)
        output = process.communicate(timeout=60)[0]
    assert process.returncode == 0, output
    assert "server-side sources: door, lobby" in output
    assert TOKEN not in output and "hunter2" not in output
