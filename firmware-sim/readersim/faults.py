"""Fault injection: device-level windows (silence, error replies) and line-level transforms.

Everything is pure: times are scenario seconds (since the server started) and randomness comes
from an injected :class:`random.Random`.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True, kw_only=True)
class Window:
    """A span of scenario time: [start_s, start_s + duration_s)."""

    start_s: float
    duration_s: float

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s

    def contains(self, t_s: float) -> bool:
        return self.start_s <= t_s < self.end_s


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorInjection:
    """Answer inventory commands with an error code instead of a round.

    ``probability`` applies to every inventory command; inside ``windows`` every one fails.
    R2000 codes: 0x11 command_fail, 0x22 antenna missing, 0x36 no tag. For Chafon devices the
    code is the Status byte (F8 antenna error, FB no tag, FE illegal command).
    """

    code: int
    probability: float = 0.0
    windows: tuple[Window, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceFaults:
    """Faults the device itself produces."""

    silent: tuple[Window, ...] = ()  # reader stops answering (input ignored, output stops)
    errors: tuple[ErrorInjection, ...] = ()

    def silent_at(self, t_s: float) -> bool:
        return any(w.contains(t_s) for w in self.silent)

    def silence_end(self, t_s: float) -> float | None:
        """End of the silence that covers ``t_s`` (following back-to-back windows)."""
        end: float | None = None
        t = t_s
        changed = True
        while changed:
            changed = False
            for w in self.silent:
                if w.contains(t):
                    end = t = w.end_s
                    changed = True
        return end

    def error_code(self, t_s: float, rng: random.Random) -> int | None:
        for inj in self.errors:
            if any(w.contains(t_s) for w in inj.windows):
                return inj.code
            if inj.probability > 0 and rng.random() < inj.probability:
                return inj.code
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class GarbageBurst:
    """``size_bytes`` bytes of line noise sent once, at scenario time ``at_s``."""

    at_s: float
    size_bytes: int


@dataclass(frozen=True, slots=True, kw_only=True)
class LineFaults:
    """Faults of the wire between device and host, applied per outgoing frame.

    Probabilities are per frame. ``split_gap_s`` stays below the Chafon 15 ms inter-byte limit.
    """

    garbage_probability: float = 0.0
    garbage_max_bytes: int = 16
    split_probability: float = 0.0
    split_gap_s: float = 0.002
    drop_byte_probability: float = 0.0
    bad_checksum_probability: float = 0.0
    bad_vector_probability: float = 0.0  # insert one of the device's documented [BAD] frames
    bursts: tuple[GarbageBurst, ...] = ()

    @property
    def any(self) -> bool:
        return bool(
            self.garbage_probability
            or self.split_probability
            or self.drop_byte_probability
            or self.bad_checksum_probability
            or self.bad_vector_probability
            or self.bursts
        )


@dataclass(frozen=True, slots=True)
class Chunk:
    """One write to the port, then a pause of ``gap_after_s`` before the next."""

    data: bytes
    gap_after_s: float = 0.0


@dataclass(slots=True)
class LineFaultStats:
    garbage_bytes: int = 0
    split_frames: int = 0
    dropped_bytes: int = 0
    bad_checksums: int = 0
    bad_vectors: int = 0


@dataclass(slots=True)
class LineFaultInjector:
    """Turns each outgoing frame into the chunks actually written."""

    faults: LineFaults
    rng: random.Random
    bad_vectors: tuple[bytes, ...] = ()
    stats: LineFaultStats = field(default_factory=LineFaultStats)
    _bursts_done: int = 0

    def _noise(self, n: int) -> bytes:
        # A quarter of the noise is 0xA0 (the R2000 head byte), to exercise resync.
        rng = self.rng
        return bytes(0xA0 if rng.random() < 0.25 else rng.randrange(256) for _ in range(n))

    def next_burst_s(self) -> float | None:
        """Scenario time of the next scheduled garbage burst."""
        pending = sorted(self.faults.bursts, key=lambda b: b.at_s)[self._bursts_done :]
        return pending[0].at_s if pending else None

    def due_bursts(self, t_s: float) -> bytes:
        """Noise of every scheduled burst whose time has come (once each)."""
        ordered = sorted(self.faults.bursts, key=lambda b: b.at_s)
        out = b""
        while self._bursts_done < len(ordered) and ordered[self._bursts_done].at_s <= t_s:
            out += self._noise(ordered[self._bursts_done].size_bytes)
            self._bursts_done += 1
        self.stats.garbage_bytes += len(out)
        return out

    def transform(self, frame: bytes) -> list[Chunk]:
        f = self.faults
        rng = self.rng
        prefix = b""
        p_bad = f.bad_vector_probability
        if p_bad and self.bad_vectors and rng.random() < p_bad:
            prefix += rng.choice(self.bad_vectors)
            self.stats.bad_vectors += 1
        if f.garbage_probability and rng.random() < f.garbage_probability:
            noise = self._noise(rng.randint(1, max(1, f.garbage_max_bytes)))
            prefix += noise
            self.stats.garbage_bytes += len(noise)
        body = bytearray(frame)
        if f.bad_checksum_probability and body and rng.random() < f.bad_checksum_probability:
            body[-1] ^= rng.randrange(1, 256)
            self.stats.bad_checksums += 1
        if f.drop_byte_probability and len(body) > 1 and rng.random() < f.drop_byte_probability:
            del body[rng.randrange(len(body))]
            self.stats.dropped_bytes += 1
        data = prefix + bytes(body)
        if f.split_probability and len(data) > 1 and rng.random() < f.split_probability:
            parts = rng.randint(2, min(3, len(data)))
            cuts = sorted(rng.sample(range(1, len(data)), parts - 1))
            bounds = [0, *cuts, len(data)]
            self.stats.split_frames += 1
            return [
                Chunk(data[a:b], f.split_gap_s if i < parts - 1 else 0.0)
                for i, (a, b) in enumerate(itertools.pairwise(bounds))
            ]
        return [Chunk(data)]
