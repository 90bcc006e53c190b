"""Scenario files (YAML): tag populations over time, read rates and faults.

Times are seconds since the simulator started. Example::

    device: r2000                 # optional: refuse to run with another device
    cycle_s: 24                   # optional: the timeline repeats
    read_rate_per_s: 200          # optional: radio reads/s (0 = unlimited)
    min_round_s: 0.04
    tags:
      - group: pallet-a           # generated SGTIN-96 tags
        count: 20
        company_prefix: "0614141" # quote it: YAML reads 0614141 as an octal number
        item_reference: "812345"
        first_serial: 1
        antenna: 1
        enter_s: 2
        leave_s: 12
        rssi_dbm: [-65, -55]      # a level, or a range drawn once per tag
        reads_per_round: 1
        read_probability: 1.0
      - epc: 3074257BF7194E4000001A85   # one given EPC (hex, whole 16-bit words)
        antenna: 2
    faults:
      garbage: {probability: 0.01, max_bytes: 16}
      garbage_bursts: [{at_s: 6, bytes: 64}]
      split: {probability: 0.05, gap_s: 0.002}
      drop_byte: {probability: 0.001}
      bad_checksum: {probability: 0.001}
      bad_vectors: {probability: 0.001}
      silent: [{at_s: 20, for_s: 3}]
      vanish: [{at_s: 25, for_s: 2}]
      errors: [{code: 0x22, at_s: 14, for_s: 2}, {code: 0x11, probability: 0.01}]
    barcode:                      # barcode and hid devices only
      codes: ["]C0ABC-123", "]d2010950600013435210LOT<GS>21SN1"]
      interval_s: 1.0
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from readersim.barcode import Scan, parse_code
from readersim.faults import DeviceFaults, ErrorInjection, GarbageBurst, LineFaults, Window
from readersim.population import DEFAULT_COMPANY_PREFIX, TagSpec, generated_tags

DEVICES = ("r2000", "chafon", "thingmagic", "barcode", "llrp", "hid")


class ScenarioError(ValueError):
    """A scenario file that cannot be used; the message names the file and the field."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    device: str | None = None
    tags: tuple[TagSpec, ...] | None = None  # None: the file says nothing about tags
    cycle_s: float = 0.0
    read_rate_per_s: float | None = None
    min_round_s: float | None = None
    device_faults: DeviceFaults = field(default_factory=DeviceFaults)
    line_faults: LineFaults = field(default_factory=LineFaults)
    vanish: tuple[Window, ...] = ()
    barcode_codes: tuple[Scan, ...] | None = None
    barcode_interval_s: float | None = None


class _Reader:
    """Typed access to a YAML mapping with error messages that name the field."""

    def __init__(self, data: object, where: str) -> None:
        if not isinstance(data, Mapping):
            raise ScenarioError(f"{where}: expected a mapping, got {type(data).__name__}")
        self.data: Mapping[str, Any] = data
        self.where = where
        self._used: set[str] = set()

    def _get(self, key: str) -> Any:
        self._used.add(key)
        return self.data.get(key)

    def raw(self, key: str) -> Any:
        return self._get(key)

    def has(self, key: str) -> bool:
        return key in self.data

    def err(self, key: str, message: str) -> ScenarioError:
        return ScenarioError(f"{self.where}.{key}: {message}")

    def number(self, key: str, default: float | None = None, *, low: float = 0.0) -> float | None:
        value = self._get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.err(key, f"expected a number, got {value!r}")
        if value < low:
            raise self.err(key, f"must be >= {low}")
        return float(value)

    def req_number(self, key: str, *, low: float = 0.0) -> float:
        value = self.number(key, low=low)
        if value is None:
            raise self.err(key, "required")
        return value

    def integer(self, key: str, default: int, *, low: int = 0, high: int | None = None) -> int:
        value = self._get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.err(key, f"expected an integer, got {value!r}")
        if value < low or (high is not None and value > high):
            raise self.err(key, f"must be in [{low}, {high if high is not None else 'inf'}]")
        return value

    def probability(self, key: str, default: float = 0.0) -> float:
        value = self.number(key, default)
        assert value is not None
        if value > 1.0:
            raise self.err(key, "a probability must be <= 1")
        return value

    def text(self, key: str, default: str | None = None) -> str | None:
        value = self._get(key)
        if value is None:
            return default
        if not isinstance(value, str):
            hint = (
                " (quote it: YAML turns digit strings into numbers)"
                if isinstance(value, int)
                else ""
            )
            raise self.err(key, f"expected a string, got {value!r}{hint}")
        return value

    def items(self, key: str) -> list[Any]:
        value = self._get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.err(key, "expected a list")
        return value

    def sub(self, key: str) -> _Reader | None:
        value = self._get(key)
        return None if value is None else _Reader(value, f"{self.where}.{key}")

    def done(self) -> None:
        unknown = sorted(set(self.data) - self._used)
        if unknown:
            raise ScenarioError(f"{self.where}: unknown keys {unknown}")


