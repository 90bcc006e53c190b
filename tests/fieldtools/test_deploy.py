"""Deployment: the systemd unit, the udev rules, and install.sh / uninstall.sh in a temporary root.

The install tests run the real install.sh with `--prefix`: a real virtualenv, a real pip install
of this source tree (from the same package index `make test` installs from), real files.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.config import load_config

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
UNIT = DEPLOY / "edge-agent.service"
INSTALL = DEPLOY / "install.sh"
UNINSTALL = DEPLOY / "uninstall.sh"
RULES = DEPLOY / "99-edge-agent-readers.rules"
WEB_DROPIN = DEPLOY / "edge-agent-web-admin.conf"
EXAMPLE = REPO / "configs" / "pi-gateway.yaml"

Unit = dict[str, dict[str, list[str]]]


def parse_unit(text: str) -> Unit:
    """systemd's unit syntax: [Section], KEY=VALUE, repeatable keys, # and ; comments."""
    sections: Unit = {}
    current: dict[str, list[str]] | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        assert not line.endswith("\\"), f"line {number}: continuation lines are not expected"
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, sep, value = line.partition("=")
        assert sep, f"line {number}: not KEY=VALUE: {raw}"
        assert current is not None, f"line {number}: directive outside a section: {raw}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def service() -> dict[str, list[str]]:
    return parse_unit(UNIT.read_text())["Service"]


def single(key: str) -> str:
    values = service()[key]
    assert len(values) == 1, f"{key} is set {len(values)} times"
    return values[0]


# ------------------------------------------------------------------------------- the unit file

EXPECTED_SERVICE = {
    "Type": "notify",
    "NotifyAccess": "main",
    "ExecStart": "/opt/edge-agent/venv/bin/edge-agent run -c /etc/edge-agent/agent.yaml",
    "WatchdogSec": "30",
    "Restart": "on-failure",
    "RestartSec": "5",
    "RestartPreventExitStatus": "2",  # agent/cli.py EXIT_CONFIG
    "KillSignal": "SIGTERM",
    "TimeoutStopSec": "30",
    "User": "edge-agent",
    "Group": "edge-agent",
    "SupplementaryGroups": "dialout input",  # input: keyboard-wedge scanners (driver: hid)
    "StateDirectory": "edge-agent",
    "ConfigurationDirectory": "edge-agent",
    "WorkingDirectory": "/var/lib/edge-agent",
    "UMask": "0027",
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectControlGroups": "yes",
    "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6 AF_NETLINK",
    "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes",
    "RestrictRealtime": "yes",
    "SystemCallArchitectures": "native",
    "DevicePolicy": "closed",
}


@pytest.mark.parametrize(("key", "value"), sorted(EXPECTED_SERVICE.items()))
def test_unit_sets(key: str, value: str) -> None:
    assert single(key) == value


def test_unit_does_not_restart_on_the_cli_exit_code_for_a_bad_config(tmp_path: Path) -> None:
    bad = tmp_path / "agent.yaml"
    bad.write_text(EXAMPLE.read_text().replace("baudrate: 115200", "baudrate: fast"))
    proc = subprocess.run(
        [sys.executable, "-m", "agent", "run", "-c", str(bad)],
        capture_output=True, text=True, timeout=60, check=False, cwd=REPO,
    )
    assert "baudrate" in proc.stderr
    assert single("RestartPreventExitStatus") == str(proc.returncode)


def test_unit_allows_the_serial_ports_and_input_devices_and_nothing_else() -> None:
    assert set(service()["DeviceAllow"]) == {
        "char-ttyUSB rw", "char-ttyACM rw", "char-ttyAMA rw", "char-ttyS rw",
        "char-input r",  # keyboard-wedge scanners: read only
    }


