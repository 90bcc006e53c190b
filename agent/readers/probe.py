"""What is on this port? Ask it in every protocol and baud rate we speak (technician's tool).

* R2000 "A0": cmd 0x72 get_firmware_version to broadcast 0xFF (reader-protocols.md §1.5, §1.10).
* Chafon/UHFReader: cmd 0x21 get reader information to broadcast 0xFF (§2.5).
* ThingMagic Mercury modules: opcode 0x03 get version (§3), answered in the bootloader and in
  the application; the reply names the model (hardware id) and firmware. Stop-reading goes
  first: a module left streaming answers nothing else.
* Barcode scanners answer no command (§4.1). Bytes that arrive on their own while we wait are
  reported as "data seen at baud X, maybe a barcode scanner".

Each attempt opens the port at one baud rate, sends one request through FrameSession and waits
``timeout_s`` for the reply; the reply's address is the reader's own (requests go to broadcast).
The defaults try each protocol's factory baud rate first (A0 115200, Chafon 57600, Mercury
115200).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from itertools import zip_longest

from agent.readers.codecs import a0, chafon, mercury
from agent.readers.link import Link, LinkBase, LinkError, SerialLink
from agent.readers.session import FrameSession, ReaderTimeout

log = logging.getLogger(__name__)

R2000 = "r2000"
CHAFON = "chafon"
THINGMAGIC = "thingmagic"
PROTOCOLS = (R2000, CHAFON, THINGMAGIC)
R2000_BAUDS = (115200, 57600, 38400, 19200, 9600)  # §1.2: default 115200
CHAFON_BAUDS = (57600, 115200, 9600, 19200, 38400)  # §2.2: default 57600
THINGMAGIC_BAUDS = mercury.SEARCH_BAUDS  # §3: modules ship at 115200
_BAUDS = {R2000: R2000_BAUDS, CHAFON: CHAFON_BAUDS, THINGMAGIC: THINGMAGIC_BAUDS}
DEFAULT_TIMEOUT_S = 0.5
MIN_STRAY_FRAMES = 2

OpenLink = Callable[[str, int], Awaitable[Link]]


@dataclass(frozen=True, slots=True, kw_only=True)
class ProbeResult:
    port: str
    protocol: str | None  # "r2000" | "chafon" | "thingmagic"; None: nothing identified
    baudrate: int | None
    address: int | None = None  # the address in the reply frame
    firmware: str | None = None
    model: str | None = None  # Chafon reader type, e.g. UHFReader288M
    detail: str = ""

    @property
    def found(self) -> bool:
        return self.protocol is not None

    def line(self) -> str:
        """One line for ``edge-agent probe``."""
        if not self.found:
            return f"{self.port}: {self.detail}"
        text = f"{self.port}: {self.protocol} at {self.baudrate} baud"
        if self.address is not None:
            text += f", address 0x{self.address:02X}"
        if self.model:
            text += f", {self.model}"
        if self.firmware:
            text += f", firmware {self.firmware}"
        return f"{text} ({self.detail})" if self.detail else text


def format_probe(results: Sequence[ProbeResult]) -> str:
    return "\n".join(r.line() for r in results)


def attempt_order(
    protocols: Sequence[str] = PROTOCOLS, bauds: Sequence[int] | None = None
) -> list[tuple[str, int]]:
    """(protocol, baud) pairs, most likely first: each protocol's default rate, then the next."""
    lists = [
        [(p, b) for b in (bauds or _BAUDS[p])]
        for p in protocols
    ]
    return [pair for row in zip_longest(*lists) for pair in row if pair is not None]


class _RecordingLink(LinkBase):
    """Keeps a sample of everything read, to tell "silent" from "talks, but not to us"."""

    def __init__(self, link: Link) -> None:
        self._link = link
        self.received = 0
        self.sample = bytearray()

    async def read(self) -> bytes:
        data = await self._link.read()
        self.received += len(data)
        if len(self.sample) < 64:
            self.sample += data[: 64 - len(self.sample)]
        return data

    async def write(self, data: bytes) -> None:
        await self._link.write(data)

    async def aclose(self) -> None:
        await self._link.aclose()