def _window(item: object, where: str) -> Window:
    r = _Reader(item, where)
    w = Window(start_s=r.req_number("at_s"), duration_s=r.req_number("for_s"))
    r.done()
    return w


def _tag_group(item: object, where: str, seed: int) -> tuple[TagSpec, ...]:
    r = _Reader(item, where)
    r.text("group")  # a name for humans
    antenna = r.integer("antenna", 1, low=1, high=16)
    enter_s = r.number("enter_s", 0.0)
    leave_s = r.number("leave_s")
    assert enter_s is not None
    if leave_s is not None and leave_s <= enter_s:
        raise r.err("leave_s", "must be after enter_s")
    reads = r.integer("reads_per_round", 1, low=1)
    probability = r.probability("read_probability", 1.0)
    rssi_value = r.raw("rssi_dbm")
    if rssi_value is None:
        rssi: tuple[float, float] = (-70.0, -55.0)
    elif isinstance(rssi_value, int | float) and not isinstance(rssi_value, bool):
        rssi = (float(rssi_value), float(rssi_value))
    elif (
        isinstance(rssi_value, list)
        and len(rssi_value) == 2
        and all(isinstance(v, int | float) for v in rssi_value)
    ):
        rssi = (float(min(rssi_value)), float(max(rssi_value)))
    else:
        raise r.err("rssi_dbm", "expected a number or [low, high]")
    try:
        if r.has("epc"):
            epc_text = r.text("epc")
            assert epc_text is not None
            try:
                epc = bytes.fromhex(epc_text.replace(" ", "").replace(":", ""))
            except ValueError as exc:
                raise r.err("epc", f"not hex: {epc_text!r}") from exc
            rng = random.Random(seed)  # noqa: S311 - simulation, not cryptography
            tags: tuple[TagSpec, ...] = (
                TagSpec(
                    epc=epc,
                    antenna=antenna,
                    rssi_dbm=round(rng.uniform(*rssi)),
                    enter_s=enter_s,
                    leave_s=leave_s,
                    reads_per_round=reads,
                    read_probability=probability,
                ),
            )
        else:
            count = r.integer("count", 1, low=1)
            prefix = r.text("company_prefix", DEFAULT_COMPANY_PREFIX)
            item_ref = r.text("item_reference")
            first = r.integer("first_serial", 1, low=0)
            assert prefix is not None
            generated = generated_tags(
                count,
                seed=seed,
                antennas=(antenna,),
                company_prefix=prefix,
                item_reference=item_ref,
                first_serial=first,
                rssi_dbm=rssi,
                enter_s=enter_s,
                leave_s=leave_s,
                reads_per_round=reads,
            )
            tags = tuple(
                TagSpec(
                    epc=t.epc,
                    antenna=t.antenna,
                    rssi_dbm=t.rssi_dbm,
                    enter_s=t.enter_s,
                    leave_s=t.leave_s,
                    reads_per_round=t.reads_per_round,
                    read_probability=probability,
                )
                for t in generated
            )
    except ScenarioError:
        raise
    except ValueError as exc:
        raise ScenarioError(f"{where}: {exc}") from exc
    r.done()
    return tags


