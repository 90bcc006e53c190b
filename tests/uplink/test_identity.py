"""The gateway identity: key + CSR (agent/uplink/identity.py), EST (agent/uplink/est.py) against a
real CA behind a real EST endpoint over TLS (tests/support/est.py), renewal in the running agent
(agent/uplink/renewal.py), and the `edge-agent identity` commands."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from agent.config import EstConfig, parse_config
from agent.uplink import identity
from agent.uplink.est import ClientCert, EstClient, EstError, EstPending
from tests.support.est import EstServer
from tests.support.harness import agent_cli


@pytest.fixture
def est(tmp_path: Path) -> Any:
    with EstServer(tmp_path / "ca") as server:
        yield server


def _est_cfg(server: EstServer, tmp_path: Path, **extra: object) -> EstConfig:
    pw = tmp_path / "est-password"
    pw.write_text(server.password + "\n")
    return EstConfig.model_validate({"url": server.url, "ca": str(server.ca_pem),
                                     "username": server.username, "password_file": str(pw),
                                     **extra})


# -- identity (pure) --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["ec", "ed25519", "rsa"])
def test_the_csr_names_the_gateway_and_is_signed_by_its_key(kind: str) -> None:
    key = identity.new_key(kind)  # type: ignore[arg-type]
    csr = identity.make_csr(key, "plant-a", "gw-dock-02")
    assert csr.is_signature_valid
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == \
        "plant-a/gw-dock-02"
    assert csr.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "plant-a"
    san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [
        "urn:tea:gateway:plant-a:gw-dock-02"]
    assert identity.load_key(identity.key_pem(key)).public_key() == key.public_key()


def test_write_atomic_creates_a_private_file(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "gw.key"
    identity.write_atomic(path, b"secret", mode=0o600)
    assert path.read_bytes() == b"secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["gw.key"]  # no temporary file left


def _pair(server: EstServer, tmp_path: Path, name: str) -> tuple[bytes, bytes]:
    cert, key = server.issue(name, cn=f"lab/{name}")
    return cert.read_bytes(), key.read_bytes()


def test_recover_completes_or_discards_an_interrupted_install(tmp_path: Path,
                                                              est: EstServer) -> None:
    cert, key = tmp_path / "gw.pem", tmp_path / "gw.key"
    old_cert, old_key = _pair(est, tmp_path, "old")
    new_cert, new_key = _pair(est, tmp_path, "new")
    assert identity.recover(cert, key) is None  # nothing to do

    # Cut after the certificate was renamed, before the key: the new key is completed.
    cert.write_bytes(new_cert)
    key.write_bytes(old_key)
    Path(f"{key}.new").write_bytes(new_key)
    assert "completed" in str(identity.recover(cert, key))
    assert identity.matches(cert.read_bytes(), identity.load_key(key.read_bytes()))

    # Cut before either rename: both .new files are there: renamed together.
    cert.write_bytes(old_cert)
    key.write_bytes(old_key)
    Path(f"{cert}.new").write_bytes(new_cert)
    Path(f"{key}.new").write_bytes(new_key)
    assert "completed" in str(identity.recover(cert, key))
    assert cert.read_bytes() == new_cert
    assert key.read_bytes() == new_key

    # Only the certificate was written: discarded, the old pair stays.
    cert.write_bytes(old_cert)
    key.write_bytes(old_key)
    Path(f"{cert}.new").write_bytes(new_cert)
    assert "discarded" in str(identity.recover(cert, key))
    assert (cert.read_bytes(), key.read_bytes()) == (old_cert, old_key)
    assert not Path(f"{cert}.new").exists()


# -- EST client against the real endpoint ----------------------------------------------------


def test_cacerts_enroll_and_reenroll(tmp_path: Path, est: EstServer) -> None:
    client = EstClient(_est_cfg(est, tmp_path))
    (ca,) = client.cacerts()
    assert ca == est.ca
    key = identity.new_key()
    csr = identity.make_csr(key, "lab", "gw-test")
    certs = client.enroll(csr)
    assert identity.matches(identity.certs_pem(certs), key)
    assert certs[0].subject == csr.subject
    assert certs[0].issuer == est.ca.subject
    cert_path, key_path = tmp_path / "gw.pem", tmp_path / "gw.key"
    cert_path.write_bytes(identity.certs_pem(certs))
    key_path.write_bytes(identity.key_pem(key))
    new_key = identity.new_key()
    renewed = client.enroll(identity.make_csr(new_key, "lab", "gw-test"),
                            current=ClientCert(cert_path, key_path))
    assert identity.matches(identity.certs_pem(renewed), new_key)
    assert [p for p, _ in est.requests][-1].endswith("/simplereenroll")


def test_enroll_refusals_are_named(tmp_path: Path, est: EstServer) -> None:
    csr = identity.make_csr(identity.new_key(), "lab", "gw-test")
    bad = tmp_path / "wrong"
    bad.write_text("nope")
    client = EstClient(_est_cfg(est, tmp_path, password_file=str(bad)))
    with pytest.raises(EstError, match=r"HTTP 401 .*check uplink\.est\.username / password_file"):
        client.enroll(csr)
    est.pending_next = 1
    with pytest.raises(EstPending) as pending:
        EstClient(_est_cfg(est, tmp_path)).enroll(csr)
    assert pending.value.retry_after_s == 1.0
    other = tmp_path / "other-ca.pem"
    other.write_bytes(EstServer(tmp_path / "other").ca_pem.read_bytes())
    with pytest.raises(EstError, match=r"not trusted .*check uplink\.est\.ca"):
        EstClient(_est_cfg(est, tmp_path, ca=str(other))).enroll(csr)


# -- renewal in the running agent ------------------------------------------------------------


def _agent_config(tmp_path: Path, est: EstServer, **est_extra: object) -> Any:
    pw = tmp_path / "est-password"
    pw.write_text(est.password)
    text = f"""\
