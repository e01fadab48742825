"""The emulator's MQTT broker: Debian's mosquitto on 127.0.0.1 and a free port."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from emulator.mqtt_broker import DEFAULT_BINARY, BrokerUnavailable, MqttBroker, broker_config

needs_mosquitto = pytest.mark.skipif(
    not Path(DEFAULT_BINARY).is_file(), reason=f"{DEFAULT_BINARY} is missing: sudo apt-get install mosquitto"
)


def _refused(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=0.5).close()
    except OSError:
        return True
    return False


@needs_mosquitto
def test_messages_on_the_infer_topic_go_through_and_stop_closes_the_port() -> None:
    received: list[tuple[str, bytes]] = []
    arrived = threading.Event()
    with MqttBroker() as broker:
        assert broker.host == "127.0.0.1"
        assert broker.running()
        subscriber = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        subscriber.on_message = lambda client, userdata, message: (
            received.append((message.topic, message.payload)),
            arrived.set(),
        )
        subscribed = threading.Event()
        subscriber.on_subscribe = lambda *args: subscribed.set()
        subscriber.connect(broker.host, broker.port)
        subscriber.loop_start()
        subscriber.subscribe("$aws/things/deeplens_x/infer")
        assert subscribed.wait(5)
        publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        publisher.connect(broker.host, broker.port)
        publisher.loop_start()
        publisher.publish("$aws/things/deeplens_x/infer", b'{"blue_box": 0.9}', qos=1).wait_for_publish(5)
        assert arrived.wait(5)
        for client in (publisher, subscriber):
            client.disconnect()
            client.loop_stop()
        port = broker.port
    assert received == [("$aws/things/deeplens_x/infer", b'{"blue_box": 0.9}')]
    assert _refused("127.0.0.1", port)
    assert not broker.running()


@needs_mosquitto
def test_two_brokers_get_different_ports() -> None:
    with MqttBroker() as first, MqttBroker() as second:
        assert first.port != second.port


def test_a_missing_binary_says_how_to_install_it(tmp_path: Path) -> None:
    with pytest.raises(BrokerUnavailable, match=r"apt-get install mosquitto"):
        MqttBroker(binary=str(tmp_path / "mosquitto"))


def test_the_config_listens_on_loopback_only_without_persistence() -> None:
    lines = broker_config(18830).splitlines()
    assert "listener 18830 127.0.0.1" in lines
    assert "persistence false" in lines