def test_unit_environment_and_limits() -> None:
    env = service()["Environment"]
    assert "PYTHONUNBUFFERED=1" in env
    assert "PYTHONFAULTHANDLER=1" in env  # a watchdog SIGABRT then logs every thread's stack
    assert int(single("LimitNOFILE")) >= 1024
    assert single("LimitNICE") == "-10"  # the port pump's nice value (docs/readers.md)
    assert parse_unit(UNIT.read_text())["Install"]["WantedBy"] == ["multi-user.target"]


def test_unit_lets_the_agent_read_the_clock_sync_state() -> None:
    # agent/clock.py asks the kernel through adjtimex() (the clock_adjtime syscall) whether NTP
    # synchronised the clock. ProtectClock=yes, or a syscall filter without it, would make that
    # call fail, and the agent would no longer know when to mark events clockSynced=false.
    svc = service()
    assert svc.get("ProtectClock", ["no"]) == ["no"]
    filters = " ".join(svc.get("SystemCallFilter", []))
    if filters:
        assert {"adjtimex", "clock_adjtime"} <= set(filters.split())


def test_example_config_keeps_the_buffer_where_the_service_may_write() -> None:
    cfg = load_config(EXAMPLE)
    state_dir = Path("/var/lib") / single("StateDirectory")
    assert cfg.buffer.path.parent == state_dir
    assert cfg.buffer.synchronous == "FULL"
    config_path = single("ExecStart").split(" -c ")[1]
    assert Path(config_path).parent == Path("/etc") / single("ConfigurationDirectory")


def run_verify(unit: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)],
        capture_output=True, text=True, timeout=60, check=False,
    )


@pytest.fixture
def verifiable(tmp_path: Path) -> Path:
    """A copy of the unit whose ExecStart binary exists: verify checks that it is executable,
    and /opt/edge-agent does not exist on a development machine. Nothing else is changed."""
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    exe = tmp_path / "edge-agent"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    probe = tmp_path / "probe.service"
    probe.write_text(f"[Service]\nExecStart={exe}\n")
    proc = run_verify(probe)
    if proc.returncode != 0 or proc.stderr.strip():
        pytest.skip(f"systemd-analyze verify cannot run here: {proc.stderr.strip()[:300]}")
    text = UNIT.read_text()
    prefix = "ExecStart=/opt/edge-agent/venv/bin/edge-agent "
    assert text.count(prefix) == 1
    unit = tmp_path / "edge-agent.service"
    unit.write_text(text.replace(prefix, f"ExecStart={exe} "))
    return unit


def our_warnings(proc: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in (proc.stdout + proc.stderr).splitlines() if "edge-agent" in line]


def test_systemd_analyze_verify_accepts_the_unit(verifiable: Path) -> None:
    proc = run_verify(verifiable)
    assert proc.returncode == 0, proc.stderr
    # verify exits 0 even for "Unknown key ..." or "Failed to parse ..., ignoring": its output
    # about our unit must be empty.
    assert our_warnings(proc) == []


def test_web_admin_drop_in_opens_only_the_config_directory() -> None:
    """The page's Apply / "save to config" under systemd: the drop-in install.sh --web-admin
    installs adds one writable path, /etc/edge-agent, and nothing else; the unit itself keeps
    /etc read-only (ProtectSystem=strict, no ReadWritePaths=)."""
    assert parse_unit(WEB_DROPIN.read_text()) == {
        "Service": {"ReadWritePaths": ["/etc/edge-agent"]}}
    assert "ReadWritePaths" not in service()
    assert single("ProtectSystem") == "strict"
    assert single("ConfigurationDirectory") == "edge-agent"


def test_systemd_analyze_verify_accepts_the_unit_with_the_web_admin_drop_in(
        verifiable: Path) -> None:
    # verify reads no drop-in directory of a unit given by path: the drop-in's lines go into
    # the copy's [Service] section, as systemd merges them.
    text = verifiable.read_text()
    dropin = [line for line in WEB_DROPIN.read_text().splitlines()
              if line and not line.startswith(("#", "["))]
    verifiable.write_text(text.replace("[Service]\n", "[Service]\n" + "\n".join(dropin) + "\n",
                                       1))
    assert "ReadWritePaths=/etc/edge-agent" in verifiable.read_text()
    proc = run_verify(verifiable)
    assert proc.returncode == 0, proc.stderr
    assert our_warnings(proc) == []


