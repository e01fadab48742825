"""A real mosquitto broker and a subscriber recording what reaches it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from emulator.mqtt_broker import DEFAULT_BINARY, MqttBroker

INFER_TOPIC = "$aws/things/deeplens_sim/infer"


@pytest.fixture(scope="module")
def broker() -> Iterator[MqttBroker]:
    if not Path(DEFAULT_BINARY).is_file():
        pytest.skip(f"{DEFAULT_BINARY} is missing: sudo apt-get install mosquitto")
    with MqttBroker() as running:
        yield running


class Subscriber:
    """Records (topic, payload) of every message on the filters it subscribed to."""

    def __init__(self, broker: MqttBroker, *filters: str) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self._arrived = threading.Condition()
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self._client.on_message = self._on_message
        self._client.connect(broker.host, broker.port)
        self._client.loop_start()
        for topic_filter in filters:
            info = self._client.subscribe(topic_filter)
            assert info[0] == mqtt.MQTT_ERR_SUCCESS
        time.sleep(0.3)  # let the SUBACKs arrive

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        with self._arrived:
            self.messages.append((message.topic, message.payload))
            self._arrived.notify_all()

    def wait_for(self, count: int, timeout: float = 5.0) -> list[tuple[str, bytes]]:
        with self._arrived:
            self._arrived.wait_for(lambda: len(self.messages) >= count, timeout)
            return list(self.messages)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


@pytest.fixture
def subscriber(broker: MqttBroker) -> Iterator[Subscriber]:
    listener = Subscriber(broker, "#", "$aws/#")
    yield listener
    listener.close()
