"""The Greengrass cores' local IPC endpoints a device's inference function publishes through.

- ``core_v1.GreengrassV1CoreIpc``: the Greengrass V1 core's HTTP IPC server that
  ``greengrasssdk`` (a Lambda function on a DeepLens) posts messages to, routed by the group's
  subscriptions; ``function_environment(function_arn)`` gives a function process its variables.
- ``nucleus.NucleusIpcServer``: the Greengrass V2 nucleus's event-stream RPC socket that
  ``awsiot.greengrasscoreipc`` (a component) publishes through, authorised by the component's
  ``accessControl``; ``component_environment(name)`` gives a component process its variables.

Both forward what they accept to an MQTT broker (``emulator.mqtt_broker.MqttBroker``).
"""

from emulator.greengrass_ipc.access_control import recipe_access_control
from emulator.greengrass_ipc.core_v1 import LAMBDA_RUNTIME_PATH, GreengrassV1CoreIpc, Subscription
from emulator.greengrass_ipc.nucleus import NucleusIpcServer

__all__ = [
    "LAMBDA_RUNTIME_PATH",
    "GreengrassV1CoreIpc",
    "NucleusIpcServer",
    "Subscription",
    "recipe_access_control",
]