gateway: {{id: gw-test, site: lab}}
readers: [{{name: r1, driver: r2000, port: /dev/ttyUSB0}}]
buffer: {{path: {tmp_path / 'buffer.db'}}}
uplink:
  mqtt:
    host: 127.0.0.1
    port: 8883
    topic_prefix: trace
    tls: {{ca: {est.ca_pem}, cert: {tmp_path / 'gw.pem'}, key: {tmp_path / 'gw.key'}}}
  est: {{url: "{est.url}", ca: {est.ca_pem}, username: {est.username},
        password_file: {pw}, retry_min_s: 0.05, retry_max_s: 0.1{''.join(
            f', {k}: {v}' for k, v in est_extra.items())}}}
"""
    path = tmp_path / "agent.yaml"
    path.write_text(text)
    return path, parse_config(text, str(path))


async def test_renewal_renews_at_the_fraction_switches_and_alarms_on_failure(
    tmp_path: Path, est: EstServer
) -> None:
    from agent.uplink.renewal import IdentityRenewal

    est.lifetime_s = 6.0
    path, cfg = _agent_config(tmp_path, est, renew_fraction=0.5)
    assert agent_cli("identity", "init", "-c", str(path)).returncode == 0
    assert agent_cli("identity", "enroll", "-c", str(path)).returncode == 0
    first = identity.lifetime((tmp_path / "gw.pem").read_bytes())
    switched: list[int] = []
    alarms: list[dict[str, Any]] = []

    async def switch() -> None:
        switched.append(identity.lifetime((tmp_path / "gw.pem").read_bytes()).serial)

    async def alarm(a: dict[str, Any]) -> None:
        alarms.append(a)

    est.fail_next = 2  # the first two attempts fail: an alarm, then success
    renewal = IdentityRenewal(cfg, switch, alarm)
    task = asyncio.create_task(renewal.run(), name="identity-renewal")
    try:
        for _ in range(200):
            if switched:
                break
            await asyncio.sleep(0.05)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert switched, renewal.status.as_dict()
    new = identity.lifetime((tmp_path / "gw.pem").read_bytes())
    assert new.serial == switched[0] != first.serial
    assert identity.matches((tmp_path / "gw.pem").read_bytes(),
                            identity.load_key((tmp_path / "gw.key").read_bytes()))
    assert stat.S_IMODE((tmp_path / "gw.key").stat().st_mode) == 0o600
    assert [a["type"] for a in alarms] == ["identity_renewal_failed"]
    assert "HTTP 503" in alarms[0]["detail"]
    assert renewal.status.failures == 2
    assert renewal.status.renewals == 1
    assert [p.rsplit("/", 1)[1] for p, s in est.requests if s == 200][-1] == "simplereenroll"


# -- the commands ----------------------------------------------------------------------------


def test_identity_commands(tmp_path: Path, est: EstServer) -> None:
    path, _ = _agent_config(tmp_path, est, cacerts_out=str(tmp_path / "plant-ca.pem"))
    init = agent_cli("identity", "init", "-c", str(path))
    assert init.returncode == 0, init.stderr
    assert "CSR for lab/gw-test (urn:tea:gateway:lab:gw-test)" in init.stdout
    assert stat.S_IMODE((tmp_path / "gw.key").stat().st_mode) == 0o600
    assert (tmp_path / "gw.pem.csr").exists()
    again = agent_cli("identity", "init", "-c", str(path))
    assert again.returncode == 1
    assert "the gateway has a key" in again.stderr
    enroll = agent_cli("identity", "enroll", "-c", str(path))
    assert enroll.returncode == 0, enroll.stderr
    assert "CA certificates (1) written to" in enroll.stdout
    assert (tmp_path / "plant-ca.pem").read_bytes() == est.ca_pem.read_bytes()
    status = agent_cli("identity", "status", "-c", str(path))
    assert status.returncode == 0, status.stdout + status.stderr
    assert "CN=lab/gw-test" in status.stdout
    assert "key       matches the certificate" in status.stdout
    renew = agent_cli("identity", "enroll", "--renew", "-c", str(path))
    assert renew.returncode == 0, renew.stderr
    est.stop()
    down = agent_cli("identity", "enroll", "--renew", "-c", str(path))
    assert down.returncode == 1
    assert "cannot reach the EST server" in down.stderr
    assert "Traceback" not in down.stderr


def test_doctor_checks_the_identity_and_the_est_server(tmp_path: Path, est: EstServer) -> None:
    import re

    path, _ = _agent_config(tmp_path, est)
    missing = agent_cli("doctor", "-c", str(path))
    assert re.search(r"identity\s+FAIL\s+cannot read the certificate or key", missing.stdout)
    assert agent_cli("identity", "init", "-c", str(path)).returncode == 0
    assert agent_cli("identity", "enroll", "-c", str(path)).returncode == 0
    out = agent_cli("doctor", "-c", str(path)).stdout
    assert re.search(r"identity\s+PASS\s+.*CN=lab/gw-test.*renewal due", out), out
    assert re.search(r"EST server\s+PASS\s+https://127\.0\.0\.1:\d+/\.well-known/est: "
                     r"/cacerts gave 1 CA", out), out
    est.stop()
    down = agent_cli("doctor", "-c", str(path)).stdout
    assert re.search(r"EST server\s+FAIL\s+.*cannot reach the EST server", down), down