@dataclass(slots=True)
class _Seen:
    baudrate: int
    received: int
    sample: bytes


async def _ask_r2000(
    session: FrameSession[a0.A0Frame], port: str, baud: int, timeout_s: float, strays: list[int]
) -> ProbeResult:
    frame = await session.request(
        a0.encode(a0.BROADCAST, a0.Cmd.GET_FIRMWARE_VERSION),
        lambda f: f.cmd == a0.Cmd.GET_FIRMWARE_VERSION and len(f.data) == 2,
        timeout_s=timeout_s,
        on_other=lambda f: strays.append(f.address),
    )
    return ProbeResult(
        port=port,
        protocol=R2000,
        baudrate=baud,
        address=frame.address,
        firmware=f"{frame.data[0]}.{frame.data[1]}",
    )


async def _ask_chafon(
    session: FrameSession[chafon.ChafonFrame],
    port: str,
    baud: int,
    timeout_s: float,
    strays: list[int],
) -> ProbeResult:
    frame = await session.request(
        chafon.get_reader_info(chafon.BROADCAST),
        chafon.is_reply_to(chafon.Cmd.GET_READER_INFO),
        timeout_s=timeout_s,
        on_other=lambda f: strays.append(f.address),
    )
    info = chafon.parse_reader_info(frame)
    if isinstance(info, chafon.ReaderInfo):
        low, high = info.channel_mhz(info.min_channel), info.channel_mhz(info.max_channel)
        band = info.band_name + (f" {low}-{high} MHz" if low is not None else "")
        bits = [f"band {band}"]
        if info.power_dbm is not None:
            bits.append(f"{info.power_dbm} dBm")
        bits.append(f"scan time {info.scan_time_ms} ms")
        if info.protocol_names:
            bits.append("+".join(info.protocol_names))
        return ProbeResult(
            port=port,
            protocol=CHAFON,
            baudrate=baud,
            address=info.address,
            firmware=info.firmware,
            model=info.model,
            detail=", ".join(bits),
        )
    # A Chafon-framed reply with an error status (or too short) still tells the protocol.
    what = info.description if info is not None else f"short reply {frame.data.hex(' ')}"
    return ProbeResult(
        port=port, protocol=CHAFON, baudrate=baud, address=frame.address, detail=what
    )


async def _ask_thingmagic(
    session: FrameSession[mercury.MercuryFrame], port: str, baud: int, timeout_s: float,
    strays: list[int],
) -> ProbeResult:
    await session.send(mercury.stop_reading())  # a streaming module hears nothing else
    frame = await session.request(
        mercury.get_version(),
        lambda f: f.opcode == mercury.Opcode.VERSION,
        timeout_s=timeout_s,
        on_other=lambda f: strays.append(f.opcode),
    )
    version = mercury.parse_version(frame.data) if frame.ok else None
    if version is None:
        return ProbeResult(port=port, protocol=THINGMAGIC, baudrate=baud,
                           detail=f"version reply {frame.status_text}")
    detail = (f"hardware {version.dotted(version.hardware)}, bootloader "
              f"{version.dotted(version.bootloader)}")
    try:
        reply = await session.request(
            mercury.get_serial_number(), lambda f: f.opcode == mercury.Opcode.HW_VERSION,
            timeout_s=timeout_s)
    except ReaderTimeout:
        reply = None  # the serial is a bonus: the module is identified already
    serial = mercury.parse_serial_number(reply.data) if reply is not None and reply.ok else None
    if serial:
        detail = f"serial {serial}, {detail}"
    return ProbeResult(
        port=port,
        protocol=THINGMAGIC,
        baudrate=baud,
        firmware=version.firmware_text,
        model=version.model,
        detail=detail,
    )


