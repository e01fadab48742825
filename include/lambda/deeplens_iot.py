"""The function's link to AWS IoT: publish a text message on a topic.

On a DeepLens (Greengrass V1 Lambda runtime) this is ``greengrasssdk.client('iot-data')``, as in
every DeepLens function. When the same code runs as a Greengrass V2 component (the
``greengrass-v2`` deployment method), ``greengrasssdk`` does not exist there and messages go
through the V2 nucleus IPC instead (``awsiot.greengrasscoreipc``, from the ``awsiotsdk`` package
the component installs).
"""

from __future__ import annotations

QOS_AT_MOST_ONCE = "0"


class IpcPublisher:
    """Publishes through Greengrass V2 IPC with the call shape of ``greengrasssdk``'s client."""

    def __init__(self, ipc_client):
        self._client = ipc_client

    def publish(self, topic, payload):
        """Publish ``payload`` (text or bytes) on ``topic``, at most once."""
        data = payload.encode("utf-8") if isinstance(payload, str) else payload
        self._client.publish_to_iot_core(topic_name=topic, qos=QOS_AT_MOST_ONCE, payload=data)


def iot_client():
    """A client with ``publish(topic=..., payload=...)``: Greengrass V1 SDK, else Greengrass V2 IPC."""
    try:
        import greengrasssdk
    except ImportError as v1_missing:
        try:
            from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2
        except ImportError as v2_missing:
            raise ImportError(
                "neither greengrasssdk (Greengrass V1 Lambda runtime) nor awsiot.greengrasscoreipc "
                "(Greengrass V2 component with awsiotsdk) is importable: "
                f"{v1_missing}; {v2_missing}"
            ) from v2_missing
        return IpcPublisher(GreengrassCoreIPCClientV2())
    return greengrasssdk.client("iot-data")
