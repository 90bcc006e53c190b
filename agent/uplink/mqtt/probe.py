"""The fail-back probe: one raw MQTT CONNECT to a broker, answered by a CONNACK or not.

A second, throw-away client: TCP (and TLS with the uplink's own context), the CONNECT from
:func:`~agent.uplink.mqtt.packets.connect_packet` with client id ``<client id>-probe``, clean
start, no will and session expiry 0 (so the broker keeps nothing and publishes no will for it);
success only on CONNACK reason code 0, then DISCONNECT. paho is not used: a second paho client
would start a second network thread and a session for every probe.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl

from agent.uplink.mqtt.packets import connack_text, connect_packet, describe_connect_error


async def read_varint(reader: asyncio.StreamReader) -> int:
    """An MQTT variable byte integer (§1.5.5); at most 4 bytes."""
    value, shift = 0, 0
    for _ in range(4):
        b = (await reader.readexactly(1))[0]
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value
        shift += 7
    raise asyncio.IncompleteReadError(b"", None)  # malformed length: treat as garbage


async def connack_probe(host: str, port: int, *, ssl_context: ssl.SSLContext | None,
                        client_id: str, v5: bool, keepalive_s: int, username: str | None,
                        password: str | None, timeout_s: float) -> tuple[bool, str]:
    """Returns (ok, reason): ``(True, "CONNACK success")`` or why the broker is not ready."""
    code, reason = await connect_once(host, port, ssl_context=ssl_context, client_id=client_id,
                                      v5=v5, keepalive_s=keepalive_s, username=username,
                                      password=password, timeout_s=timeout_s)
    return code == 0, reason


async def connect_once(host: str, port: int, *, ssl_context: ssl.SSLContext | None,
                       client_id: str, v5: bool, keepalive_s: int, username: str | None,
                       password: str | None, timeout_s: float) -> tuple[int | None, str]:
    """One CONNECT: (CONNACK reason code, text), code None when no CONNACK came (the text
    names the layer: DNS, TCP, TLS, or what the peer answered). ``doctor`` uses it too, so its
    login check is the uplink's own connect."""
    try:
        async with asyncio.timeout(timeout_s):
            return await _probe(host, port, ssl_context, connect_packet(
                client_id, v5=v5, keepalive_s=keepalive_s, username=username,
                password=password), v5)
    except TimeoutError:
        return None, f"no CONNACK within {timeout_s:g} s"
    except (ssl.SSLError, OSError) as exc:
        return None, f"connect failed: {describe_connect_error(exc)}"


async def _probe(host: str, port: int, ctx: ssl.SSLContext | None, connect: bytes,
                 v5: bool) -> tuple[int | None, str]:
    reader, writer = await asyncio.open_connection(
        host, port, ssl=ctx, server_hostname=host if ctx is not None else None)
    try:
        writer.write(connect)
        await writer.drain()
        try:
            kind = (await reader.readexactly(1))[0]
            if kind != 0x20:
                return None, f"answered 0x{kind:02X}... instead of a CONNACK (not MQTT?)"
            body = await reader.readexactly(await read_varint(reader))
        except asyncio.IncompleteReadError:
            return None, "accepted TCP but closed the connection without a CONNACK"
        if len(body) < 2:
            return None, "answered a truncated CONNACK"
        code = body[1]
        if code != 0:
            return code, f"refused the MQTT connection: CONNACK {connack_text(code, v5)}"
        writer.write(b"\xe0\x00")  # DISCONNECT, normal (v5: reason 0 may be omitted)
        with contextlib.suppress(OSError):
            await writer.drain()
        return 0, "CONNACK success"
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()