def _faults(r: _Reader) -> tuple[DeviceFaults, LineFaults, tuple[Window, ...]]:
    def prob(key: str) -> tuple[float, _Reader | None]:
        sub = r.sub(key)
        if sub is None:
            return 0.0, None
        return sub.probability("probability"), sub

    garbage_p, garbage = prob("garbage")
    max_bytes = garbage.integer("max_bytes", 16, low=1) if garbage else 16
    split_p, split = prob("split")
    gap_s = split.number("gap_s", 0.002) if split else 0.002
    drop_p, drop = prob("drop_byte")
    bad_p, bad = prob("bad_checksum")
    vec_p, vec = prob("bad_vectors")
    for sub in (garbage, split, drop, bad, vec):
        if sub is not None:
            sub.done()
    bursts = []
    for i, item in enumerate(r.items("garbage_bursts")):
        b = _Reader(item, f"{r.where}.garbage_bursts[{i}]")
        bursts.append(
            GarbageBurst(at_s=b.req_number("at_s"), size_bytes=b.integer("bytes", 64, low=1))
        )
        b.done()
    silent = tuple(_window(x, f"{r.where}.silent[{i}]") for i, x in enumerate(r.items("silent")))
    vanish = tuple(_window(x, f"{r.where}.vanish[{i}]") for i, x in enumerate(r.items("vanish")))
    errors = []
    for i, item in enumerate(r.items("errors")):
        e = _Reader(item, f"{r.where}.errors[{i}]")
        code = e.integer("code", 0x11, low=0, high=0xFF)
        windows: tuple[Window, ...] = ()
        if e.has("at_s") or e.has("for_s"):
            windows = (Window(start_s=e.req_number("at_s"), duration_s=e.req_number("for_s")),)
        errors.append(
            ErrorInjection(code=code, probability=e.probability("probability"), windows=windows)
        )
        e.done()
    r.done()
    assert gap_s is not None
    line = LineFaults(
        garbage_probability=garbage_p,
        garbage_max_bytes=max_bytes,
        split_probability=split_p,
        split_gap_s=gap_s,
        drop_byte_probability=drop_p,
        bad_checksum_probability=bad_p,
        bad_vector_probability=vec_p,
        bursts=tuple(bursts),
    )
    return DeviceFaults(silent=silent, errors=tuple(errors)), line, vanish


def parse_scenario(data: object, source: str = "scenario", *, seed: int = 1) -> Scenario:
    """Validate a loaded YAML document and build the Scenario."""
    r = _Reader(data if data is not None else {}, source)
    device = r.text("device")
    if device is not None and device not in DEVICES:
        raise r.err("device", f"must be one of {list(DEVICES)}")
    cycle_s = r.number("cycle_s", 0.0)
    read_rate = r.number("read_rate_per_s")
    min_round_s = r.number("min_round_s")
    tags: tuple[TagSpec, ...] | None = None
    if r.has("tags"):
        tags = ()
        for i, item in enumerate(r.items("tags")):
            tags += _tag_group(item, f"{source}.tags[{i}]", seed + 1000 * (i + 1))
        epcs = [t.epc for t in tags]
        if len(set(epcs)) != len(epcs):
            raise r.err("tags", "the same EPC appears more than once")
    faults_r = r.sub("faults")
    device_faults, line_faults, vanish = (
        _faults(faults_r) if faults_r else (DeviceFaults(), LineFaults(), ())
    )
    codes: tuple[Scan, ...] | None = None
    interval_s: float | None = None
    barcode = r.sub("barcode")
    if barcode is not None:
        texts = barcode.items("codes")
        if not all(isinstance(t, str) for t in texts):
            raise barcode.err("codes", "expected a list of strings")
        try:
            codes = tuple(parse_code(t) for t in texts) or None
        except ValueError as exc:
            raise barcode.err("codes", str(exc)) from exc
        interval_s = barcode.number("interval_s")
        barcode.done()
    r.done()
    assert cycle_s is not None
    return Scenario(
        device=device,
        tags=tags,
        cycle_s=cycle_s,
        read_rate_per_s=read_rate,
        min_round_s=min_round_s,
        device_faults=device_faults,
        line_faults=line_faults,
        vanish=vanish,
        barcode_codes=codes,
        barcode_interval_s=interval_s,
    )


def load_scenario(path: Path, *, seed: int = 1) -> Scenario:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{path}: not valid YAML: {exc}") from exc
    return parse_scenario(data, str(path), seed=seed)
