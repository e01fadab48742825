"""Test-only double of ``greengrasssdk`` (the Greengrass V1 Lambda SDK): publishes go to a file.

``greengrasssdk.client('iot-data').publish(topic=..., payload=...)`` appends one JSON line
``{"topic", "payload", "time"}`` to ``$GREENGRASSSDK_DOUBLE_LOG``. Only the simulated device's
tests and the frame-rate bench put this folder on the function's path; the integration replaces it
with the real Greengrass IPC server and MQTT broker.
"""

import json
import os
import threading
import time

LOG_ENV = "GREENGRASSSDK_DOUBLE_LOG"


class _IotDataClient:
    def __init__(self, path):
        self._path = path
        self._lock = threading.Lock()

    def publish(self, topic, payload=b"", **kwargs):
        if isinstance(payload, bytes):
            payload = payload.decode("utf-8")
        line = json.dumps({"topic": topic, "payload": payload, "time": time.time()})
        with self._lock, open(self._path, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")


def client(client_type, *args, **kwargs):
    """``greengrasssdk.client('iot-data')``; other client types are not doubled."""
    if client_type != "iot-data":
        raise ValueError(f"the greengrasssdk double only has the 'iot-data' client, not {client_type!r}")
    path = os.environ.get(LOG_ENV)
    if not path:
        raise RuntimeError(f"{LOG_ENV} is not set: the double has nowhere to write publishes")
    return _IotDataClient(path)
