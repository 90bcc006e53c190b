"""Config hardening (issue 13 item 3): every input ends in a config or in ConfigError issues of
the form ``file:line: field: what is wrong`` (exit 2 at the CLI), never a traceback, and no
secret value is ever quoted back."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.config import AgentConfig, ConfigError, load_config, parse_config
from tests.core.test_config import MINIMAL

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "configs").glob("*.yaml"))
SENTINEL = "S3cr3t-Sentinel-9f2"



def _issues(text: str, file: str = "f.yaml") -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, file)
    return [str(i) for i in info.value.issues]


def _file_issues(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return [str(i) for i in info.value.issues]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("{id: gw-test, site: lab}", "!!python/object:os.system {}",
         "f.yaml:1: gateway: the YAML tag !!python/object:os.system is not allowed"),
        ("site: lab", "site: !!timestamp 2001-02-30",
         "f.yaml:1: gateway.site: cannot read '2001-02-30' as timestamp"),
        ("port: 1883", "port: !!int abc", "f.yaml:6: uplink.mqtt.port: cannot read 'abc' as int"),
        ("port: 1883", "port: " + "9" * 5000,
         "f.yaml:6: uplink.mqtt.port: cannot read '9999"),
        ("{path: ./buffer.db}", "{path: ./buffer.db, lease_s: 1.0e+999}",
         "f.yaml:4: buffer.lease_s: got 1.0e+999, expected a finite number"),
        ("{path: ./buffer.db}", "{path: ./buffer.db, lease_s: .nan}",
         "f.yaml:4: buffer.lease_s: got .nan, expected a finite number"),
        ("{path: ./buffer.db}", "{path: ./buffer.db, lease_s: 'inf'}",
         "f.yaml:4: buffer.lease_s:"),
        ("{path: ./buffer.db}", "{path: ./buffer.db, max_size: 4KiB}",
         "f.yaml:4: buffer.max_size: 4096 bytes leaves no room for reads"),
        ("buffer:", "? [a, b]\n: 1\nbuffer:", "f.yaml:4: a key is a list or a mapping"),
        ("gateway:", "gateway:\x00", "f.yaml:1: not valid YAML: the character U+0000"),
        ("topic_prefix: trace}", "topic_prefix: trace, tls: {enabled: false, ca: /x.pem}}",
         "f.yaml:6: uplink.mqtt.tls: tls.ca is set but tls.enabled is false"),
    ],
)
def test_hostile_values_are_config_errors(old: str, new: str, expected: str) -> None:
    text = MINIMAL.replace(old, new)
    assert text != MINIMAL
    found = _issues(text)
    assert any(i.startswith(expected) for i in found), found


def test_deep_nesting_is_refused_before_the_composer_recurses() -> None:
    found = _issues(MINIMAL + "x: " + "[" * 5000 + "]" * 5000 + "\n")
    assert found == ["f.yaml:7: nested more than 32 levels deep; expected a plain configuration"]
    deep_map = "".join("  " * i + f"k{i}:\n" for i in range(200))
    assert "nested more than 32 levels deep" in _issues(MINIMAL + deep_map)[0]


def test_an_alias_bomb_is_refused() -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
        for p, c in zip("abcdef", "bcdefg", strict=True))
    assert "expands to more than" in _issues(bomb)[0]


def test_paths_that_are_not_files(tmp_path: Path) -> None:
    assert _file_issues(tmp_path) == [f"{tmp_path}: is a directory; expected a YAML config "
                                      "file (check the -c path)"]
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # reading it would block start-up forever
    assert _file_issues(fifo)[0] == f"{fifo}: is a FIFO; expected a YAML config file (check " \
                                    "the -c path)"
    assert _file_issues(tmp_path / "nope.yaml")[0].endswith("cannot read the file: No such "
                                                             "file or directory")
    big = tmp_path / "big.yaml"
    big.write_bytes(b"#" * (2 * 1024**2))
    assert "expected a YAML config of at most 1024 KiB" in _file_issues(big)[0]


def test_binary_and_latin1_files_name_the_line(tmp_path: Path) -> None:
    binary = tmp_path / "firmware.bin"
    binary.write_bytes(b"gateway:\n  id: x\n" + bytes(range(128, 256)))
    assert _file_issues(binary) == [
        f"{binary}:3: byte 0x80 at offset 17 is not UTF-8; expected a text file saved as UTF-8 "
        "(a binary file, or an editor's Latin-1?)"]
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes(MINIMAL.replace("site: lab", "site: caf\xe9").encode("latin-1"))
    assert _file_issues(latin1)[0].startswith(f"{latin1}:1: byte 0xe9")


def test_a_status_socket_path_that_is_a_file_is_refused(tmp_path: Path) -> None:
    taken = tmp_path / "notes.txt"
    taken.write_text("someone's file")
    found = _issues(MINIMAL + f"status: {{socket: {taken}}}\n")
    assert found == [f"f.yaml:7: status.socket: {str(taken)!r} exists and is not a socket; "
                     "expected a path that does not exist yet (the agent creates the socket) "
                     "or an old socket of the agent"]
    old_socket = tmp_path / "agent.sock"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(old_socket))
        cfg = parse_config(MINIMAL + f"status: {{socket: {old_socket}}}\n")
    assert cfg.status.socket == old_socket
    fresh = parse_config(MINIMAL + f"status: {{socket: {tmp_path / 'new.sock'}}}\n")
    assert fresh.status.socket == tmp_path / "new.sock"


def test_a_ca_means_tls_whatever_the_host() -> None:
    plain = parse_config(MINIMAL)
    assert not plain.uplink.mqtt.tls_enabled  # loopback, no TLS files: plain text
    with_ca = parse_config(MINIMAL.replace("topic_prefix: trace}",
                                           "topic_prefix: trace, tls: {ca: /etc/ca.pem}}"))
    assert with_ca.uplink.mqtt.tls_enabled
    assert with_ca.uplink.mqtt.port == 1883  # an explicit port is kept


@pytest.mark.parametrize("value", [f"[{SENTINEL}]", f"{{a: {SENTINEL}}}", f"!!int {SENTINEL}",
                                   f"!!binary {SENTINEL}"])
def test_secret_values_never_appear_in_messages(value: str) -> None:
    text = MINIMAL.replace("topic_prefix: trace}", f"topic_prefix: trace, password: {value}}}")
    found = _issues(text)
    assert any("uplink.mqtt.password" in i for i in found), found
    assert not any(SENTINEL in i for i in found), found


def test_a_secret_inside_a_wrong_mapping_is_hidden() -> None:
    text = MINIMAL.replace("mqtt: {host: 127.0.0.1, port: 1883, topic_prefix: trace}",
                           f"mqtt: [{{password: {SENTINEL}}}]")
    found = _issues(text)
    assert any("uplink.mqtt" in i for i in found), found
    assert not any(SENTINEL in i for i in found), found


def test_the_cli_exits_2_without_a_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(bytes(range(256)))
    for path in (bad, tmp_path):
        proc = subprocess.run([sys.executable, "-m", "agent", "check-config", "-c", str(path)],
                              capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr
        assert str(path) in proc.stderr


# -- fuzz: mutated example configs -------------------------------------------------------------

_JUNK = st.sampled_from([
    "", "~", "[]", "{}", "-1", "0", "1e999", ".nan", "9" * 400, "!!int x", "!!binary ???",
    "!!python/name:os.system", "&a [*a]", "*nope", "'unterminated", "\"\\xZZ\"", ": :", "- -",
    "\x00", "\x1b[31m", "${NOPE}", "${HOME}", "{a: [", "]]", "\t", "|\n  x",
    "2001-02-30", "0x7fffffffffffffffffff", "true", "null", "é", "\ufeff",
])


@st.composite
def _mutated(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(EXAMPLES)).read_text()
    lines = text.splitlines(keepends=True)
    for _ in range(draw(st.integers(1, 4))):
        if not lines:
            break
        i = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(["value", "delete", "duplicate", "indent", "truncate",
                                   "insert", "password"]))
        line = lines[i]
        if op == "value" and ":" in line:
            key = line.split(":", 1)[0]
            lines[i] = f"{key}: {draw(_JUNK)}\n"
        elif op == "delete":
            del lines[i]
        elif op == "duplicate":
            lines.insert(i, line)
        elif op == "indent":
            lines[i] = " " * draw(st.integers(0, 7)) + line.lstrip(" ")
        elif op == "truncate":
            lines[i] = line[: draw(st.integers(0, len(line)))]
        elif op == "insert":
            lines.insert(i, draw(_JUNK) + "\n")
        elif op == "password" and line.strip().startswith("host:"):
            indent = line[: len(line) - len(line.lstrip())]
            secret = draw(st.sampled_from([SENTINEL, f"[{SENTINEL}]", f"{{x: {SENTINEL}}}",
                                           f"!!int {SENTINEL}", f"!!float {SENTINEL}"]))
            lines.insert(i + 1, f"{indent}password: {secret}\n")
    return "".join(lines)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mutated())
def test_mutated_example_configs_load_or_fail_cleanly(text: str) -> None:
    issues = []
    try:
        cfg = parse_config(text, "m.yaml")
    except ConfigError as exc:
        issues = exc.issues
    else:
        assert isinstance(cfg, AgentConfig)
        return
    assert issues
    for issue in issues:
        assert issue.file == "m.yaml"
        assert issue.line is not None, issue
        assert issue.line >= 1, issue
        assert issue.message, issue
        assert SENTINEL not in str(issue), issue


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_the_examples_themselves_load(example: Path) -> None:
    assert isinstance(load_config(example), AgentConfig)
