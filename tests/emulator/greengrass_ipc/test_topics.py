"""MQTT filter matching and the nucleus's authorization resource matching."""

from __future__ import annotations

import pytest

from emulator.greengrass_ipc.access_control import (
    MQTT_PROXY,
    PUBLISH_TO_IOT_CORE,
    AuthorizationError,
    PolicyError,
    authorize,
    parse_access_control,
)
from emulator.greengrass_ipc.topics import mqtt_filter_matches, resource_matches


@pytest.mark.parametrize(
    ("topic_filter", "topic", "expected"),
    [
        ("$aws/things/d/infer", "$aws/things/d/infer", True),
        ("$aws/things/+/infer", "$aws/things/d/infer", True),
        ("$aws/things/+/infer", "$aws/things/d/e/infer", False),
        ("$aws/things/#", "$aws/things/d/infer", True),
        ("$aws/things/#", "$aws/things", True),  # '#' includes the parent level (MQTT 3.1.1 4.7.1.2)
        ("a/#", "b/c", False),
        ("a/+", "a", False),
        ("a/b", "a/b/c", False),
    ],
)
def test_mqtt_filters(topic_filter: str, topic: str, expected: bool) -> None:
    assert mqtt_filter_matches(topic_filter, topic) is expected


@pytest.mark.parametrize(
    ("resource", "topic", "expected"),
    [
        ("*", "anything/at/all", True),
        ("$aws/things/d/infer", "$aws/things/d/infer", True),
        ("$aws/things/d/infer", "$aws/things/e/infer", False),
        ("$aws/things/*/infer", "$aws/things/d/infer", True),
        ("$aws/things/*", "$aws/things/d/infer", True),  # '*' crosses levels
        ("my/iot/*/telemetry", "my/iot/a/b/telemetry", True),
        ("my/iot/*/telemetry", "my/iot/a/status", False),
        ("$aws/things/+/infer", "$aws/things/d/infer", True),
        ("$aws/things/+/infer", "$aws/things/d/x/infer", False),
        ("$aws/things/#", "$aws/things/d/infer", True),
        ("dev*/+/x", "device/a/x", True),
        ("dev*/+/x", "other/a/x", False),
    ],
)
def test_authorization_resources(resource: str, topic: str, expected: bool) -> None:
    assert resource_matches(resource, topic) is expected


def test_authorize_names_principal_service_operation_and_resource() -> None:
    policies = parse_access_control(
        {MQTT_PROXY: {"c:publish:1": {"operations": [PUBLISH_TO_IOT_CORE], "resources": ["a/b"]}}}
    )
    assert authorize("c", policies, MQTT_PROXY, PUBLISH_TO_IOT_CORE, "a/b").policy_id == "c:publish:1"
    with pytest.raises(AuthorizationError) as refused:
        authorize("c", policies, MQTT_PROXY, PUBLISH_TO_IOT_CORE, "a/c")
    assert str(refused.value) == (
        "Principal c is not authorized to perform "
        "aws.greengrass.ipc.mqttproxy:aws.greengrass#PublishToIoTCore on resource a/c"
    )


def test_a_policy_for_another_operation_or_service_does_not_allow_publishing() -> None:
    policies = parse_access_control(
        {
            MQTT_PROXY: {"sub": {"operations": ["aws.greengrass#SubscribeToIoTCore"], "resources": ["*"]}},
            "aws.greengrass.ipc.pubsub": {"local": {"operations": ["*"], "resources": ["*"]}},
        }
    )
    with pytest.raises(AuthorizationError):
        authorize("c", policies, MQTT_PROXY, PUBLISH_TO_IOT_CORE, "a/b")


def test_malformed_access_control_is_refused() -> None:
    with pytest.raises(PolicyError):
        parse_access_control({MQTT_PROXY: {"p": {"operations": [1], "resources": ["a"]}}})
