"""Tag populations: which tags each antenna sees at a given scenario time."""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass

from readersim.epc import pc_word, sgtin96

DEFAULT_COMPANY_PREFIX = "0614141"
RSSI_OFFSET_DB = 129  # dBm = raw - 129 (V3 demo, node-r2k; protocol doc §1.6)


@dataclass(frozen=True, slots=True, kw_only=True)
class TagSpec:
    """One tag and where/when it is in an antenna field."""

    epc: bytes
    antenna: int = 1  # 1-based port
    rssi_dbm: float = -60.0
    enter_s: float = 0.0
    leave_s: float | None = None  # None: never leaves
    reads_per_round: int = 1
    read_probability: float = 1.0

    def __post_init__(self) -> None:
        pc_word(self.epc)  # validates the length
        if self.antenna < 1:
            raise ValueError("antenna numbers are 1-based")
        if self.reads_per_round < 1:
            raise ValueError("reads_per_round must be >= 1")
        if not 0.0 <= self.read_probability <= 1.0:
            raise ValueError("read_probability must be in [0, 1]")

    @property
    def pc(self) -> int:
        return pc_word(self.epc)

    def present_at(self, t_s: float) -> bool:
        return self.enter_s <= t_s and (self.leave_s is None or t_s < self.leave_s)


@dataclass(frozen=True, slots=True)
class Population:
    """All tags of a scenario. ``cycle_s`` > 0 makes the timeline repeat."""

    tags: tuple[TagSpec, ...]
    cycle_s: float = 0.0

    def visible(self, t_s: float, antenna: int) -> list[TagSpec]:
        t = t_s % self.cycle_s if self.cycle_s > 0 else t_s
        return [tag for tag in self.tags if tag.antenna == antenna and tag.present_at(t)]


def rssi_raw(dbm: float) -> int:
    """The 7-bit RSSI byte of the A0 protocol for a level in dBm."""
    return max(0, min(0x7F, round(dbm) + RSSI_OFFSET_DB))


def generated_tags(
    count: int,
    *,
    seed: int,
    antennas: Iterable[int] = (1,),
    company_prefix: str = DEFAULT_COMPANY_PREFIX,
    item_reference: str | None = None,
    first_serial: int = 1,
    rssi_dbm: tuple[float, float] = (-70.0, -55.0),
    enter_s: float = 0.0,
    leave_s: float | None = None,
    reads_per_round: int = 1,
) -> tuple[TagSpec, ...]:
    """``count`` distinct SGTIN-96 tags, serials first_serial.., deterministic from ``seed``.

    Antennas are assigned round-robin; each tag gets a steady RSSI in the ``rssi_dbm`` range.
    """
    rng = random.Random(seed)  # noqa: S311 - simulation, not cryptography
    ants = list(antennas) or [1]
    if item_reference is None:
        digits = 13 - len(company_prefix)
        item_reference = f"{rng.randrange(10**digits):0{digits}d}"
    lo, hi = rssi_dbm
    return tuple(
        TagSpec(
            epc=sgtin96(company_prefix, item_reference, first_serial + i),
            antenna=ants[i % len(ants)],
            rssi_dbm=round(rng.uniform(lo, hi)),
            enter_s=enter_s,
            leave_s=leave_s,
            reads_per_round=reads_per_round,
        )
        for i in range(count)
    )