async def _attempt(
    port: str, protocol: str, baud: int, timeout_s: float, open_link: OpenLink
) -> tuple[ProbeResult | None, _Seen]:
    link = _RecordingLink(await open_link(port, baud))
    strays: list[int] = []  # addresses of valid frames of this protocol that were not the reply
    result: ProbeResult | None = None
    try:
        if protocol == R2000:
            a0_session = FrameSession(link, a0.A0Decoder())
            result = await _ask_r2000(a0_session, port, baud, timeout_s, strays)
        elif protocol == THINGMAGIC:
            tm_session = FrameSession(link, mercury.MercuryDecoder())
            result = await _ask_thingmagic(tm_session, port, baud, timeout_s, strays)
        else:
            # §2.2: a 15 ms gap ends a partial frame; the session's idle resync applies it.
            c_session = FrameSession(link, chafon.ChafonDecoder(), idle_resync_s=chafon.MAX_GAP_S)
            result = await _ask_chafon(c_session, port, baud, timeout_s, strays)
    except ReaderTimeout:
        log.debug("probe %s: no %s reply at %d baud", port, protocol, baud)
        # Checked frames at this rate tell the protocol even without a reply; ask for two, as one
        # A0 frame in noise passes its 8-bit checksum 1 time in 256.
        if len(strays) >= MIN_STRAY_FRAMES:
            result = ProbeResult(
                port=port,
                protocol=protocol,
                baudrate=baud,
                address=strays[0] if protocol != THINGMAGIC else None,
                detail=(
                    f"{len(strays)} {protocol} frame(s) seen but no reply to the probe: "
                    "busy reader or another host on the line?"
                ),
            )
    finally:
        await link.aclose()
    return result, _Seen(baud, link.received, bytes(link.sample))


def _printable(sample: bytes) -> bool:
    return bool(sample) and all(32 <= b < 127 or b in (9, 10, 13, 0x1D) for b in sample)


async def probe(
    port: str,
    *,
    bauds: Sequence[int] | None = None,
    protocols: Sequence[str] = PROTOCOLS,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    stop_at_first: bool = True,
    open_link: OpenLink = SerialLink.open,
) -> list[ProbeResult]:
    """Identify what answers on ``port``. Never empty: when nothing is identified the list holds
    "data seen ..." results (bytes arrived but no reply) or one "nothing answered" result.

    ``bauds`` replaces each protocol's default rate list. LinkError if the port cannot be opened.
    """
    unknown = [p for p in protocols if p not in PROTOCOLS]
    if unknown:
        raise ValueError(f"unknown protocol(s) {unknown}; probe knows {list(PROTOCOLS)}")
    order = attempt_order(protocols, bauds)
    found: list[ProbeResult] = []
    seen: dict[int, _Seen] = {}
    opened = False
    for protocol, baud in order:
        try:
            result, s = await _attempt(port, protocol, baud, timeout_s, open_link)
        except LinkError as exc:
            if not opened:
                raise  # the port itself: missing, busy, no permission
            # The port opened at another rate: this one the adapter cannot do (921600 on
            # some USB-serial chips). Skip it, the other rates still count.
            log.debug("probe %s: cannot use %d baud: %s", port, baud, exc)
            continue
        opened = True
        if result is not None:
            found.append(result)
            if stop_at_first:
                return found
        elif s.received:
            prev = seen.get(baud)
            if prev is None:
                seen[baud] = s
            else:
                prev.received += s.received
    if found:
        return found
    if seen:
        out: list[ProbeResult] = []
        for s in seen.values():
            guess = "maybe a barcode scanner" if _printable(s.sample) else "unknown protocol"
            out.append(
                ProbeResult(
                    port=port,
                    protocol=None,
                    baudrate=s.baudrate,
                    detail=(
                        f"data seen at {s.baudrate} baud ({s.received} bytes, e.g. "
                        f"{s.sample[:32]!r}) but nothing answered: {guess}"
                    ),
                )
            )
        return out
    tried = "; ".join(
        f"{p} at {'/'.join(str(b) for q, b in order if q == p)} baud" for p in protocols
    )
    return [
        ProbeResult(
            port=port,
            protocol=None,
            baudrate=None,
            detail=(
                f"nothing answered (tried {tried}); check power and wiring, or scan a barcode "
                "while probing to see a scanner"
            ),
        )
    ]
