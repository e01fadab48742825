"""The function's link to AWS IoT: publish a text message on a topic.

The same zip runs in two kinds of Greengrass process, and the client follows the one it is in,
told by the variables the core puts in its environment (never by what happens to be importable:
``greengrasssdk`` is always in the zip):

- a **Greengrass Lambda function**: on a DeepLens (its Greengrass V1 core, whether the function
  was deployed by Greengrass V1 or copied over SSH), or a Lambda component on a Greengrass V2
  core. The Lambda runtime gives the function its own ARN in ``MY_FUNCTION_ARN`` (read by
  ``greengrass_common``, which ``greengrasssdk`` publishes through). Messages go through
  ``greengrasssdk.client('iot-data')``, as in every DeepLens function.
- a **Greengrass V2 generic component** (the ``greengrass-v2`` deployment method): the nucleus
  gives its processes the IPC socket in ``AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT``
  and the IPC token in ``SVCUID``, and no ``MY_FUNCTION_ARN``; ``greengrasssdk`` cannot publish
  there. Messages go through the nucleus IPC (``awsiot.greengrasscoreipc``, from the
  ``awsiotsdk`` package the component installs).

A Lambda component on a V2 core has both sets of variables: the Lambda runtime's come first,
because the V1 SDK works there.
"""

from __future__ import annotations

import os

QOS_AT_MOST_ONCE = "0"
GREENGRASS_LAMBDA = "greengrass-lambda"
GREENGRASS_V2_COMPONENT = "greengrass-v2-component"
LAMBDA_VARIABLES = ("MY_FUNCTION_ARN",)
"""Set by the Greengrass Lambda runtime (V1 core, or V2's Lambda launcher) for every function."""
COMPONENT_VARIABLES = ("AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT", "SVCUID")
"""Set by the Greengrass V2 nucleus for every component process: the IPC socket and token."""


class NotInGreengrassError(RuntimeError):
    """The process is neither a Greengrass Lambda function nor a Greengrass V2 component."""


class IpcPublisher:
    """Publishes through Greengrass V2 IPC with the call shape of ``greengrasssdk``'s client."""

    def __init__(self, ipc_client):
        self._client = ipc_client

    def publish(self, topic, payload):
        """Publish ``payload`` (text or bytes) on ``topic``, at most once."""
        data = payload.encode("utf-8") if isinstance(payload, str) else payload
        self._client.publish_to_iot_core(topic_name=topic, qos=QOS_AT_MOST_ONCE, payload=data)


def greengrass_runtime(environ=None):
    """``GREENGRASS_LAMBDA`` or ``GREENGRASS_V2_COMPONENT``: the kind of process this is.

    Raises ``NotInGreengrassError`` naming the variables looked for when neither kind's are set.
    """
    environ = os.environ if environ is None else environ
    if all(environ.get(name) for name in LAMBDA_VARIABLES):
        return GREENGRASS_LAMBDA
    if all(environ.get(name) for name in COMPONENT_VARIABLES):
        return GREENGRASS_V2_COMPONENT
    raise NotInGreengrassError(
        "not running under Greengrass: a Greengrass Lambda function has {} set and a Greengrass V2 "
        "component has {}; this process has none of them".format(
            " and ".join(LAMBDA_VARIABLES), " and ".join(COMPONENT_VARIABLES)
        )
    )


def iot_client(environ=None):
    """A client with ``publish(topic=..., payload=...)`` for the kind of process this is.

    A Greengrass Lambda function gets ``greengrasssdk.client('iot-data')``; a Greengrass V2
    component gets an ``IpcPublisher`` over ``GreengrassCoreIPCClientV2``.
    """
    if greengrass_runtime(environ) == GREENGRASS_LAMBDA:
        try:
            import greengrasssdk
        except ImportError as missing:
            raise ImportError(
                "this is a Greengrass Lambda function but greengrasssdk is not importable: "
                f"the function's zip must hold the greengrasssdk folder at its root ({missing})"
            ) from missing
        return greengrasssdk.client("iot-data")
    try:
        from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2
    except ImportError as missing:
        raise ImportError(
            "this is a Greengrass V2 component but awsiot.greengrasscoreipc is not importable: "
            f"the component must install awsiotsdk ({missing})"
        ) from missing
    return IpcPublisher(GreengrassCoreIPCClientV2())
