"""The cores' uplink: publishes what a device's function sends to the emulator's MQTT broker.

A Greengrass core keeps one MQTT connection to AWS IoT Core and relays its functions' messages
over it; here that connection goes to the emulator's broker (``emulator.mqtt_broker``).
"""

from __future__ import annotations

import logging
import threading
import uuid

import paho.mqtt.client as mqtt

logger = logging.getLogger(__name__)


class PublishFailed(RuntimeError):
    """The broker did not take the message (not connected, or no acknowledgement in time)."""


class BrokerForwarder:
    """One MQTT connection to ``host:port``, shared by the threads that publish through it."""

    def __init__(self, host: str, port: int, client_id: str | None = None, timeout: float = 5.0) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self._client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or f"greengrass-core-{uuid.uuid4().hex[:8]}"
        )
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect

    def _on_connect(
        self, client: mqtt.Client, userdata: object, flags: object, reason: object, props: object
    ) -> None:
        if not getattr(reason, "is_failure", False):
            self._connected.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: object, *args: object) -> None:
        self._connected.clear()

    def start(self) -> BrokerForwarder:
        """Connect (reconnecting by itself later) and wait for the broker's CONNACK."""
        self._client.connect(self.host, self.port, keepalive=30)
        self._client.loop_start()
        if not self._connected.wait(self.timeout):
            self.stop()
            raise PublishFailed(f"the MQTT broker at {self.host}:{self.port} did not accept the connection")
        return self

    def publish(self, topic: str, payload: bytes, qos: int = 0) -> None:
        """Publish and wait until the client has sent it (QoS 0) or the broker acknowledged it (QoS 1)."""
        if not self._connected.wait(self.timeout):
            raise PublishFailed(f"not connected to the MQTT broker at {self.host}:{self.port}")
        with self._lock:
            info = self._client.publish(topic, payload, qos=qos)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise PublishFailed(f"publish to {topic} failed: {mqtt.error_string(info.rc)}")
        info.wait_for_publish(self.timeout)
        if not info.is_published():
            raise PublishFailed(f"publish to {topic} was not completed within {self.timeout:g}s")

    def stop(self) -> None:
        """Disconnect."""
        self._client.disconnect()
        self._client.loop_stop()
