"""driver: hid in the config: defaults, every option, and errors with file:line."""

from __future__ import annotations

import pytest

from agent.config import ConfigError, HidReaderConfig, parse_config
from agent.readers.codecs.hid import KEYMAPS

BASE = """\
gateway: {id: gw-test, site: lab}
readers:
  - {name: scan1, driver: hid, port: /dev/input/by-id/usb-Honeywell-event-kbd, keymap: us}
buffer: {path: ./buffer.db}
uplink:
  mqtt: {host: 127.0.0.1}
"""


def test_defaults() -> None:
    r = parse_config(BASE, "f.yaml").readers[0]
    assert isinstance(r, HidReaderConfig)
    assert (r.keymap, r.terminator, r.inter_key_timeout_ms, r.gs_substitute, r.record_size,
            r.grab) == ("us", "enter", None, "ctrl+]", "auto", True)
    assert r.record_bytes is None
    assert r.link_baudrate == 0


def test_every_option() -> None:
    text = BASE.replace("keymap: us}", "keymap: de, terminator: none, inter_key_timeout_ms: 60,"
                        " gs_substitute: f8, record_size: 16, grab: false}")
    r = parse_config(text, "f.yaml").readers[0]
    assert isinstance(r, HidReaderConfig)
    assert (r.keymap, r.terminator, r.inter_key_timeout_ms, r.gs_substitute, r.record_bytes,
            r.grab) == ("de", "none", 60, "f8", 16, False)
    usb = parse_config(BASE.replace("/dev/input/by-id/usb-Honeywell-event-kbd",
                                    '"usb:0c2e:0b61:ABC"'), "f.yaml").readers[0]
    assert usb.link_spec == "usb:0c2e:0b61:ABC"


@pytest.mark.parametrize(("insert", "expected"), [
    ("keymap: dvorak", "f.yaml:3: readers[0].keymap: got 'dvorak', expected one of"),
    ("keymap: us, gs_substitute: 'ctrl+x'",
     "f.yaml:3: readers[0].gs_substitute: gs_substitute 'ctrl+x': expected ctrl+]"),
    ("keymap: us, terminator: none",
     "f.yaml:3: readers[0]: terminator: none needs inter_key_timeout_ms"),
    ("keymap: us, terminator: CR", "f.yaml:3: readers[0].terminator: got 'CR', expected"),
    ("keymap: us, record_size: 32", "f.yaml:3: readers[0].record_size: got 32, expected"),
    ("keymap: us, inter_key_timeout_ms: 0", "f.yaml:3: readers[0].inter_key_timeout_ms"),
    ("keymap: us, baudrate: 9600", "f.yaml:3: readers[0].baudrate: unknown key"),
])
def test_bad_hid_options_name_file_line_and_field(insert: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(BASE.replace("keymap: us", insert), "f.yaml")
    assert any(str(i).startswith(expected) for i in info.value.issues), info.value.issues


def test_hid_is_a_known_driver_tag() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(BASE.replace("driver: hid", "driver: hdi"), "f.yaml")
    assert any("'hid'" in str(i) for i in info.value.issues), info.value.issues


def test_config_keymaps_are_the_decoders() -> None:
    allowed = set(HidReaderConfig.model_fields["keymap"].annotation.__args__)  # type: ignore[union-attr]
    assert allowed == set(KEYMAPS)
