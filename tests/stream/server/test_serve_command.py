"""``deepwatch serve``: refusing unsafe setups before anything loads, and a real start and stop."""

from __future__ import annotations

import argparse
import http.client
import json
import os
import pathlib
import re
import signal
import socket
import ssl
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


def test_plain_http_beyond_loopback_exits_non_zero_before_binding_and_names_both_fixes(
    tmp_path: pathlib.Path,
) -> None:
    # A real process, so the exit status is what a shell sees; it must refuse before loading
    # models or binding (a bind to 0.0.0.0 would reach the network), hence the short timeout.
    result = subprocess.run(
        [sys.executable, "-m", "stream.cli", "serve", "--host", "0.0.0.0", "--token", TOKEN],
        capture_output=True,
        text=True,
        timeout=60,
        env=os.environ | {"PYTHONPATH": str(pathlib.Path(serve.__file__).resolve().parents[2])},
    )
    assert result.returncode == 2, result.stderr
    assert "refusing to serve plain HTTP on 0.0.0.0" in result.stderr
    assert "--tls-cert FILE --tls-key FILE" in result.stderr and "--make-cert DIR" in result.stderr
    assert "127.0.0.1 behind a TLS reverse proxy" in result.stderr
    assert TOKEN not in result.stderr + result.stdout


def test_tls_settings_come_from_the_config_and_bad_files_are_refused(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "serve.yaml"
    config.write_text(f"server:\n  tls_cert: {tmp_path / 'missing.pem'}\n  tls_key: {tmp_path / 'k.pem'}\n")
    assert run_serve(["--config", str(config)]) == 2
    assert "TLS certificate file" in capsys.readouterr().err
    config.write_text(f"server:\n  tls_cert: {tmp_path / 'c.pem'}\n")
    assert run_serve(["--config", str(config)]) == 2
    assert "both a certificate and its key" in capsys.readouterr().err
    config.write_text("server:\n  tls_cert: 5\n")
    assert run_serve(["--config", str(config)]) == 2
    assert "'server.tls_cert'" in capsys.readouterr().err
    # A key that does not belong to the certificate.
    assert run_serve(["--make-cert", str(tmp_path / "a")]) == 0
    assert run_serve(["--make-cert", str(tmp_path / "b")]) == 0
    capsys.readouterr()
    cert, other_key = tmp_path / "a" / "deepwatch-cert.pem", tmp_path / "b" / "deepwatch-key.pem"
    assert run_serve(["--tls-cert", str(cert), "--tls-key", str(other_key)]) == 2
    assert "the key must belong to the certificate" in capsys.readouterr().err


def test_make_cert_writes_a_self_signed_certificate_for_the_host(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cryptography import x509

    folder = tmp_path / "tls"
    assert run_serve(["--make-cert", str(folder), "--cert-host", "monitor.lan"]) == 0
    output = capsys.readouterr().out
    cert_path, key_path = folder / "deepwatch-cert.pem", folder / "deepwatch-key.pem"
    assert f"--tls-cert {cert_path}" in output and f"--tls-key {key_path}" in output
    assert key_path.stat().st_mode & 0o777 == 0o600
    certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["monitor.lan", "localhost"]
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1", "::1"]
    assert certificate.issuer == certificate.subject
    lifetime = certificate.not_valid_after_utc - certificate.not_valid_before_utc
    assert 89 <= lifetime.days <= 91
    # Never overwritten; an IP address as the host goes in as an IP name.
    assert run_serve(["--make-cert", str(folder)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert run_serve(["--make-cert", str(tmp_path / "ip"), "--host", "192.0.2.7"]) == 0
    ip_cert = x509.load_pem_x509_certificate((tmp_path / "ip" / "deepwatch-cert.pem").read_bytes())
    ip_names = ip_cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "192.0.2.7" in [str(ip) for ip in ip_names.get_values_for_type(x509.IPAddress)]


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
def test_the_command_serves_https_until_interrupted(
    checkpoint_args: list[str], tmp_path: pathlib.Path
) -> None:
    port = _free_port()
    # A self-signed certificate from the command itself; the client trusts exactly that one.
    assert run_serve(["--make-cert", str(tmp_path / "tls")]) == 0
    cert, key = tmp_path / "tls" / "deepwatch-cert.pem", tmp_path / "tls" / "deepwatch-key.pem"
    trust = ssl.create_default_context(cafile=str(cert))
    base = f"https://127.0.0.1:{port}"
    config = tmp_path / "serve.yaml"
    # Sources come from the config's server section and from --source (which wins on a name
    # clash); the key comes from the config, the certificate from the flag.
    config.write_text(
        "server:\n  sources:\n    lobby: rtsp://viewer:hunter2@127.0.0.1:9/lobby\n    door: old.mp4\n"
        f"  tls_key: {key}\n"
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
            "--tls-cert",
            str(cert),
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
        # Model loading: well under a minute alone, minutes on a machine shared with other jobs.
        deadline = time.monotonic() + 300
        while True:
            try:
                with urllib.request.urlopen(f"{base}/healthz", timeout=5, context=trust) as response:
                    assert json.load(response)["sessions_active"] == 0
                break
            except (urllib.error.URLError, ConnectionError):
                assert process.poll() is None, process.communicate()[0]
                assert time.monotonic() < deadline, "server did not come up"
                time.sleep(0.5)
        # Plain HTTP on the same port gets no page.
        with pytest.raises((urllib.error.URLError, ConnectionError, http.client.HTTPException)):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5).read()
        # The token from the environment guards the API.
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{base}/api/sources", timeout=5, context=trust)
        assert refused.value.code == 401
        request = urllib.request.Request(f"{base}/api/sources", headers={"Authorization": f"Bearer {TOKEN}"})
        with urllib.request.urlopen(request, timeout=5, context=trust) as response:
            assert sorted(json.load(response)["sources"]) == ["door", "lobby"]
        request = urllib.request.Request(f"{base}/api/model", headers={"Authorization": f"Bearer {TOKEN}"})
        with urllib.request.urlopen(request, timeout=5, context=trust) as response:
            model = json.load(response)
        assert 0.0 < model["threshold"] <= 1.0 and model["trust_note"]
    finally:
        process.send_signal(signal.SIGINT)
        output = process.communicate(timeout=60)[0]
    assert process.returncode == 0, output
    assert f"serving https://127.0.0.1:{port}/" in output
    assert "server-side sources: door, lobby" in output
    assert "rejected GET '/api/sources' from 127.0.0.1: 401" in output
    assert TOKEN not in output and "hunter2" not in output
