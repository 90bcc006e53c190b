"""check-config: warnings for risky but valid settings (file:line), secret files, exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agent.config import ConfigError, parse_config_lines, read_secret_file
from agent.fieldtools.checkconfig import check_config, config_warnings

BASE = """\
gateway: {id: gw-test, site: lab}
readers:
  - name: r1
    driver: r2000
    port: /dev/serial/by-id/usb-FTDI-if00-port0
buffer:
  path: ./buffer.db
  max_size: 64MiB
uplink:
  mqtt:
    host: 127.0.0.1
    port: 1883
"""


def _warnings(text: str, disk_total: int = 10 * 1024**3) -> list[str]:
    cfg, lines = parse_config_lines(text, "f.yaml")
    return [str(w) for w in config_warnings(cfg, "f.yaml", lines, disk_total=disk_total)]


def test_a_sound_config_has_no_warnings() -> None:
    assert _warnings(BASE) == []


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("host: 127.0.0.1",
         "host: broker.example.com\n    tls: {enabled: false}\n    allow_insecure: true",
         "f.yaml:11: uplink.mqtt.host: TLS is off towards the remote broker broker.example.com"),
        ("port: /dev/serial/by-id/usb-FTDI-if00-port0", "port: /dev/ttyUSB0",
         "f.yaml:5: readers[0].port: /dev/ttyUSB0 is numbered in plug order"),
        ("port: /dev/serial/by-id/usb-FTDI-if00-port0", "port: /dev/ttyACM1",
         "f.yaml:5: readers[0].port: /dev/ttyACM1 is numbered in plug order"),
        ("driver: r2000\n    port: /dev/serial/by-id/usb-FTDI-if00-port0",
         "driver: hid\n    port: /dev/input/event3",
         "f.yaml:5: readers[0].port: /dev/input/event3 is numbered in plug order"),
        ("    port: 1883\n", "    port: 1883\n    inflight_window: 5000\n",
         "f.yaml:13: uplink.mqtt.inflight_window: 5000 messages in flight"),
        ("    port: 1883\n", "    port: 1883\n    publish_timeout_s: 0.5\n",
         "f.yaml:13: uplink.mqtt.publish_timeout_s: 0.5 s is shorter"),
        ("driver: r2000\n", "driver: r2000\n    silence_timeout_s: 0.2\n",
         "f.yaml:5: readers[0].silence_timeout_s: 0.2 s"),
        ("max_size: 64MiB", "max_size: 1MiB", "f.yaml:8: buffer.max_size: 1048576 bytes holds"),
        ("max_size: 64MiB", "max_size: 9GiB",
         "f.yaml:8: buffer.max_size: 9216 MiB is more than 80%"),
        ("max_size: 64MiB", "max_size: 64MiB\n  commit_interval_ms: 500",
         "f.yaml:9: buffer.commit_interval_ms: 500 ms delays every read"),
        ("uplink:", "http: {listen: 0.0.0.0:9108}\nuplink:",
         "f.yaml:9: http.listen: /metrics and /health are reachable from the network"),
        ("uplink:", "http: {listen: 0.0.0.0:9108}\nuplink:",
         "f.yaml:9: http.listen: the technician's page on 0.0.0.0:9108 is served without TLS"),
    ],
)
def test_risky_settings_warn_with_file_and_line(old: str, new: str, expected: str) -> None:
    text = BASE.replace(old, new)
    assert text != BASE
    found = _warnings(text)
    assert any(w.startswith(expected) for w in found), found


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("max_size: 64MiB", "max_size: lots", "f.yaml:8: buffer.max_size: expected a size"),
        ("uplink:", "http: {listen: nowhere}\nuplink:", "f.yaml:9: http.listen:"),
        ("uplink:", "status: {sockt: /tmp/x}\nuplink:", "f.yaml:9: status.sockt: unknown key"),
        ("uplink:", "http: {enabled: maybe}\nuplink:", "f.yaml:9: http.enabled: got 'maybe'"),
    ],
)
def test_errors_in_the_new_sections(old: str, new: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config_lines(BASE.replace(old, new), "f.yaml")
    assert any(str(i).startswith(expected) for i in info.value.issues), info.value.issues


def test_defaults_of_the_new_sections() -> None:
    cfg, _ = parse_config_lines(BASE)
    assert cfg.status.socket is None
    assert cfg.status.enabled is True
    assert cfg.http.enabled is True
    assert cfg.http.listen == "127.0.0.1:9108"
    assert cfg.http.host_port == ("127.0.0.1", 9108)
    assert cfg.http.reader_down_max_s == 300.0


def test_read_secret_file(tmp_path: Path) -> None:
    f = tmp_path / "pw"
    f.write_text("s3cret\n")
    assert read_secret_file(f, "uplink.mqtt.password_file") == "s3cret"
    f.write_text("s3cret\n\n")  # only one trailing newline is stripped
    assert read_secret_file(f, "x") == "s3cret\n"
    f.write_text("no-newline")
    assert read_secret_file(f, "x") == "no-newline"
    with pytest.raises(ConfigError) as info:
        read_secret_file(tmp_path / "missing", "uplink.mqtt.password_file", file="a.yaml",
                         line=7)
    text = str(info.value.issues[0])
    assert text.startswith("a.yaml:7: uplink.mqtt.password_file: cannot read the secret file")
    assert "No such file" in text


def test_check_config_returns_errors_and_warnings(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(BASE.replace("/dev/serial/by-id/usb-FTDI-if00-port0", "/dev/ttyUSB0"))
    cfg, errors, warnings = check_config(str(good))
    assert cfg is not None
    assert errors == []
    assert [w.path for w in warnings] == ["readers[0].port"]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True,
                          text=True, timeout=60, check=False)


def test_cli_warnings_keep_exit_0(tmp_path: Path) -> None:
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(BASE.replace("/dev/serial/by-id/usb-FTDI-if00-port0", "/dev/ttyUSB0")
                   .replace("host: 127.0.0.1", "host: broker.example.com\n"
                            "    tls: {enabled: false}\n    allow_insecure: true"))
    proc = _cli("check-config", "-c", str(cfg))
    assert proc.returncode == 0, proc.stderr
    assert f"{cfg}:5: warning: readers[0].port: /dev/ttyUSB0" in proc.stderr
    assert f"{cfg}:11: warning: uplink.mqtt.host: TLS is off" in proc.stderr
    assert "OK (1 reader(s), broker broker.example.com:1883, 2 warning(s))" in proc.stdout


def test_cli_reports_every_error_with_exit_2(tmp_path: Path) -> None:
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(BASE.replace("max_size: 64MiB", "max_size: lots")
                   .replace("port: 1883", "port: 0"))
    proc = _cli("check-config", "-c", str(cfg))
    assert proc.returncode == 2
    assert f"{cfg}:8: buffer.max_size:" in proc.stderr
    assert f"{cfg}:12: uplink.mqtt.port:" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_example_configs_have_no_errors() -> None:
    for path in sorted(Path(__file__).resolve().parents[2].joinpath("configs").glob("*.yaml")):
        _, errors, _ = check_config(str(path))
        assert errors == [], errors
