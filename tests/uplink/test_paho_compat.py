"""What agent/uplink/mqtt/compat.py relies on in paho-mqtt's internals, checked without a
broker: a paho upgrade that moves any of it fails here, naming the attribute, instead of as a
hang or a silent loss in the field."""

from __future__ import annotations

import inspect
import threading
from importlib.metadata import version

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion, _ConnectionState
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from agent.uplink.mqtt import RC_PACKET_TOO_LARGE, publish_packet_size
from agent.uplink.mqtt.compat import (
    PahoClient,
    accept_out_of_spec_puback_codes,
    drop_held_larger_than,
    held_count,
)

PAHO = version("paho-mqtt")


def _client() -> paho.Client:
    return paho.Client(CallbackAPIVersion.VERSION2, client_id="compat", protocol=paho.MQTTv5)


def _why(what: str) -> str:
    return (f"paho-mqtt {PAHO}: {what}; agent/uplink/mqtt/compat.py relies on it (see its "
            "docstring): adapt compat.py to this paho version")


@pytest.mark.parametrize("name", ["reconnect", "_reconnect_wait", "_ssl_wrap_socket",
                                  "_send_disconnect", "_sock_close"])
def test_the_methods_we_override_or_call_exist(name: str) -> None:
    assert callable(getattr(paho.Client, name, None)), _why(f"Client.{name} is gone")


@pytest.mark.parametrize(("name", "params"), [
    ("reconnect", ["self"]),
    ("_reconnect_wait", ["self"]),
    ("_ssl_wrap_socket", ["self", "tcp_sock"]),
    ("_send_disconnect", ["self", "reasoncode", "properties"]),
    ("_sock_close", ["self"]),
])
def test_their_signatures_are_unchanged(name: str, params: list[str]) -> None:
    got = list(inspect.signature(getattr(paho.Client, name)).parameters)
    assert got == params, _why(f"Client.{name}{tuple(got)} instead of {tuple(params)}")


@pytest.mark.parametrize("name", ["_host", "_port", "_ssl_context", "_connect_timeout",
                                  "_state", "_thread_terminate", "_out_messages",
                                  "_out_message_mutex"])
def test_the_attributes_we_read_exist_on_a_new_client(name: str) -> None:
    assert hasattr(_client(), name), _why(f"a Client has no {name}")


def test_held_messages_are_a_mid_keyed_dict_of_messages_under_a_lock() -> None:
    c = _client()
    assert isinstance(c._out_messages, dict), _why("_out_messages is not a dict")
    assert isinstance(c._out_message_mutex, type(threading.RLock())), \
        _why("_out_message_mutex is not a lock")
    msg = paho.MQTTMessage(mid=7, topic=b"t/big")
    msg.payload = b"x" * 100
    msg.qos = 1
    msg.properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    small = paho.MQTTMessage(mid=8, topic=b"t/small")
    small.payload, small.qos, small.properties = b"x", 1, None
    c._out_messages[7] = msg
    c._out_messages[8] = small
    assert held_count(c) == 2
    limit = publish_packet_size("t/big", 100, qos=1, properties=msg.properties) - 1
    assert drop_held_larger_than(c, limit) == [(7, limit + 1)]
    assert list(c._out_messages) == [8]


def test_connection_states_we_compare_with_exist() -> None:
    for name in ("MQTT_CS_DISCONNECTING", "MQTT_CS_DISCONNECTED"):
        assert hasattr(_ConnectionState, name), _why(f"_ConnectionState.{name} is gone")


def test_puback_0x95_parses_after_the_patch() -> None:
    entry = ReasonCode.names.get(RC_PACKET_TOO_LARGE)
    assert entry is not None, _why("ReasonCode.names has no 0x95")
    assert "Packet too large" in entry, _why("0x95 is no longer named 'Packet too large'")
    accept_out_of_spec_puback_codes()  # idempotent; already applied at import
    assert PacketTypes.PUBACK in ReasonCode.names[RC_PACKET_TOO_LARGE]["Packet too large"]
    rc = ReasonCode(PacketTypes.PUBACK, identifier=RC_PACKET_TOO_LARGE)
    assert rc.is_failure


def test_our_subclass_still_constructs_as_paho_expects() -> None:
    c = PahoClient(CallbackAPIVersion.VERSION2, client_id="compat", protocol=paho.MQTTv5,
                   reconnect_on_failure=True)
    assert c.skip_wait is False
    assert c.broker_index == 0
