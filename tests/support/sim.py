"""The one simulator helper: ``python -m readersim ...`` (reader-sim) as a subprocess.

``SimProcess("r2000", "--pty", "--tags", "2", log_path=tmp_path / "sim.log")``; ``.port`` is
the first stdout line (the pseudo-terminal's path or ``host:port``), ``.line()`` reads the next
ones, ``.stop()`` sends SIGTERM and returns ``(exit code, stderr text)``. With ``log_path``
stderr goes to that file (long runs cannot fill a pipe), otherwise to a pipe read at stop.
"""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[2]


class SimProcess:
    def __init__(self, *args: str, log_path: Path | None = None) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = f"{ROOT / 'firmware-sim'}{os.pathsep}{ROOT}"
        self.log_path = log_path
        self._log: IO[bytes] | None = log_path.open("wb") if log_path is not None else None
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "readersim", *args],
            stdout=subprocess.PIPE,
            stderr=self._log if self._log is not None else subprocess.PIPE,
            env=env,
        )
        self._pending = b""
        self._port: str | None = None

    @property
    def port(self) -> str:
        """The first stdout line: where the simulated reader listens."""
        if self._port is None:
            self._port = self.line()
        return self._port

    @property
    def host_port(self) -> tuple[str, int]:
        """(host, port) of a simulator serving ``--tcp`` (its URL is tcp:// or tls://)."""
        m = re.fullmatch(r"(?:tcp|tls)://([^:]+):(\d+)", self.port)
        assert m, f"not a TCP simulator: {self.port}"
        return m.group(1), int(m.group(2))

    def line(self, timeout_s: float = 10.0) -> str:
        """Next stdout line (without newline); fails the test after ``timeout_s``."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout_s
        while b"\n" not in self._pending:
            left = deadline - time.monotonic()
            assert left > 0, "no line from reader-sim in time"
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 4096)
                assert chunk, f"reader-sim exited: {self.stop()[1]}"
                self._pending += chunk
        line, _, self._pending = self._pending.partition(b"\n")
        return line.decode()

    def take_pending(self) -> bytes:
        """Bytes read from stdout past the last line returned (for a reader taking over)."""
        pending, self._pending = self._pending, b""
        return pending

    def stop(self, sig: int | None = None) -> tuple[int, str]:
        """Signal the process (SIGTERM by default); return (exit code, stderr)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM if sig is None else sig)
        try:
            _, err = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        if self._log is not None:
            self._log.close()
            assert self.log_path is not None
            err = self.log_path.read_bytes()
        return self.proc.returncode, (err or b"").decode(errors="replace")
