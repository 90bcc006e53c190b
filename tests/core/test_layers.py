"""The layers contract: no module of agent/ imports a module of a higher layer.

Run by ``make check`` (and so by ``make test``). Every import counts, including ones inside
functions: a local import hides a loop, it does not remove it.

    ground floor   config, model, clock, systemd, osnames (import only each other)
    I/O edges      readers, buffer            (ground floor)
    transform      pipeline                   (ground floor, readers, buffer)
    uplink         uplink                     (everything above, not fieldtools or the top)
    field tools    fieldtools                 (everything but the top)
    top            app, remote, cli, __main__ (wires everything)
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

AGENT = Path(__file__).resolve().parents[2] / "agent"

GROUND = {"config", "model", "clock", "systemd", "osnames"}
ALLOWED: dict[str, set[str]] = {
    **{g: GROUND for g in GROUND},
    "readers": GROUND,
    "buffer": GROUND,
    "pipeline": GROUND | {"readers", "buffer"},
    "uplink": GROUND | {"readers", "buffer", "pipeline"},
    "fieldtools": GROUND | {"readers", "buffer", "pipeline", "uplink"},
}
TOP = {"app", "remote", "cli", "__main__", "__init__"}


def layer_of(path: Path) -> str:
    rel = path.relative_to(AGENT)
    return rel.parts[0].removesuffix(".py")


def imported_layers(path: Path) -> list[tuple[int, str]]:
    """(line, layer) for every ``agent.X`` this file imports."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Import | ast.ImportFrom):
            continue
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
            if node.module == "agent":  # from agent import systemd, __version__
                names = [f"agent.{a.name}" for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            pytest.fail(f"{path}:{node.lineno}: relative import; write agent.X")
        for name in names:
            parts = name.split(".")
            if parts[0] == "agent" and len(parts) > 1:
                found.append((node.lineno, parts[1]))
    return found


def violations() -> list[str]:
    out: list[str] = []
    for path in sorted(AGENT.rglob("*.py")):
        layer = layer_of(path)
        if layer in TOP:
            continue
        allowed = ALLOWED.get(layer)
        if allowed is None:
            out.append(f"{path.relative_to(AGENT.parent)}: layer {layer!r} is not in the contract")
            continue
        for line, target in imported_layers(path):
            if target == "__version__" or target == layer:
                continue
            if target not in allowed:
                out.append(f"{path.relative_to(AGENT.parent)}:{line}: {layer} imports {target}")
    return out


def test_no_module_imports_a_higher_layer() -> None:
    assert violations() == []


def test_the_checker_sees_a_violation(tmp_path: Path) -> None:
    bad = AGENT / "readers" / "codecs" / "a0.py"
    lines = imported_layers(bad)
    assert all(layer in GROUND | {"readers"} for _, layer in lines)
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from agent.uplink.forwarder import Forwarder\n")
    assert imported_layers(probe) == [(2, "uplink")]