def test_systemd_analyze_verify_would_catch_a_typo(verifiable: Path) -> None:
    broken = verifiable.read_text().replace("WatchdogSec=30", "WatchdogSec=thirty")
    broken = broken.replace("ProtectHome=yes", "ProtectHomme=yes")
    verifiable.write_text(broken)
    warnings = "\n".join(our_warnings(run_verify(verifiable)))
    assert "thirty" in warnings
    assert "ProtectHomme" in warnings


# ------------------------------------------------------------------------------- udev rules

UDEV_RULE = re.compile(
    r'^(?:[A-Z_]+(?:\{[A-Za-z0-9_]+\})?(?:==|!=|\+=|=|:=)"[^"]*")'
    r'(?:, (?:[A-Z_]+(?:\{[A-Za-z0-9_]+\})?(?:==|!=|\+=|=|:=)"[^"]*"))*$'
)


def example_rules() -> list[str]:
    return [
        line[1:] for line in RULES.read_text().splitlines() if line.startswith("#SUBSYSTEM==")
    ]


def test_udev_rules_are_examples_only() -> None:
    # Active lines would rename devices on every gateway: every rule ships commented out.
    active = [
        line for line in RULES.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert active == []


def test_udev_example_rules_are_well_formed() -> None:
    rules = example_rules()
    for vendor_product in ('"10c4", ATTRS{idProduct}=="ea60"',   # CP210x
                           '"1a86", ATTRS{idProduct}=="7523"',   # CH340
                           '"0403", ATTRS{idProduct}=="6001"'):  # FTDI FT232R
        assert any(f"ATTRS{{idVendor}}=={vendor_product}" in r for r in rules), vendor_product
    assert any('KERNEL=="ttyACM*"' in r for r in rules)  # the USB-CDC barcode scanner
    hid = [r for r in rules if r.startswith('SUBSYSTEM=="input", ')]
    assert hid  # the keyboard-wedge scanner
    for rule in rules:
        assert UDEV_RULE.match(rule), rule
        assert re.search(r'SYMLINK\+="[a-z0-9-]+"', rule), rule
        if rule in hid:
            assert 'KERNEL=="event*"' in rule, rule  # not the inputN parent or mouseN
            assert 'GROUP="input", MODE="0660"' in rule, rule
            continue
        assert rule.startswith('SUBSYSTEM=="tty", ')
        assert 'GROUP="dialout", MODE="0660"' in rule, rule
    assert "udevadm info -a -n /dev/ttyUSB0" in RULES.read_text()


# -------------------------------------------------------------------------------- the scripts


@pytest.mark.parametrize("script", [INSTALL, UNINSTALL], ids=lambda p: p.name)
def test_script_syntax(script: Path) -> None:
    proc = subprocess.run(["sh", "-n", str(script)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("script", [INSTALL, UNINSTALL], ids=lambda p: p.name)
def test_shellcheck(script: Path) -> None:
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed")
    proc = subprocess.run(
        ["shellcheck", "--shell=sh", str(script)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--bogus"], "unknown option: --bogus"),
        (["--prefix"], "--prefix needs a value"),
        (["--from", "/nonexistent-source"], "no such directory"),
        (["--from", "/"], "is not a Trace Edge Agent source tree"),
        (["--python", "/nonexistent/python3"], "not found"),
    ],
)
def test_install_refuses_bad_arguments_before_changing_anything(
    tmp_path: Path, args: list[str], message: str
) -> None:
    root = tmp_path / "root"
    proc = subprocess.run(
        ["sh", str(INSTALL), *(["--prefix", str(root)] if args[0] != "--prefix" else []), *args],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert proc.returncode == 1
    assert message in proc.stderr
    assert not (root / "opt").exists()


def test_install_help() -> None:
    proc = subprocess.run(["sh", str(INSTALL), "--help"], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0
    assert "--prefix DIR" in proc.stdout


# ------------------------------------------------------------------ install.sh in a temp root


@dataclass(frozen=True, slots=True)
class Installed:
    root: Path
    output: str

    def path(self, absolute: str) -> Path:
        return self.root / absolute.lstrip("/")


def run_install(root: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", str(INSTALL), "--prefix", str(root), "--from", str(REPO), "--no-systemd",
         "--python", sys.executable, *extra],
        capture_output=True, text=True, timeout=600, check=False,
    )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    root = tmp_path_factory.mktemp("root")
    before = sorted(p.name for p in REPO.iterdir())
    proc = run_install(root)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # pip builds in the tree it installs from: install.sh must build from a copy.
    assert sorted(p.name for p in REPO.iterdir()) == before
    return Installed(root, proc.stdout + proc.stderr)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_install_creates_a_working_virtualenv(installed: Installed) -> None:
    exe = installed.path(single("ExecStart").split()[0])  # the unit's own ExecStart path
    assert os.access(exe, os.X_OK)
    version = subprocess.run([str(exe), "--version"], capture_output=True, text=True,
                             timeout=60, check=True)
    assert version.stdout.startswith("edge-agent ")
    # A copy of the package, not a link back into this checkout.
    where = subprocess.run(
        [str(exe.parent / "python"), "-c", "import agent; print(agent.__file__)"],
        capture_output=True, text=True, timeout=60, check=True, cwd="/",
    )
    assert Path(where.stdout.strip()).is_relative_to(installed.root)
    link = installed.path("/usr/local/bin/edge-agent")
    assert os.readlink(link) == "/opt/edge-agent/venv/bin/edge-agent"


@pytest.mark.slow
def test_install_puts_every_file_in_place(installed: Installed) -> None:
    config = installed.path("/etc/edge-agent/agent.yaml")
    assert config.read_bytes() == EXAMPLE.read_bytes()
    assert config.stat().st_mode & 0o777 == 0o640
    assert installed.path("/etc/edge-agent/agent.yaml.example").read_bytes() == EXAMPLE.read_bytes()
    state = installed.path("/var/lib/edge-agent")
    assert state.is_dir()
    assert state.stat().st_mode & 0o777 == 0o750
    assert list(state.iterdir()) == []
    unit = installed.path("/etc/systemd/system/edge-agent.service")
    assert unit.read_bytes() == UNIT.read_bytes()
    rules = installed.path("/etc/udev/rules.d/99-edge-agent-readers.rules")
    assert rules.read_bytes() == RULES.read_bytes()
    modules = installed.path("/etc/modules-load.d/edge-agent.conf").read_text().split()
    assert {"usbserial", "cdc_acm"} <= set(modules)
    assert installed.path("/opt/edge-agent/doc/deploy.md").is_file()
    # install.sh ran check-config on the installed configuration, with the installed program.
    assert "agent.yaml: OK (1 reader(s)" in installed.output
    assert "not calling systemctl" in installed.output


@pytest.mark.slow
def test_second_run_keeps_config_rules_and_buffer(installed: Installed) -> None:
    config = installed.path("/etc/edge-agent/agent.yaml")
    config.write_text(config.read_text().replace("gw-dock-01", "gw-line-7") + "# site edit\n")
    rules = installed.path("/etc/udev/rules.d/99-edge-agent-readers.rules")
    rules.write_text(rules.read_text() + 'SUBSYSTEM=="tty", SYMLINK+="rfid-site"\n')
    buffer = installed.path("/var/lib/edge-agent/buffer.db")
    buffer.write_bytes(os.urandom(64 * 1024))
    for extra in ("buffer.db-wal", "buffer.db-shm"):
        installed.path(f"/var/lib/edge-agent/{extra}").write_bytes(os.urandom(1024))
    state = installed.path("/var/lib/edge-agent")
    before = {p.name: (sha256(p), p.stat().st_mtime_ns) for p in state.iterdir()}
    kept = {p: sha256(p) for p in (config, rules)}

    proc = run_install(installed.root)

    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert {p.name: (sha256(p), p.stat().st_mtime_ns) for p in state.iterdir()} == before
    assert {p: sha256(p) for p in (config, rules)} == kept
    assert "keeping" in proc.stdout
    assert "agent.yaml: OK" in proc.stdout
    out = subprocess.run(
        [str(installed.path("/opt/edge-agent/venv/bin/edge-agent")), "check-config", "-c",
         str(config)], capture_output=True, text=True, timeout=60, check=True,
    )
    assert "OK" in out.stdout


@pytest.mark.slow
def test_install_refuses_to_start_on_a_bad_config(installed: Installed, tmp_path: Path) -> None:
    root = tmp_path / "root"
    shutil.copytree(installed.root, root, symlinks=True)
    config = root / "etc/edge-agent/agent.yaml"
    config.write_text(config.read_text().replace("baudrate: 115200", "baudrate: fast"))

    proc = run_install(root)

    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "readers[0].baudrate: got 'fast'" in proc.stderr  # check-config's own message
    assert "NOT (re)started" in proc.stderr
    assert "baudrate: fast" in config.read_text()  # still the technician's file


@pytest.mark.slow
def test_web_admin_opens_the_config_directory_and_no_web_admin_closes_it(
        installed: Installed, tmp_path: Path) -> None:
    root = tmp_path / "root"
    shutil.copytree(installed.root, root, symlinks=True)
    etc = root / "etc/edge-agent"
    dropin = root / "etc/systemd/system/edge-agent.service.d/web-admin.conf"
    assert not dropin.exists()  # a plain install: read-only for the service
    assert etc.stat().st_mode & 0o7777 == 0o755

    proc = run_install(root, "--web-admin")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert dropin.read_bytes() == WEB_DROPIN.read_bytes()
    # Sticky and group-writable: the agent replaces agent.yaml (its own), not root's files.
    assert etc.stat().st_mode & 0o7777 == 0o1775
    assert "web admin: installed" in proc.stdout

    proc = run_install(root)  # a plain upgrade keeps what the site chose
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert dropin.is_file()
    assert etc.stat().st_mode & 0o7777 == 0o1775
    assert "web-admin.conf (web admin may write" in proc.stdout

    proc = run_install(root, "--no-web-admin")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not dropin.exists()
    assert not dropin.parent.exists()
    assert etc.stat().st_mode & 0o7777 == 0o755
    assert "read-only for the service" in proc.stdout


@pytest.mark.slow
def test_uninstall_keeps_config_and_buffer_unless_purged(
    installed: Installed, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    shutil.copytree(installed.root, root, symlinks=True)
    buffer = root / "var/lib/edge-agent/buffer.db"
    buffer.write_bytes(b"undelivered")

    proc = subprocess.run(["sh", str(UNINSTALL), "--prefix", str(root)],
                          capture_output=True, text=True, timeout=60, check=False)

    assert proc.returncode == 0, proc.stderr
    assert not (root / "opt/edge-agent").exists()
    assert not (root / "etc/systemd/system/edge-agent.service").exists()
    assert not (root / "etc/modules-load.d/edge-agent.conf").exists()
    assert not (root / "usr/local/bin/edge-agent").is_symlink()
    assert buffer.read_bytes() == b"undelivered"
    assert (root / "etc/edge-agent/agent.yaml").is_file()
    assert (root / "etc/udev/rules.d/99-edge-agent-readers.rules").is_file()
    assert "may hold events not yet delivered" in proc.stdout

    proc = subprocess.run(["sh", str(UNINSTALL), "--prefix", str(root), "--purge"],
                          capture_output=True, text=True, timeout=60, check=False)

    assert proc.returncode == 0, proc.stderr
    assert not (root / "var/lib/edge-agent").exists()
    assert not (root / "etc/edge-agent").exists()
    assert not (root / "etc/udev/rules.d/99-edge-agent-readers.rules").exists()
