"""End to end over an adversarial link: reader-sim (TCP) -> a relay that splits, drops bytes,
delays and hangs up -> edge-agent (subprocess) -> Mosquitto -> a durable subscriber.

The assertion is at the subscriber, per read: every read the buffer ever committed
(``tea:readId`` 1..last) was delivered, and every delivered EPC is one the simulator has in its
field, so line noise invented nothing. The relay's counters prove the link really was bad.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from readersim.population import generated_tags

from tests.support.badlink import BadLink, LinkFaults
from tests.support.harness import (
    EVENTS_TOPIC,
    AgentProcess,
    SimProcess,
    all_committed_delivered,
    buffer_state,
    durable_collector,
    events_of,
    read_ids,
    wait_until,
    write_config,
)
from tests.support.mosquitto import Mosquitto

FAULTS = LinkFaults(split_p=0.3, drop_p=0.05, delay_max_s=0.02, hangup_every_s=2.5)

DRIVERS: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "r2000": ((), {"driver": "r2000", "baudrate": 115200}),
    "chafon": (("--tags-per-frame", "2"), {"driver": "chafon", "baudrate": 57600,
                                           "scan_time_ms": 300}),
}


@pytest.mark.parametrize("driver", sorted(DRIVERS))
def test_adversarial_link_loses_and_invents_nothing(tmp_path: Path, mosquitto: Mosquitto,
                                                    driver: str) -> None:
    sim_args, reader = DRIVERS[driver]
    population = {t.epc.hex().upper() for t in generated_tags(8, seed=17)}
    sim = SimProcess(driver, "--tcp", "127.0.0.1:0", "--tags", "8", "--seed", "17",
                     "--read-rate", "150", *sim_args, log_path=tmp_path / "sim.log")
    db = tmp_path / "buffer.db"
    with BadLink(sim.host_port, FAULTS, seed=17) as link, \
            durable_collector(mosquitto, EVENTS_TOPIC, f"e2e-badlink-{driver}") as collector:
        cfg = write_config(tmp_path / "agent.yaml", reader_port=link.url, broker=mosquitto,
                           buffer=db, reader={"name": "dock-1", "reconnect_min_s": 0.05,
                                              "reconnect_max_s": 0.5, **reader})
        agent = AgentProcess(cfg, tmp_path / "agent.log")
        try:
            # Long enough for three hang-ups, the agent back after each, and a few hundred
            # damaged frames.
            wait_until(lambda: link.stats.hangups >= 3 and link.stats.connections >= 4
                       and buffer_state(db)["last_read_id"] > 200,
                       60, "reads over a link that hung up three times",
                       diagnostics=agent.log_text)
            sim.stop()  # no new reads: everything committed must now drain
            time.sleep(1.5)  # reads still in flight on the relay or in the batch writer land
            wait_until(lambda: all_committed_delivered(collector.messages, db), 60,
                       "every committed read at the subscriber", diagnostics=agent.log_text)
        finally:
            assert agent.stop() == 0, agent.log_text()
    stats = link.stats
    assert stats.dropped_bytes > 10, stats
    assert stats.splits > 10, stats
    assert stats.delays > 10, stats
    assert stats.connections >= 4, stats  # the agent came back after every hang-up

    state = buffer_state(db)
    assert state["reads"] == 0, state
    assert state["outbox"] == 0, state
    delivered = read_ids(events_of(collector.messages))  # duplicates share their eventID
    numbers = {int(rid.rsplit(":", 1)[1]) for rid in delivered}
    missing = set(range(1, state["last_read_id"] + 1)) - numbers
    assert not missing, f"{len(missing)} committed reads never delivered"
    assert numbers <= set(range(1, state["last_read_id"] + 1)), "a read id the buffer never gave"
    epcs = {r["tea:epcHex"] for e in events_of(collector.messages) for r in e["tea:reads"]}
    invented = epcs - population
    assert not invented, f"line noise became reads: {sorted(invented)}"
    assert epcs, "nothing delivered"
    log = agent.log_text()
    assert "Traceback" not in log
