"""Configuration: the minimal config works; bad ones exit 2 naming file, line and field."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agent.config import ConfigError, load_config, parse_config

MINIMAL = """\
gateway: {id: gw-test, site: lab}
readers:
  - {name: r1, driver: r2000, port: /dev/pts/7, baudrate: 115200}
buffer: {path: ./buffer.db}
uplink:
  mqtt: {host: 127.0.0.1, port: 1883, topic_prefix: trace}
"""


def test_minimal_config_from_the_issue_loads_unchanged() -> None:
    cfg = parse_config(MINIMAL, "minimal.yaml")
    assert cfg.gateway.id == "gw-test"
    assert cfg.readers[0].driver == "r2000"
    assert cfg.readers[0].port == "/dev/pts/7"
    assert cfg.buffer.synchronous == "FULL"
    assert cfg.uplink.mqtt.topic_prefix == "trace"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (MINIMAL.replace("gateway: {id: gw-test, site: lab}", "gateway: {id: gw-test}"),
         "f.yaml:1: gateway.site: required key is missing"),
        (MINIMAL.replace("baudrate: 115200", "baudrate: fast"),
         "f.yaml:3: readers[0].baudrate: got 'fast', expected one of"),
        (MINIMAL.replace("port: 1883", "port: abc"),
         "f.yaml:6: uplink.mqtt.port: got 'abc', input should be a valid integer"),
        (MINIMAL.replace("topic_prefix", "topic_prefx"),
         "f.yaml:6: uplink.mqtt.topic_prefx: unknown key"),
        (MINIMAL.replace("driver: r2000", "driver: r3000"),
         "f.yaml:3: readers[0].driver: got 'r3000', expected one of"),
        (MINIMAL.replace("buffer: {path: ./buffer.db}\n", ""),
         "f.yaml:1: buffer: required key is missing"),
        (MINIMAL.replace("{path: ./buffer.db}", "{path: ./b.db, max_size: lots}"),
         "f.yaml:4: buffer.max_size: expected a size such as 512MiB"),
        ("gateway: [\n", "f.yaml:2: not valid YAML"),
    ],
)
def test_bad_config_messages(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "f.yaml")
    assert any(str(i).startswith(expected) for i in info.value.issues), info.value.issues


def test_every_error_is_reported_not_only_the_first() -> None:
    text = MINIMAL.replace("site: lab", "site: ''").replace("port: 1883", "port: 0")
    with pytest.raises(ConfigError) as info:
        parse_config(text, "f.yaml")
    paths = {i.path for i in info.value.issues}
    assert {"gateway.site", "uplink.mqtt.port"} <= paths


def test_env_references(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("READER_PORT", "/dev/ttyUSB3")
    cfg = parse_config(MINIMAL.replace("/dev/pts/7", "\"${READER_PORT}\""))
    assert cfg.readers[0].port == "/dev/ttyUSB3"
    monkeypatch.delenv("READER_PORT")
    with pytest.raises(ConfigError, match="environment variable READER_PORT is not set"):
        parse_config(MINIMAL.replace("/dev/pts/7", "\"${READER_PORT}\""))
    cfg = parse_config(MINIMAL.replace("/dev/pts/7", "\"${READER_PORT:-/dev/ttyS0}\""))
    assert cfg.readers[0].port == "/dev/ttyS0"


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the file"):
        load_config(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    ("mutation", "needle"),
    [
        (("baudrate: 115200", "baudrate: '115200x'"), "readers[0].baudrate"),
        (("{path: ./buffer.db}", "{}"), "buffer.path: required key is missing"),
    ],
)
def test_cli_exits_2_with_file_line_field_and_no_traceback(
    tmp_path: Path, mutation: tuple[str, str], needle: str
) -> None:
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(MINIMAL.replace(*mutation))
    for command in ("run", "check-config"):
        proc = subprocess.run(
            [sys.executable, "-m", "agent", command, "-c", str(cfg)],
            capture_output=True, text=True, timeout=60, check=False,
        )
        assert proc.returncode == 2, proc.stderr
        assert f"{cfg}:" in proc.stderr
        assert needle in proc.stderr
        assert "Traceback" not in proc.stderr


def test_example_configs_validate() -> None:
    configs = sorted(Path(__file__).resolve().parents[2].joinpath("configs").glob("*.yaml"))
    assert configs
    for path in configs:
        load_config(path)


# ----------------------------------------------------------------------------- event mapping

def test_event_mapping_defaults_keep_old_configs_working() -> None:
    r = parse_config(MINIMAL).readers[0]
    assert r.mode == "presence"
    assert r.action == "OBSERVE"
    assert (r.read_point, r.biz_location, r.biz_step, r.disposition) == (None,) * 4
    assert r.presence.window_s == 1.0
    assert r.presence.depart_after_s == 10.0
    assert r.presence.min_reads == 1
    assert r.presence.min_rssi_dbm is None
    assert r.presence.heartbeat_s is None
    assert r.antenna_map == {}
    assert r.double_scan_window_s == 0.0


def test_event_mapping_with_antenna_overrides() -> None:
    text = MINIMAL.replace(
        "baudrate: 115200}",
        "baudrate: 115200, antennas: [1, 2], biz_step: receiving,\n"
        "     read_point: 'urn:epc:id:sgln:0614141.00777.1',\n"
        "     antenna_map: {2: {read_point: 'urn:epc:id:sgln:0614141.00777.2',\n"
        "                       biz_step: 'https://example.com/steps/weighing'}},\n"
        "     presence: {window_s: 2, depart_after_s: 30, min_reads: 3, min_rssi_dbm: -70}}")
    r = parse_config(text, "f.yaml").readers[0]
    assert r.antenna_map[2].biz_step == "https://example.com/steps/weighing"
    assert r.presence.min_reads == 3


@pytest.mark.parametrize(
    ("insert", "expected"),
    [
        ("biz_step: receiveing",
         "f.yaml:3: readers[0].biz_step: got 'receiveing', expected a CBV 2.0 bizStep such as "
         "receiving"),
        ("disposition: intransit",
         "f.yaml:3: readers[0].disposition: got 'intransit', expected a CBV 2.0 disposition"),
        ("biz_step: 'urn:epcglobal:cbv:bizstep:receiving'",
         "f.yaml:3: readers[0].biz_step: got 'urn:epcglobal:cbv:bizstep:receiving'"),
        ("read_point: dock door 1",
         "f.yaml:3: readers[0].read_point: got 'dock door 1', expected a URI"),
        ("mode: smoothed",
         "f.yaml:3: readers[0].mode: got 'smoothed', expected one of"),
        ("action: DELETE", "f.yaml:3: readers[0].action: got 'DELETE', expected one of"),
        ("antenna_map: {1: {biz_step: shiping}}",
         "f.yaml:3: readers[0].antenna_map.1.biz_step: got 'shiping'"),
        ("antenna_map: {3: {biz_step: shipping}}",
         "f.yaml:3: readers[0]: antenna_map: antenna(s) [3] are not in antennas [1]"),
        ("presence: {depart_after_s: 0}", "f.yaml:3: readers[0].presence.depart_after_s"),
    ],
)
def test_bad_event_mapping_messages(insert: str, expected: str) -> None:
    text = MINIMAL.replace("baudrate: 115200}", f"baudrate: 115200, {insert}}}")
    with pytest.raises(ConfigError) as info:
        parse_config(text, "f.yaml")
    assert any(str(i).startswith(expected) for i in info.value.issues), info.value.issues


READERS = """\
gateway: {id: gw-test, site: lab}
readers:
  - {name: r1, driver: r2000, port: /dev/pts/7, power_dbm: {1: 30, 5: 20},
     inventory: session, session: 2, target: B, phase: true, antennas: [1, 5, 12]}
  - {name: c1, driver: chafon, port: "usb:1a86:7523", work_mode: push, protocol: uhfreader18}
  - {name: b1, driver: barcode, port: /dev/ttyACM0, terminator: none, idle_flush_ms: 50}
