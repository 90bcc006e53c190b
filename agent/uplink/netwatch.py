"""The network came back, or the connection's address went away: Linux rtnetlink tells the
uplink at once, so it reconnects now instead of at the end of a backoff grown during a long
outage, or of a keepalive on a connection that cannot carry anything any more (issue 12: Wi-Fi
and 4G gateways lose their link, their address or their default route, and get them back,
often with another address).

The codec (:func:`network_news`) is pure: rtnetlink messages (bytes) in, what came up out,
never raising on a short or odd message. :class:`NetworkWatch` is the seam: one
``AF_NETLINK``/``NETLINK_ROUTE`` socket subscribed to the link, address and route groups, read
on the event loop. No privilege is needed to listen (rtnetlink(7)). Where there is no such
socket (not Linux, a sandbox refusing it), the watch says so once and does nothing: the
backoff then works as before.

Message layouts: rtnetlink(7), netlink(7); linux/rtnetlink.h, linux/if_addr.h, linux/if.h.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

# linux/rtnetlink.h
RTM_NEWLINK = 16
RTM_NEWADDR = 20
RTM_DELADDR = 21
RTM_NEWROUTE = 24
RTMGRP_LINK = 0x1
RTMGRP_IPV4_IFADDR = 0x10
RTMGRP_IPV4_ROUTE = 0x40
RTMGRP_IPV6_IFADDR = 0x100
RTMGRP_IPV6_ROUTE = 0x400
GROUPS = (RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_IFADDR
          | RTMGRP_IPV6_ROUTE)
# linux/if.h: the interface is up and its carrier is present
IFF_UP = 0x1
IFF_LOWER_UP = 0x10000
RT_TABLE_MAIN = 254
RTN_UNICAST = 1
# linux/if_addr.h: an address message's attributes
IFA_ADDRESS = 1
IFA_LOCAL = 2

_NLMSGHDR = struct.Struct("=IHHII")  # length, type, flags, sequence, port id
_RTATTR = struct.Struct("=HH")  # length, type
_IFINFOMSG = struct.Struct("=BxHiII")  # family, (pad), type, index, flags, change
_IFADDRMSG = struct.Struct("=BBBBI")  # family, prefix length, flags, scope, index
# family, dst len, src len, tos, table, protocol, scope, type, flags
_RTMSG = struct.Struct("=BBBBBBBBI")


@dataclass(frozen=True, slots=True)
class NetworkNews:
    """``kind``: "link", "address" or "default route" (came up), or "address gone";
    ``index`` the interface (0 when the message does not say); ``address`` the address of an
    address message ("" when it carries none)."""

    kind: str
    index: int
    address: str = ""


def _align(n: int) -> int:
    return (n + 3) & ~3  # NLMSG_ALIGN


def _address(data: bytes, start: int, end: int) -> str:
    """IFA_LOCAL (IPv4: the interface's own address) or else IFA_ADDRESS (IPv6) among an
    address message's attributes, as text; "" when neither is there or makes sense."""
    found: dict[int, bytes] = {}
    offset = start
    while offset + _RTATTR.size <= end:
        length, kind = _RTATTR.unpack_from(data, offset)
        if length < _RTATTR.size or offset + length > end:
            break
        if kind in (IFA_ADDRESS, IFA_LOCAL):
            found[kind] = data[offset + _RTATTR.size:offset + length]
        offset += _align(length)
    raw = found.get(IFA_LOCAL, found.get(IFA_ADDRESS, b""))
    if len(raw) == 4:
        return str(ipaddress.IPv4Address(raw))
    if len(raw) == 16:
        return str(ipaddress.IPv6Address(raw))
    return ""


def plain_address(text: str) -> str:
    """An address as :func:`network_news` writes it, from getsockname()'s text too: no IPv6
    zone, an IPv4-mapped IPv6 address as IPv4; "" for what is not an address."""
    try:
        ip = ipaddress.ip_address(text.partition("%")[0])
    except ValueError:
        return ""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def network_news(data: bytes) -> list[NetworkNews]:
    """What changed in one datagram of rtnetlink messages: a link up with its carrier
    (RTM_NEWLINK, IFF_UP and IFF_LOWER_UP), a new address (RTM_NEWADDR, any family: a DHCP
    lease, a SLAAC address, a 4G modem's), a new default route in the main table
    (RTM_NEWROUTE, dst_len 0), an address gone (RTM_DELADDR: a lease lost, a modem's address
    changed). Everything else: nothing. A truncated or malformed message ends the
    datagram's parsing there."""
    news: list[NetworkNews] = []
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, kind, _flags, _seq, _pid = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size or offset + length > len(data):
            break
        body = offset + _NLMSGHDR.size
        end = offset + length
        if kind == RTM_NEWLINK and body + _IFINFOMSG.size <= end:
            _family, _type, index, flags, _change = _IFINFOMSG.unpack_from(data, body)
            if flags & IFF_UP and flags & IFF_LOWER_UP:
                news.append(NetworkNews("link", index))
        elif kind in (RTM_NEWADDR, RTM_DELADDR) and body + _IFADDRMSG.size <= end:
            index = _IFADDRMSG.unpack_from(data, body)[4]
            address = _address(data, body + _IFADDRMSG.size, end)
            news.append(NetworkNews("address" if kind == RTM_NEWADDR else "address gone",
                                    index, address))
        elif kind == RTM_NEWROUTE and body + _RTMSG.size <= end:
            _fam, dst_len, _src, _tos, table, _proto, _scope, rtype, _fl = _RTMSG.unpack_from(
                data, body)
            if dst_len == 0 and table == RT_TABLE_MAIN and rtype == RTN_UNICAST:
                news.append(NetworkNews("default route", 0))
        offset += _align(length)
    return news


class NetworkWatch:
    """Calls ``on_news`` with what came up, each kind at most once per ``quiet_s`` (an
    address is often announced with its routes, IPv4 and IPv6 together), and with every
    address gone."""

    def __init__(self, on_news: Callable[[NetworkNews], None], *, quiet_s: float = 0.5,
                 clock: Callable[[], float] | None = None) -> None:
        self._on_news = on_news
        self._quiet_s = quiet_s
        self._clock = clock
        self._last_s: dict[str, float] = {}
        self.messages = 0  # datagrams read (status, tests)

    def open(self) -> socket.socket | None:
        """The subscribed socket, or None (logged) where rtnetlink cannot be had."""
        family = getattr(socket, "AF_NETLINK", None)
        if family is None:
            log.info("uplink: no rtnetlink on this system; reconnects follow the backoff only")
            return None
        sock: socket.socket | None = None
        try:
            sock = socket.socket(family, socket.SOCK_RAW | socket.SOCK_NONBLOCK,
                                 socket.NETLINK_ROUTE)
            sock.bind((0, GROUPS))
        except OSError as exc:
            if sock is not None:
                sock.close()
            log.info("uplink: cannot watch the network (%s); reconnects follow the backoff "
                     "only", exc)
            return None
        return sock

    async def run(self) -> None:
        """Forever (until cancelled); returns at once where there is nothing to watch."""
        sock = self.open()
        if sock is None:
            return
        loop = asyncio.get_running_loop()
        clock = self._clock or loop.time
        try:
            while True:
                try:
                    data = await loop.sock_recv(sock, 65536)
                except OSError as exc:
                    if exc.errno == errno.ENOBUFS:  # the kernel dropped some; the next will do
                        continue
                    log.warning("uplink: the network watch stopped (%s); reconnects follow "
                                "the backoff only", exc)
                    return
                self.messages += 1
                for news in network_news(data):
                    if news.kind == "address gone":  # each one matters: is it ours?
                        self._on_news(news)
                        continue
                    now = clock()
                    if now - self._last_s.get(news.kind, float("-inf")) >= self._quiet_s:
                        self._last_s[news.kind] = now
                        self._on_news(news)
        finally:
            sock.close()
