"""edge-agent buffer stats|export|purge on a real buffer file written by SqliteBuffer."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from agent.buffer.sqlite import SqliteBuffer
from tests.support.buffer_helpers import event, make_cfg, tag


async def _fill(tmp_path: Path) -> Path:
    cfg = make_cfg(tmp_path)
    buf = await SqliteBuffer.open(cfg)
    try:
        await buf.put_reads([tag(n) for n in range(3)])  # stay as reads
        await buf.commit_events([], [event(n) for n in range(1, 6)])
        claimed = await buf.claim(1, lease_s=60)
        await buf.dead_letter([claimed[0].id], "reason code 0x87 Not authorized")
    finally:
        await buf.aclose()
    config = tmp_path / "agent.yaml"
    config.write_text(yaml.safe_dump({
        "gateway": {"id": "gw-test", "site": "lab"},
        "readers": [{"name": "r1", "driver": "r2000", "port": "/dev/null"}],
        "buffer": {"path": str(cfg.path)},
        "uplink": {"mqtt": {"host": "127.0.0.1"}},
        "status": {"socket": str(tmp_path / "agent.sock")},
    }))
    return config


def _cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent", "buffer", *args], input=stdin,
                          capture_output=True, text=True, timeout=60, check=False)


async def test_stats_export_purge(tmp_path: Path) -> None:
    config = await _fill(tmp_path)
    c = str(config)

    stats = _cli("stats", "--json", "-c", c)
    assert stats.returncode == 0, stats.stderr
    st = json.loads(stats.stdout)
    assert st["events_pending"] == 4
    assert st["reads_pending"] == 3
    assert st["dead_letters"] == 1
    assert st["dropped_total"] == 0
    assert st["quarantined_files"] == []
    assert st["size_bytes"] > 0
    assert st["oldest_event_age_s"] is not None
    human = _cli("stats", "-c", c)
    assert "depth            4 events" in human.stdout
    assert "dead letters     1" in human.stdout

    export = _cli("export", "-c", c)
    assert export.returncode == 0, export.stderr
    rows = [json.loads(line) for line in export.stdout.splitlines()]
    assert [json.loads(r["payload"])["n"] for r in rows] == [2, 3, 4, 5]
    assert "exported 4 pending events" in export.stderr

    out = tmp_path / "dead.jsonl"
    dead = _cli("export", "--dead-letters", "-o", str(out), "-c", c)
    assert dead.returncode == 0, dead.stderr
    (row,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert row["reason"] == "reason code 0x87 Not authorized"
    assert json.loads(row["payload"])["n"] == 1

    # Not a terminal and no --yes: refuses, deletes nothing.
    refused = _cli("purge", "-c", c, stdin="")
    assert refused.returncode == 1
    assert "pass --yes" in refused.stderr
    assert json.loads(_cli("stats", "--json", "-c", c).stdout)["events_pending"] == 4

    only_dead = _cli("purge", "--dead-letters", "--yes", "-c", c)
    assert only_dead.returncode == 0, only_dead.stderr
    assert "purged 1 dead letters" in only_dead.stdout
    after = json.loads(_cli("stats", "--json", "-c", c).stdout)
    assert (after["events_pending"], after["dead_letters"]) == (4, 0)

    everything = _cli("purge", "--yes", "-c", c)
    assert everything.returncode == 0, everything.stderr
    assert "4 events" in everything.stdout
    assert "3 reads" in everything.stdout
    after = json.loads(_cli("stats", "--json", "-c", c).stdout)
    assert (after["events_pending"], after["reads_pending"], after["dead_letters"]) == (0, 0, 0)

    # The agent opens the purged file normally.
    buf = await SqliteBuffer.open(make_cfg(tmp_path))
    try:
        assert (await buf.stats()).events_pending == 0
    finally:
        await buf.aclose()


def test_missing_buffer_file(tmp_path: Path) -> None:
    config = tmp_path / "agent.yaml"
    config.write_text(yaml.safe_dump({
        "gateway": {"id": "gw", "site": "lab"},
        "readers": [{"name": "r1", "driver": "r2000", "port": "/dev/null"}],
        "buffer": {"path": str(tmp_path / "none.db")},
        "uplink": {"mqtt": {"host": "127.0.0.1"}},
    }))
    proc = _cli("stats", "-c", str(config))
    assert proc.returncode == 1
    assert "no such buffer file" in proc.stderr