buffer: {path: ./buffer.db}
uplink:
  mqtt: {host: 127.0.0.1}
"""


def test_reader_models_for_every_driver() -> None:
    from agent.config import BarcodeConfig, ChafonConfig, R2000Config

    r, c, b = parse_config(READERS, "readers.yaml").readers
    assert isinstance(r, R2000Config)
    assert r.power_dbm == {1: 30, 5: 20}
    assert (r.inventory, r.session, r.target, r.phase) == ("session", 2, "B", True)
    assert isinstance(c, ChafonConfig)
    assert (c.baudrate, c.address, c.q_value, c.scan_time_ms, c.inter_byte_gap_ms) == (
        57600, 0xFF, 4, 1000, 15.0)
    assert isinstance(b, BarcodeConfig)
    assert b.terminator_bytes is None
    assert b.max_length == 4096


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("inventory: session, ", "", "readers[0]: phase needs inventory: session or fast_switch"),
        ("protocol: uhfreader18}", "protocol: uhfreader18, antennas: [1, 2]}",
         "readers[1]: uhfreader18 readers have one antenna"),
        ("idle_flush_ms: 50", "idle_flush_ms: null", "readers[2]: terminator: none needs"),
        ("work_mode: push", "work_mode: pull", "readers[1].work_mode: got 'pull', expected one of"),
        ("driver: barcode", "driver: scanner", "readers[2].driver: got 'scanner'"),
        ("{1: 30, 5: 20}", "{1: 30, 9: 20}", "readers[0].power_dbm"),
    ],
)
def test_reader_config_errors(old: str, new: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(READERS.replace(old, new), "f.yaml")
    assert any(expected in str(i) for i in info.value.issues), info.value.issues


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # An alias inside its own anchor: a cycle (was a RecursionError traceback).
        ("gateway: &g {id: gw, site: lab, extra: *g}\nreaders: []\nbuffer: {path: ./b.db}\n"
         "uplink: {mqtt: {host: 127.0.0.1, port: 1883, topic_prefix: trace}}\n",
         "f.yaml:1: gateway.extra: an alias refers to its own anchor"),
        ("gateway: {id: gw, site: lab}\nreaders: &r\n  - *r\nbuffer: {path: ./b.db}\n"
         "uplink: {mqtt: {host: 127.0.0.1, port: 1883, topic_prefix: trace}}\n",
         "f.yaml:2: readers[0]: an alias refers to its own anchor"),
        # Aliases of aliases ("billion laughs"): would expand to 10**9 values (a hang).
        ("a: &a [x, x, x, x, x, x, x, x, x, x]\n"
         + "".join(f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n"
                   for p, c in zip("abcdefgh", "bcdefghi", strict=True))
         + "gateway: {id: gw, site: lab, extra: *i}\n",
         "the document expands to more than"),
    ],
)
def test_recursive_or_exploding_yaml_aliases_are_config_errors(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "f.yaml")
    assert expected in str(info.value)


def test_a_shared_anchor_is_still_fine() -> None:
    text = MINIMAL.replace(
        "  - {name: r1, driver: r2000, port: /dev/pts/7, baudrate: 115200}\n",
        "  - {name: r1, driver: r2000, port: /dev/pts/7, antennas: &ant [1, 2]}\n"
        "  - {name: r2, driver: r2000, port: /dev/pts/8, antennas: *ant}\n")
    cfg = parse_config(text, "f.yaml")
    assert [getattr(r, "antennas", None) for r in cfg.readers] == [[1, 2], [1, 2]]


LLRP_READER = """\
gateway: {id: gw, site: lab}
readers:
  - name: dock-fx
    driver: llrp
    host: 10.0.0.7
    antennas: [1, 2]
    reader_mode: autoset_dense_reader
    search_mode: dual_target
    report: {every_n_tags: 20, timeout_ms: 250}
    gpi_trigger: {port: 1, stop_after_s: 30}
