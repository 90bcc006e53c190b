"""Uplink security: start-time refusals (exit 2), TLS against a real Mosquitto with a PKI made
by openssl at test time (server verification, wrong CA, mutual TLS, expired client cert),
passwords from files/env, certificate expiry."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from agent.config import AgentConfig, MqttConfig, TlsConfig, parse_config
from agent.uplink.mqtt import MqttUplink
from agent.uplink.security import (
    bundle_not_after,
    cert_expiry,
    check_security,
    resolve_password,
)
from tests.support.mosquitto import Mosquitto
from tests.support.tlscerts import Pki, make_ca, make_pki, tls_listener_lines

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def agent_cfg(mqtt: dict[str, Any], commands: dict[str, Any] | None = None) -> AgentConfig:
    import json
    up: dict[str, Any] = {"mqtt": mqtt}
    if commands is not None:
        up["commands"] = commands
    text = json.dumps({
        "gateway": {"id": "gw", "site": "lab"},
        "readers": [{"name": "r1", "driver": "r2000", "port": "/dev/null"}],
        "buffer": {"path": "./b.db"},
        "uplink": up,
    })
    return parse_config(text, "t.yaml")


# ----------------------------------------------------------------------------- start checks


def test_tls_is_on_by_default_for_remote_hosts_only() -> None:
    assert MqttConfig(host="127.0.0.1").tls_enabled is False
    assert MqttConfig(host="localhost").tls_enabled is False
    assert MqttConfig(host="::1").tls_enabled is False
    remote = MqttConfig(host="broker.example.com")
    assert remote.tls_enabled is True
    assert remote.brokers == [("broker.example.com", 8883)]  # TLS default port
    assert MqttConfig(host="broker.example.com", port=8884).brokers[0][1] == 8884
    assert check_security(agent_cfg({"host": "broker.example.com"})).errors == []


@pytest.mark.parametrize(
    ("mqtt", "needle"),
    [
        ({"host": "10.0.0.5", "tls": {"enabled": False}}, "TLS is off towards 10.0.0.5:1883"),
        ({"host": "127.0.0.1", "failover": [{"host": "10.0.0.6"}], "tls": {"enabled": False}},
         "10.0.0.6:1883"),
        ({"host": "broker.example.com", "tls": {"verify": False}}, "tls.verify is false"),
    ],
)
def test_insecure_settings_are_refused_unless_allowed(mqtt: dict[str, Any], needle: str) -> None:
    report = check_security(agent_cfg(mqtt))
    assert any(needle in e and "allow_insecure" in e for e in report.errors), report
    allowed = check_security(agent_cfg({**mqtt, "allow_insecure": True}))
    assert allowed.errors == []
    assert any(needle in w for w in allowed.warnings)


def test_group_readable_key_is_refused(pki: Pki, tmp_path: Path) -> None:
    key = tmp_path / "client.key"
    key.write_bytes(pki.client_key.read_bytes())
    key.chmod(0o640)
    mqtt = {"host": "broker.example.com", "tls": {"ca": str(pki.ca), "cert": str(pki.client_cert),
                                                  "key": str(key)}}
    errors = check_security(agent_cfg(mqtt)).errors
    assert any("let other users read it" in e and f"chmod 600 {key}" in e for e in errors), errors
    key.chmod(0o600)
    assert check_security(agent_cfg(mqtt)).errors == []


def test_passwords_from_file_env_and_plain_with_warning(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    pw = tmp_path / "pw"
    pw.write_text("s3cret\n")
    pw.chmod(0o600)
    cfg = agent_cfg({"host": "127.0.0.1", "username": "u", "password_file": str(pw)})
    assert resolve_password(cfg.uplink.mqtt) == "s3cret"
    assert check_security(cfg).warnings == []
    monkeypatch.setenv("EDGE_PW", "from-env")
    cfg = agent_cfg({"host": "127.0.0.1", "username": "u", "password_env": "EDGE_PW"})
    assert resolve_password(cfg.uplink.mqtt) == "from-env"
    cfg = agent_cfg({"host": "127.0.0.1", "username": "u", "password_env": "NOPE_NOT_SET"})
    assert any("NOPE_NOT_SET is not set" in e for e in check_security(cfg).errors)
    cfg = agent_cfg({"host": "127.0.0.1", "username": "u", "password": "plain"})
    assert any("prefer password_file" in w for w in check_security(cfg).warnings)
    assert "plain" not in repr(cfg.uplink.mqtt)  # never in a logged repr


def test_cli_exits_2_on_insecure_config(tmp_path: Path) -> None:
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(
        "gateway: {id: gw, site: lab}\n"
        "readers: [{name: r1, driver: r2000, port: /dev/null}]\n"
        f"buffer: {{path: {tmp_path / 'b.db'}}}\n"
        "uplink:\n  mqtt: {host: 192.0.2.10, port: 1883, tls: {enabled: false}}\n"
    )
    env = {**os.environ, "PYTHONPATH": f"{REPO}:{REPO / 'firmware-sim'}"}
    for command in ("check-config", "run"):
        proc = subprocess.run([sys.executable, "-m", "agent", command, "-c", str(cfg)],
                              capture_output=True, text=True, env=env, timeout=60, check=False)
        assert proc.returncode == 2, proc.stderr
        assert "TLS is off towards 192.0.2.10:1883" in proc.stderr
        assert "allow_insecure" in proc.stderr


def test_cert_expiry_days(pki: Pki) -> None:
    now = datetime.now(UTC)
    cfg = MqttConfig(host="b.example", tls=TlsConfig(ca=pki.ca, cert=pki.client_cert,
                                                     key=pki.client_key))
    got = {c.name: c for c in cert_expiry(cfg, now)}
    assert got["client"].days_left is not None
    assert 9 <= got["client"].days_left <= 10
    assert got["ca"].days_left is not None
    assert 29 <= got["ca"].days_left <= 30
    expired = MqttConfig(host="b.example",
                         tls=TlsConfig(cert=pki.expired_cert, key=pki.expired_key))
    (c,) = cert_expiry(expired, now)
    assert c.expired


@pytest.mark.parametrize("short_first", [True, False])
def test_ca_bundle_reports_the_earliest_expiry(tmp_path: Path, short_first: bool) -> None:
    """Every certificate of the bundle counts, wherever the short-lived one sits."""
    short = make_ca(tmp_path, "short-ca", days=12)
    long = make_ca(tmp_path, "long-ca", days=400)
    parts = [short, long] if short_first else [long, short]
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(b"# two CAs\n" + b"".join(p.read_bytes() for p in parts))
    assert len(bundle_not_after(bundle)) == 2
    now = datetime.now(UTC)
    cfg = MqttConfig(host="b.example", tls=TlsConfig(ca=bundle))
    (ca,) = cert_expiry(cfg, now)
    assert ca.name == "ca"
    assert ca.path == str(bundle)
    assert ca.days_left is not None
    assert 11 <= ca.days_left <= 12, ca
    (only_long,) = cert_expiry(MqttConfig(host="b.example", tls=TlsConfig(ca=long)), now)
    assert only_long.days_left is not None
    assert only_long.days_left > 390


def test_ca_bundle_without_cpython_decoder_uses_openssl(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ssl
    short = make_ca(tmp_path, "short-ca", days=5)
    long = make_ca(tmp_path, "long-ca", days=50)
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(long.read_bytes() + short.read_bytes())
    monkeypatch.setattr(ssl._ssl, "_test_decode_cert", None)  # type: ignore[attr-defined]
    (ca,) = cert_expiry(MqttConfig(host="b.example", tls=TlsConfig(ca=bundle)),
                        datetime.now(UTC))
    assert ca.days_left is not None
    assert 4 <= ca.days_left <= 5, ca


def test_unreadable_bundle_is_unknown_not_fine(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    (ca,) = cert_expiry(MqttConfig(host="b.example", tls=TlsConfig(ca=junk)), datetime.now(UTC))
    assert ca.not_after is None
    assert ca.days_left is None


# ----------------------------------------------------------------------------- real TLS


def tls_cfg(broker: Mosquitto, **tls: Any) -> MqttConfig:
    return MqttConfig.model_validate({
        "host": broker.host, "port": broker.port, "reconnect_min_s": 0.05,
        "reconnect_max_s": 0.2, "publish_timeout_s": 10, "tls": {"enabled": True, **tls}})


async def _connects(cfg: MqttConfig, timeout_s: float = 3.0) -> bool:
    up = MqttUplink(cfg, client_id=f"tls-{os.getpid()}-{id(cfg):x}")
    await up.start()
    try:
        return await up.wait_connected(timeout_s)
    finally:
        await up.aclose()


async def test_tls_verified_against_ca_delivers(
    pki: Pki, mosquitto_factory: Callable[..., Mosquitto]
) -> None:
    broker = mosquitto_factory(extra=tls_listener_lines(pki))
    up = MqttUplink(tls_cfg(broker, ca=pki.ca), client_id=f"tls-ok-{os.getpid()}")
    await up.start()
    try:
        assert await up.wait_connected(10), broker.log_text()
        result = await up.publish("trace/tls", b"over tls")
        assert result.ok
    finally:
        await up.aclose()


async def test_wrong_ca_is_a_clear_error_and_never_plaintext(
    pki: Pki, mosquitto_factory: Callable[..., Mosquitto], caplog: pytest.LogCaptureFixture
) -> None:
    broker = mosquitto_factory(extra=tls_listener_lines(pki))
    caplog.set_level(logging.WARNING, "agent.uplink.mqtt")
    assert not await _connects(tls_cfg(broker, ca=pki.other_ca))
    lines = [r.getMessage() for r in caplog.records if "connect failed" in r.getMessage()]
    assert len(lines) == 1, lines  # once per state change, not once per retry
    assert "TLS:" in lines[0]
    assert "certificate verify failed" in lines[0]
    assert "New client connected" not in broker.log_text()  # nothing went in plain text


async def test_plaintext_broker_with_tls_on_fails_instead_of_downgrading(
    mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "agent.uplink.mqtt")
    assert not await _connects(tls_cfg(mosquitto))
    assert "New client connected" not in mosquitto.log_text()
    assert any("TLS" in r.getMessage() for r in caplog.records), caplog.text


async def test_mutual_tls(pki: Pki, mosquitto_factory: Callable[..., Mosquitto]) -> None:
    broker = mosquitto_factory(extra=tls_listener_lines(pki, require_certificate=True))
    assert await _connects(tls_cfg(broker, ca=pki.ca, cert=pki.client_cert, key=pki.client_key),
                           timeout_s=10), broker.log_text()
    assert not await _connects(tls_cfg(broker, ca=pki.ca))  # no client certificate


async def test_expired_client_certificate_is_a_clear_error(
    pki: Pki, mosquitto_factory: Callable[..., Mosquitto], caplog: pytest.LogCaptureFixture
) -> None:
    broker = mosquitto_factory(extra=tls_listener_lines(pki, require_certificate=True))
    caplog.set_level(logging.WARNING, "agent.uplink.mqtt")
    cfg = tls_cfg(broker, ca=pki.ca, cert=pki.expired_cert, key=pki.expired_key)
    assert not await _connects(cfg)
    text = " | ".join(r.getMessage() for r in caplog.records)
    assert "expired" in text.lower(), text
    assert "certificate verify failed" in broker.log_text() or "expired" in broker.log_text()


async def test_username_password_from_file_over_tls(
    pki: Pki, mosquitto_factory: Callable[..., Mosquitto], tmp_path: Path
) -> None:
    broker = mosquitto_factory(users={"edge": "pw-123"}, extra=tls_listener_lines(pki))
    pw = tmp_path / "pw"
    pw.write_text("pw-123\n")
    pw.chmod(0o600)
    cfg = tls_cfg(broker, ca=pki.ca).model_copy(update={"username": "edge", "password_file": pw})
    assert await _connects(cfg, timeout_s=10), broker.log_text()


def test_secret_precedence_is_file_then_env_then_inline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One precedence for every caller (uplink, doctor, commands): the config allows only one
    source, so this decides only for configs built in code (model_construct skips that rule)."""
    from agent.uplink.security import SecretError, read_secret

    secret = tmp_path / "pw"
    secret.write_text("from-file\n")
    monkeypatch.setenv("EDGE_PW", "from-env")

    def cfg(**kw: Any) -> MqttConfig:
        return MqttConfig.model_construct(**{"host": "h", "password": None,
                                             "password_file": None, "password_env": None, **kw})

    everything = cfg(password="inline", password_file=secret, password_env="EDGE_PW")
    assert resolve_password(everything) == "from-file"
    assert resolve_password(cfg(password="inline", password_env="EDGE_PW")) == "from-env"
    assert resolve_password(cfg(password="inline")) == "inline"
    assert resolve_password(cfg()) is None
    secret.write_text("two-newlines\n\n")  # exactly one trailing newline is stripped
    assert read_secret(secret, None, "x") == "two-newlines\n"
    with pytest.raises(SecretError, match="environment variable NOPE_PW is not set"):
        read_secret(None, "NOPE_PW", "x")
    with pytest.raises(SecretError, match=str(tmp_path / "missing")):
        read_secret(tmp_path / "missing", None, "x")
