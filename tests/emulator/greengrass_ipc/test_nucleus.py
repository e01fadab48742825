"""The Greengrass V2 nucleus IPC socket, driven by the real awsiotsdk client.

The component is the one the pipeline deploys: its ``accessControl`` comes from the recipe that
``deeplens_pipeline.deploy.greengrass_v2.component_recipe`` writes, and the client is the one
the inference function builds (``include/lambda/deeplens_iot.py``).
"""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from awsiot.eventstreamrpc import AccessDeniedError
from awsiot.greengrasscoreipc import connect
from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2
from awsiot.greengrasscoreipc.model import ServiceError, UnauthorizedError

from deeplens_pipeline.deploy.base import DeploymentRequest
from deeplens_pipeline.deploy.greengrass_v2 import component_name, component_recipe
from deeplens_pipeline.deploy.inference_settings import InferenceSettings
from emulator.greengrass_ipc import NucleusIpcServer, recipe_access_control
from emulator.greengrass_ipc.nucleus import SOCKET_VARIABLE, TOKEN_VARIABLE
from emulator.mqtt_broker import MqttBroker

THING = "deeplens_sim"
INFER_TOPIC = f"$aws/things/{THING}/infer"
LAMBDA_DIR = Path(__file__).resolve().parents[3] / "include" / "lambda"


def _recipe() -> tuple[str, dict]:
    request = DeploymentRequest(
        thing_name=THING,
        model_s3_uri="s3://bucket/output/model-deploy.tar.gz",
        lambda_version_arn="arn:aws:lambda:us-east-1:123456789012:function:deeplens-inference:3",
        settings=InferenceSettings(model_name="deploy_model_algo_1", labels=("blue_box",), image_shape=512),
        run_token="0123456789",
        function_s3_uri="s3://bucket/functions/deeplens-inference-3.zip",
    )
    name = component_name(request.function_name)
    return name, component_recipe(request, name)


@pytest.fixture
def nucleus(broker: MqttBroker) -> Iterator[NucleusIpcServer]:
    with NucleusIpcServer(broker.host, broker.port, thing_name=THING) as server:
        yield server


def _client(env: dict[str, str], token: str | None = None) -> GreengrassCoreIPCClientV2:
    return GreengrassCoreIPCClientV2(
        connect(ipc_socket=env[SOCKET_VARIABLE], authtoken=token or env[TOKEN_VARIABLE])
    )


def test_the_deployed_component_publishes_on_its_topic_and_nowhere_else(nucleus, subscriber) -> None:
    name, recipe = _recipe()
    nucleus.register_component(name, recipe_access_control(recipe))
    client = _client(nucleus.component_environment(name))
    try:
        client.publish_to_iot_core(topic_name=INFER_TOPIC, qos="0", payload=b'{"blue_box": 0.91}')
        with pytest.raises(UnauthorizedError) as refused:
            client.publish_to_iot_core(topic_name="$aws/things/other_device/infer", qos="0", payload=b"{}")
    finally:
        client.close()
    assert refused.value.message == (
        f"Authorization failed with error Principal {name} is not authorized to perform "
        "aws.greengrass.ipc.mqttproxy:aws.greengrass#PublishToIoTCore "
        "on resource $aws/things/other_device/infer"
    )
    assert subscriber.wait_for(1) == [(INFER_TOPIC, b'{"blue_box": 0.91}')]
    assert [topic for _, topic, _ in nucleus.published] == [INFER_TOPIC]


def test_a_component_without_access_control_may_not_publish(nucleus, subscriber) -> None:
    nucleus.register_component("com.example.NoPolicy")
    client = _client(nucleus.component_environment("com.example.NoPolicy"))
    try:
        with pytest.raises(UnauthorizedError):
            client.publish_to_iot_core(topic_name=INFER_TOPIC, qos="1", payload=b"{}")
    finally:
        client.close()
    assert subscriber.wait_for(1, timeout=0.5) == []


def test_a_wrong_svcuid_is_refused_at_connect(nucleus) -> None:
    name, recipe = _recipe()
    nucleus.register_component(name, recipe_access_control(recipe))
    env = nucleus.component_environment(name)
    with pytest.raises(AccessDeniedError):
        connect(ipc_socket=env[SOCKET_VARIABLE], authtoken="not-the-" + env[TOKEN_VARIABLE], timeout=5)


def test_an_operation_the_emulator_lacks_is_a_service_error(nucleus) -> None:
    nucleus.register_component(
        "c", {"aws.greengrass.ipc.mqttproxy": {"p": {"operations": ["*"], "resources": ["*"]}}}
    )
    client = _client(nucleus.component_environment("c"))
    try:
        with pytest.raises(ServiceError) as refused:
            client.subscribe_to_iot_core(topic_name="a/b", qos="0", on_stream_event=lambda event: None)
    finally:
        client.close()
    assert "SubscribeToIoTCore is not implemented by the emulated nucleus" in refused.value.message


def test_the_functions_own_client_publishes_through_the_nucleus(nucleus, subscriber, monkeypatch) -> None:
    """``deeplens_iot.iot_client()`` in a component's environment reaches the broker."""
    name, recipe = _recipe()
    nucleus.register_component(name, recipe_access_control(recipe))
    for variable in ("MY_FUNCTION_ARN",):
        monkeypatch.delenv(variable, raising=False)
    for variable, value in nucleus.component_environment(name).items():
        monkeypatch.setenv(variable, value)
    monkeypatch.syspath_prepend(str(LAMBDA_DIR))
    monkeypatch.delitem(sys.modules, "deeplens_iot", raising=False)
    deeplens_iot = importlib.import_module("deeplens_iot")
    publisher = deeplens_iot.iot_client()
    publisher.publish(topic=INFER_TOPIC, payload=json.dumps({"status": "model loaded"}))
    publisher._client.close()
    assert subscriber.wait_for(1) == [(INFER_TOPIC, b'{"status": "model loaded"}')]