buffer: {path: ./b.db}
uplink: {mqtt: {host: 127.0.0.1, port: 1883, topic_prefix: trace}}
"""


def test_llrp_keys_load() -> None:
    from agent.config import LlrpConfig

    (r,) = parse_config(LLRP_READER, "dock.yaml").readers
    assert isinstance(r, LlrpConfig)
    assert (r.reader_mode, r.search_mode) == ("autoset_dense_reader", "dual_target")
    assert (r.report.every_n_tags, r.report.timeout_ms) == (20, 250)
    assert r.gpi_trigger is not None
    assert (r.gpi_trigger.port, r.gpi_trigger.stop_after_s) == (1, 30)
    assert parse_config(LLRP_READER.replace("reader_mode: autoset_dense_reader",
                                            "reader_mode: 1002"), "d.yaml").readers[0] \
        .reader_mode == 1002  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("port: 1, stop", "port: 0, stop",
         "dock.yaml:10: readers[0].gpi_trigger.port: Input should be greater than or equal to 1 "
         "(got 0)"),
        ("stop_after_s: 30", "stop_after_s: -1",
         "dock.yaml:10: readers[0].gpi_trigger.stop_after_s: Input should be greater than 0 "
         "(got -1)"),
        ("gpi_trigger: {port: 1,", "gpi_trigger: {pin: 1,",
         "dock.yaml:10: readers[0].gpi_trigger.pin: unknown key"),
        ("search_mode: dual_target", "search_mode: tag_focus",
         "dock.yaml:8: readers[0].search_mode: got 'tag_focus', expected one of"),
        ("timeout_ms: 250", "timeout_ms: 1",
         "dock.yaml:9: readers[0].report.timeout_ms: Input should be greater than or equal to 10 "
         "(got 1)"),
        ("reader_mode: autoset_dense_reader", "reader_mode: ''",
         "dock.yaml:7: readers[0].reader_mode"),
    ],
)
def test_llrp_key_errors_name_file_line_and_field(old: str, new: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(LLRP_READER.replace(old, new), "dock.yaml")
    assert any(expected in str(i) for i in info.value.issues), info.value.issues


# ----------------------------------------------------------------------------- thingmagic

THINGMAGIC = """\
gateway: {id: gw-test, site: lab}
readers:
  - name: nano
    driver: thingmagic
    port: /dev/serial/by-id/usb-FTDI_FT231X_USB_UART-if00-port0
    baudrate: 115200
    region: EU3
    antennas: [1]
    power_dbm: 20
