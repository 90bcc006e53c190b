"""Scenario files: timing driven by the injected clock, validation, and CLI merging."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from readersim.cli import build_parser, build_plan
from readersim.faults import Window
from readersim.population import Population
from readersim.r2000 import R2000Config, R2000Device, encode_frame
from readersim.scenario import Scenario, ScenarioError, load_scenario, parse_scenario

from tests.support.sim_support import FakeClock, decode_a0_tag, drive, h

SCENARIOS = Path(__file__).resolve().parents[2] / "firmware-sim" / "scenarios"
INVENTORY = h("a0 04 01 89 01 d1")


def device(scenario: Scenario, clock: FakeClock) -> R2000Device:
    assert scenario.tags is not None
    return R2000Device(
        R2000Config(rssi_jitter_db=0.0),
        Population(scenario.tags, cycle_s=scenario.cycle_s),
        clock=clock,
        rng=random.Random(1),
        faults=scenario.device_faults,
    )


def tags_at(dev: R2000Device, clock: FakeClock, t_s: float, antenna: int) -> list[bytes]:
    """EPCs read in one 0x89 round on ``antenna`` at scenario time ``t_s``."""
    assert clock.now_s <= dev.epoch_s + t_s, "time only moves forward"
    clock.now_s = dev.epoch_s + t_s
    out = dev.feed(encode_frame(1, 0x74, bytes([antenna - 1])))
    assert out == [encode_frame(1, 0x74, h("10"))]
    frames = dev.feed(INVENTORY) + drive(dev, clock, 0.5)
    assert frames[-1][1] == 0x0A
    return [decode_a0_tag(f).epc for f in frames[:-1]]


def test_every_example_scenario_loads() -> None:
    files = sorted(SCENARIOS.glob("*.yaml"))
    assert len(files) >= 2
    for path in files:
        load_scenario(path)


def test_dock_door_timeline() -> None:
    scenario = load_scenario(SCENARIOS / "dock-door.yaml")
    clock = FakeClock()
    dev = device(scenario, clock)
    assert tags_at(dev, clock, 1.0, 1) == []  # nothing at the door yet
    assert len(tags_at(dev, clock, 1.8, 1)) == 1  # the forklift (128-bit EPC) comes first
    ant1 = tags_at(dev, clock, 3.0, 1)
    assert len(ant1) == 21
    assert len(set(ant1)) == 21
    assert tags_at(dev, clock, 3.6, 2) == []
    ant2 = tags_at(dev, clock, 9.0, 2)
    assert len(ant2) == 40  # 20 tags, read twice per round
    assert len(set(ant2)) == 20
    assert set(ant1).isdisjoint(ant2)
    assert tags_at(dev, clock, 12.5, 1) == [h("e2801160600002054cc2092f00000001")]
    assert tags_at(dev, clock, 13.5, 1) == []
    assert tags_at(dev, clock, 21.0, 2) == []
    assert len(tags_at(dev, clock, 33.0, 1)) == 21  # the 30 s cycle starts over


def test_dock_door_128_bit_epc_frame() -> None:
    scenario = load_scenario(SCENARIOS / "dock-door.yaml")
    clock = FakeClock()
    dev = device(scenario, clock)
    clock.now_s = dev.epoch_s + 1.8
    frames = dev.feed(INVENTORY) + drive(dev, clock, 1.0)
    assert frames[0][1] == 0x17  # 16-byte EPC: Len = 3 + 1 + 2 + 16 + 1
    assert decode_a0_tag(frames[0]).pc == 0x4000
    assert decode_a0_tag(frames[0]).rssi_raw == -52 + 129


def test_read_probability_thins_out_reads() -> None:
    scenario = load_scenario(SCENARIOS / "dock-door.yaml")
    clock = FakeClock()
    dev = device(scenario, clock)
    clock.now_s = dev.epoch_s + 25.0
    dev.feed(h("a0 04 01 74 02 e5"))
    frames = dev.feed(encode_frame(1, 0x89, h("64"))) + drive(dev, clock, 10.0)  # 100 rounds
    reads = len(frames) - 1
    assert 3 * 100 * 0.3 * 0.7 < reads < 3 * 100 * 0.3 * 1.3


def test_flaky_line_faults_are_timed() -> None:
    scenario = load_scenario(SCENARIOS / "flaky-line.yaml")
    assert scenario.vanish == (Window(start_s=20.0, duration_s=2.0),)
    assert scenario.line_faults.split_probability == pytest.approx(0.1)
    assert scenario.line_faults.bursts[0].size_bytes == 256
    clock = FakeClock()
    dev = device(scenario, clock)
    clock.now_s = dev.epoch_s + 11.0
    assert dev.feed(h("a0 03 01 72 ea")) == []  # silent from 10 to 13 s
    clock.now_s = dev.epoch_s + 13.5
    assert dev.feed(h("a0 03 01 72 ea")) == [h("a0 05 01 72 01 09 de")]
    clock.now_s = dev.epoch_s + 14.5
    assert dev.feed(INVENTORY) == [h("a0 04 01 89 22 b0")]  # antenna missing from 14 to 16 s


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"tagz": []}, "unknown keys ['tagz']"),
        ({"tags": [{"count": 2, "company_prefix": 614141}]}, "quote it"),
        ({"tags": [{"count": 2, "enter_s": 5, "leave_s": 4}]}, "leave_s: must be after enter_s"),
        ({"tags": [{"epc": "30zz"}]}, "not hex"),
        ({"tags": [{"epc": "300102"}]}, "EPC length"),
        ({"tags": [{"epc": "3001"}, {"epc": "3001"}]}, "more than once"),
        ({"tags": [{"count": 2, "company_prefix": "06141"}]}, "6-12 digits"),
        ({"faults": {"split": {"probability": 2}}}, "probability must be <= 1"),
        ({"faults": {"vanish": [{"at_s": 1}]}}, "vanish[0].for_s: required"),
        ({"device": "zebra"}, "device: must be one of"),
    ],
)
def test_validation_names_the_field(doc: dict[str, object], message: str) -> None:
    with pytest.raises(ScenarioError, match=None) as info:
        parse_scenario(doc, "test.yaml")
    assert message in str(info.value)
    assert str(info.value).startswith("test.yaml")


def test_cli_merges_scenario_and_flags() -> None:
    args = build_parser().parse_args(
        [
            "r2000",
            "--scenario",
            str(SCENARIOS / "flaky-line.yaml"),
            "--vanish-after",
            "50",
            "--silent-after",
            "40",
            "--split",
            "0.5",
        ]
    )
    plan = build_plan(args)
    assert plan.spec.vanish == (
        Window(start_s=20.0, duration_s=2.0),
        Window(start_s=50.0, duration_s=2.0),
    )
    assert plan.spec.line_faults.split_probability == 0.5
    assert plan.spec.line_faults.garbage_probability == pytest.approx(0.02)
    clock = FakeClock()
    dev = plan.factory(clock, random.Random(1), clock.now_s)
    clock.advance(41.0)
    assert dev.feed(h("a0 03 01 72 ea")) == []  # the flag's silence window


def test_cli_refuses_a_scenario_for_another_device() -> None:
    args = build_parser().parse_args(["chafon", "--scenario", str(SCENARIOS / "dock-door.yaml")])
    with pytest.raises(ValueError, match="scenario is for r2000"):
        build_plan(args)


def test_barcode_scenario_codes() -> None:
    args = build_parser().parse_args(
        ["barcode", "--scenario", str(SCENARIOS / "scanner-line.yaml")]
    )
    plan = build_plan(args)
    clock = FakeClock()
    dev = plan.factory(clock, random.Random(1), clock.now_s)
    frames = drive(dev, clock, 1.2)
    assert frames[0] == b"]d2010950600013435217201231\r\n"
    assert frames[1] == b"]d20109506000134352172012311012AB\x1d21SN0042\r\n"


@pytest.mark.parametrize(
    "argv",
    [
        ["r2000"],
        [
            "r2000",
            "--tcp",
            "127.0.0.1:0",
            "--antennas",
            "1,5",
            "--tag-antennas",
            "1,5",
            "--summary",
            "v2.2",
            "--read-rate",
            "0",
            "--min-round-s",
            "0.01",
            "--address",
            "0x02",
        ],
        ["chafon"],
        ["chafon", "--model", "18", "--scan-mode", "--antennas", "1,2", "--tags-per-frame", "4"],
        ["barcode"],
        ["barcode", "--terminator", "none", "--no-aim", "--random-order", "--code", "]C0X"],
    ],
)
def test_every_device_builds_a_working_plan(argv: list[str]) -> None:
    plan = build_plan(build_parser().parse_args(argv))
    clock = FakeClock()
    dev = plan.factory(clock, random.Random(1), clock.now_s)
    assert dev.baud in (9600, 57600, 115200)
    drive(dev, clock, 1.0)
