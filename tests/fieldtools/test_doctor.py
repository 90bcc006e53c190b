"""edge-agent doctor against a healthy setup (reader-sim + Mosquitto) and broken ones."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent.fieldtools.doctor import check_certificate
from tests.support.baudline import BaudLine
from tests.support.harness import SimProcess, write_config
from tests.support.mosquitto import Mosquitto


def _doctor(cfg: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent", "doctor", "-c", str(cfg)],
                          capture_output=True, text=True, timeout=60, check=False)


def _row(out: str, check: str) -> str:
    """The table row of a check plus its fix line (if any)."""
    table = out.split("CHECK ", 1)[1]
    m = re.search(rf"^{re.escape(check)}\s+(PASS|WARN|FAIL)\s+.*(\n\s+fix: .*)?", table, re.M)
    assert m, f"no row {check!r} in:\n{out}"
    return m.group(0)


def _config(tmp_path: Path, port: str, broker: Mosquitto, **reader: object) -> Path:
    return write_config(tmp_path / "agent.yaml", reader_port=port, broker=broker,
                        buffer=tmp_path / "buffer.db", reader=dict(reader),
                        extra={"status": {"socket": str(tmp_path / "agent.sock")}})


def test_healthy_setup_passes(tmp_path: Path, mosquitto: Mosquitto) -> None:
    sim = SimProcess("r2000", "--pty", "--tags", "2", log_path=tmp_path / "sim.log")
    try:
        proc = _doctor(_config(tmp_path, sim.port, mosquitto))
    finally:
        sim.stop()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "PASS  reader r1 port:" in out  # progress: one line per check as it runs
    assert "PASS" in _row(out, "reader r1 access")
    assert re.search(r"PASS\s+r2000 at 115200 baud.*firmware 1\.9", _row(out, "reader r1 answers"))
    assert "PASS" in _row(out, f"broker 127.0.0.1:{mosquitto.port} TCP")
    login = _row(out, f"broker 127.0.0.1:{mosquitto.port} MQTT login")
    assert "CONNACK success as edge-agent-lab-gw-test-doctor" in login
    assert "PASS" in _row(out, "disk")
    assert "not created yet" in _row(out, "buffer")
    assert re.search(r"(PASS|WARN)", _row(out, "clock"))  # an unsynced clock only warns
    assert "0 failed" in out


def test_missing_port_fails_with_hint(tmp_path: Path, mosquitto: Mosquitto) -> None:
    proc = _doctor(_config(tmp_path, str(tmp_path / "ttyNOPE"), mosquitto))
    assert proc.returncode == 1, proc.stdout
    row = _row(proc.stdout, "reader r1 port")
    assert "FAIL" in row
    assert "ttyNOPE does not exist" in row
    assert "fix: plug the reader in or fix readers[].port" in row
    assert "1 failed" in proc.stdout


def test_wrong_baud_rate_fails_with_baud_hint(tmp_path: Path, mosquitto: Mosquitto) -> None:
    sim = SimProcess("r2000", "--pty", "--tags", "2", "--baud", "57600",
                     log_path=tmp_path / "sim.log")
    line = BaudLine(sim.port, 57600)  # a line that garbles bytes at any other rate
    try:
        proc = _doctor(_config(tmp_path, line.port, mosquitto, baudrate=115200))
        right = _doctor(_config(tmp_path, line.port, mosquitto, baudrate=57600))
    finally:
        line.close()
        sim.stop()
    assert proc.returncode == 1, proc.stdout
    row = _row(proc.stdout, "reader r1 answers")
    assert "FAIL" in row
    assert "fix:" in row
    assert "no valid reply at 115200 baud: check readers[].baudrate" in row
    # Control: the same line at the right rate answers.
    assert right.returncode == 0, right.stdout
    assert "r2000 at 57600 baud" in _row(right.stdout, "reader r1 answers")


def test_broker_down_fails_tcp_refused(tmp_path: Path, mosquitto: Mosquitto) -> None:
    sim = SimProcess("r2000", "--pty", "--tags", "2", log_path=tmp_path / "sim.log")
    mosquitto.stop()
    try:
        proc = _doctor(_config(tmp_path, sim.port, mosquitto))
    finally:
        sim.stop()
    assert proc.returncode == 1, proc.stdout
    row = _row(proc.stdout, f"broker 127.0.0.1:{mosquitto.port} TCP")
    assert "FAIL    connection refused" in row
    assert "fix: the broker is not running" in row
    assert "MQTT login" not in proc.stdout.split("CHECK ", 1)[1]  # no point trying after that
    assert "PASS" in _row(proc.stdout, "reader r1 answers")


def test_bad_config_exits_2(tmp_path: Path) -> None:
    cfg = tmp_path / "agent.yaml"
    cfg.write_text("gateway: {id: gw}\n")
    proc = _doctor(cfg)
    assert proc.returncode == 2
    assert f"{cfg}:1: gateway.site: required key is missing" in proc.stderr


def expired_certificate(tmp_path: Path) -> Path:
    """A self-signed CA certificate valid 2020-01-01..2020-01-02, made with openssl."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl not installed")
    d = tmp_path / "ca"
    (d / "newcerts").mkdir(parents=True)
    (d / "index.txt").write_text("")
    (d / "serial").write_text("01\n")
    (d / "ca.cnf").write_text(
        "[ca]\ndefault_ca = d\n[d]\ndir = .\ndatabase = ./index.txt\nnew_certs_dir = "
        "./newcerts\nserial = ./serial\ndefault_md = sha256\npolicy = p\n[p]\n"
        "commonName = supplied\n")
    run = {"cwd": d, "check": True, "capture_output": True, "timeout": 60}
    subprocess.run([openssl, "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    "k.pem", "-out", "r.csr", "-subj", "/CN=expired-ca"], **run)  # type: ignore[call-overload]
    subprocess.run([openssl, "ca", "-batch", "-config", "ca.cnf", "-selfsign", "-keyfile",
                    "k.pem", "-in", "r.csr", "-out", "c.pem", "-startdate", "20200101000000Z",
                    "-enddate", "20200102000000Z"], **run)  # type: ignore[call-overload]
    return d / "c.pem"


def test_certificate_checks(tmp_path: Path) -> None:
    garbage = tmp_path / "ca.pem"
    garbage.write_text("this is not a certificate\n")
    check = check_certificate("ca", garbage)
    assert check.status == "FAIL"
    assert "not a PEM certificate" in check.detail
    assert "must be a PEM file" in check.hint

    expired = expired_certificate(tmp_path)
    check = check_certificate("ca", expired)
    assert check.status == "FAIL"
    assert "expired on 2020-01-02" in check.detail
    assert "renew the ca certificate" in check.hint

    soon = check_certificate("ca", expired, now=datetime(2020, 1, 1, 12, tzinfo=UTC))
    assert soon.status == "WARN"
    ok = check_certificate("ca", expired, now=datetime(2019, 1, 1, tzinfo=UTC))
    assert ok.status == "PASS"
    assert check_certificate("ca", tmp_path / "nope.pem").status == "FAIL"


@pytest.mark.parametrize("kind", ["garbage", "expired"])
def test_doctor_bad_ca_file(tmp_path: Path, mosquitto: Mosquitto, kind: str) -> None:
    if kind == "garbage":
        ca = tmp_path / "ca.pem"
        ca.write_text("not a certificate\n")
    else:
        ca = expired_certificate(tmp_path)
    sim = SimProcess("r2000", "--pty", "--tags", "2", log_path=tmp_path / "sim.log")
    try:
        cfg = write_config(tmp_path / "agent.yaml", reader_port=sim.port, broker=mosquitto,
                           buffer=tmp_path / "buffer.db",
                           mqtt={"tls": {"ca": str(ca)}},
                           extra={"status": {"socket": str(tmp_path / "agent.sock")}})
        proc = _doctor(cfg)
    finally:
        sim.stop()
    assert proc.returncode in (1, 2), proc.stdout + proc.stderr
    if proc.returncode == 1:
        row = _row(proc.stdout, "certificate ca")
        assert "FAIL" in row
        assert "fix:" in row


def _llrp_config(tmp_path: Path, sim: SimProcess, broker: Mosquitto, antennas: list[int]) -> Path:
    import yaml

    host, port = sim.host_port
    path = _config(tmp_path, "unused", broker, name="dock-fx", driver="llrp")
    cfg = yaml.safe_load(path.read_text())
    cfg["readers"][0].pop("baudrate")
    cfg["readers"][0].update(host=host, port=port, antennas=antennas)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def test_llrp_reader_connection_and_antennas(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """doctor connects to an LLRP reader itself (the agent is not running): connection
    accepted and capabilities, then each configured antenna connected or named."""
    sim = SimProcess("llrp", "--tcp", "127.0.0.1:0", "--antennas", "1,2", "--flavour", "impinj",
                     "--log-level", "INFO", log_path=tmp_path / "sim.log")
    try:
        good = _doctor(_llrp_config(tmp_path, sim, mosquitto, [1, 2]))
        bad = _doctor(_llrp_config(tmp_path, sim, mosquitto, [1, 3]))
    finally:
        sim.stop()
    assert good.returncode == 0, good.stdout + good.stderr
    assert "PASS  reader port socket://127.0.0.1:" in good.stdout  # TCP accepted
    assert re.search(r"PASS\s+LLRP reader Impinj model 2001002, firmware 5\.14",
                     _row(good.stdout, "reader dock-fx answers"))
    assert "PASS" in _row(good.stdout, "reader dock-fx antennas")
    assert bad.returncode == 1, bad.stdout
    row = _row(bad.stdout, "reader dock-fx antennas")
    assert "FAIL" in row
    assert "antenna(s) [3] not connected (of [1, 3])" in row
    assert "check the antenna cable" in row
    # doctor left the reader as it found it: closed, free for the agent.
    assert (tmp_path / "sim.log").read_text().count("CLOSE_CONNECTION: closing") == 2


def test_llrp_reader_that_refuses_the_connection(tmp_path: Path, mosquitto: Mosquitto) -> None:
    sim = SimProcess("llrp", "--tcp", "127.0.0.1:0", "--busy", log_path=tmp_path / "sim.log")
    try:
        proc = _doctor(_llrp_config(tmp_path, sim, mosquitto, [1]))
    finally:
        sim.stop()
    assert proc.returncode == 1
    row = _row(proc.stdout, "reader dock-fx answers")
    assert "another client is connected" in row
