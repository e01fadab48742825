"""The Greengrass V1 core IPC server, driven by the real greengrasssdk in a function process.

The function process is a subprocess with the environment the core gives it
(``function_environment``): the real ``greengrasssdk`` 1.6.1 posts through the runtime modules
in ``lambda_runtime/``; the inference function's own ``deeplens_iot.iot_client()`` picks it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from emulator.greengrass_ipc import GreengrassV1CoreIpc, Subscription
from emulator.mqtt_broker import MqttBroker

THING = "deeplens_sim"
INFER_TOPIC = f"$aws/things/{THING}/infer"
FUNCTION = "arn:aws:lambda:us-east-1:123456789012:function:deeplens-inference:3"
LAMBDA_DIR = Path(__file__).resolve().parents[3] / "include" / "lambda"
PUBLISH = """
import sys, deeplens_iot
client = deeplens_iot.iot_client()
for topic in sys.argv[1:]:
    client.publish(topic=topic, payload='{"blue_box": 0.91}')
print(type(client).__module__)
"""


@pytest.fixture
def core(broker: MqttBroker) -> Iterator[GreengrassV1CoreIpc]:
    # the pipeline's subscription (deploy/greengrass_v1.py): the function's version -> cloud on its topic
    subscriptions = [Subscription(source=FUNCTION, subject=INFER_TOPIC, target="cloud")]
    with GreengrassV1CoreIpc(broker.host, broker.port, subscriptions, thing_name=THING) as server:
        yield server


def _run_function(env: dict[str, str], *topics: str) -> subprocess.CompletedProcess[str]:
    process_env = {k: v for k, v in os.environ.items() if k not in ("SVCUID", "PYTHONPATH")}
    process_env.update(env)
    process_env["PYTHONPATH"] = os.pathsep.join([env["PYTHONPATH"], str(LAMBDA_DIR)])
    return subprocess.run(
        [sys.executable, "-c", PUBLISH, *topics], env=process_env, capture_output=True, text=True, timeout=60
    )


def test_a_subscribed_topic_reaches_the_broker_and_others_are_dropped(core, subscriber) -> None:
    done = _run_function(core.function_environment(FUNCTION), INFER_TOPIC, "$aws/things/deeplens_sim/other")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "greengrasssdk.IoTDataPlane"  # the real SDK, not a double
    assert subscriber.wait_for(1) == [(INFER_TOPIC, b'{"blue_box": 0.91}')]
    assert [(m.topic, m.delivered) for m in core.routed] == [
        (INFER_TOPIC, True),
        ("$aws/things/deeplens_sim/other", False),
    ]
    assert subscriber.wait_for(2, timeout=0.5) == [(INFER_TOPIC, b'{"blue_box": 0.91}')]


def test_a_subscription_from_another_function_version_does_not_route(broker, subscriber) -> None:
    other_version = FUNCTION.rsplit(":", 1)[0] + ":2"
    with GreengrassV1CoreIpc(broker.host, broker.port, [Subscription(other_version, INFER_TOPIC)]) as core:
        done = _run_function(core.function_environment(FUNCTION), INFER_TOPIC)
    assert done.returncode == 0, done.stderr
    assert subscriber.wait_for(1, timeout=0.5) == []


def test_a_wrong_token_is_refused(core, subscriber) -> None:
    env = core.function_environment(FUNCTION)
    env["AWS_CONTAINER_AUTHORIZATION_TOKEN"] = "forged"
    done = _run_function(env, INFER_TOPIC)
    assert done.returncode != 0
    assert "InvocationException: Failed to invoke function due to HTTP Error 401" in done.stderr
    assert core.routed == []


def test_a_token_used_for_another_function_is_refused(core) -> None:
    env = core.function_environment(FUNCTION)
    env["MY_FUNCTION_ARN"] = FUNCTION.replace("deeplens-inference", "someone-else")
    done = _run_function(env, INFER_TOPIC)
    assert "HTTP Error 403" in done.stderr
    assert core.routed == []