buffer: {path: ./buffer.db}
uplink:
  mqtt: {host: 127.0.0.1, port: 1883, topic_prefix: trace}
"""


def test_thingmagic_reader_from_the_issue_loads() -> None:
    from agent.config import ThingMagicReaderConfig

    (nano,) = parse_config(THINGMAGIC, "nano.yaml").readers
    assert isinstance(nano, ThingMagicReaderConfig)
    assert (nano.region, nano.antennas, nano.power_dbm, nano.baudrate) == ("EU3", [1], 20, 115200)


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("    region: EU3\n", "",
         "f.yaml:3: readers[0].region: required key is missing (expected the Mercury region the "
         "module may transmit in, one of NA, EU, KR, IN, JP, PRC, EU2, EU3, KR2, PRC2, AU, NZ, "
         "NA2, NA3, OPEN)"),
        ("region: EU3", "region: EU4",
         "f.yaml:7: readers[0].region: got 'EU4', expected one of 'NA', 'EU', 'KR', 'IN', 'JP', "
         "'PRC', 'EU2', 'EU3', 'KR2', 'PRC2', 'AU', 'NZ', 'NA2', 'NA3' or 'OPEN'"),
        ("power_dbm: 20", "power_dbm: 40", "f.yaml:9: readers[0].power_dbm"),
        ("antennas: [1]", "antennas: [1, 1]", "readers[0]: antennas lists a port twice"),
    ],
)
def test_thingmagic_config_errors(old: str, new: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(THINGMAGIC.replace(old, new), "f.yaml")
    assert any(expected in str(i) for i in info.value.issues), info.value.issues


def test_check_config_rejects_a_missing_region_with_its_line(tmp_path: Path) -> None:
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(THINGMAGIC.replace("    region: EU3\n", ""))
    proc = subprocess.run([sys.executable, "-m", "agent", "check-config", "-c", str(cfg)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2, proc.stderr
    assert f"{cfg}:3: readers[0].region: required key is missing" in proc.stderr
    assert "EU3, KR2" in proc.stderr
    assert "Traceback" not in proc.stderr
