"""Which IoT client the function gets: chosen by the Greengrass process it runs in, not by imports.

``greengrasssdk`` is always in the function's zip, so it is importable in a Greengrass V2
component too; there it cannot publish (it needs the Greengrass Lambda runtime), so the choice is
made from the variables the core sets: ``MY_FUNCTION_ARN`` for a Greengrass Lambda function,
``SVCUID`` and ``AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT`` for a V2 component.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable
from typing import Any

import pytest

LAMBDA_ENV = {
    "MY_FUNCTION_ARN": "arn:aws:lambda:us-east-1:123456789012:function:deeplens-inference:3",
    "ROUTER_FUNCTION_ARN": "arn:aws:lambda:::function:GGRouter",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN": "token",
}
COMPONENT_ENV = {
    "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT": "/greengrass/v2/ipc.socket",
    "SVCUID": "svcuid-token",
    # a V2 nucleus sets these too: neither makes a process a Lambda function
    "AWS_CONTAINER_AUTHORIZATION_TOKEN": "token",
    "GG_ROOT_CA_PATH": "/greengrass/v2/rootCA.pem",
    "GGC_VERSION": "2.14.0",
    "AWS_IOT_THING_NAME": "deeplens_abc123",
}
ALL_NAMES = {*LAMBDA_ENV, *COMPONENT_ENV}


@pytest.fixture
def iot_module(monkeypatch: pytest.MonkeyPatch):
    sys.modules.pop("deeplens_iot", None)
    import deeplens_iot

    yield deeplens_iot
    sys.modules.pop("deeplens_iot", None)


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Set exactly the given Greengrass variables (the test machine's own are removed)."""

    def set_only(*variables: dict[str, str]) -> None:
        for name in ALL_NAMES:
            monkeypatch.delenv(name, raising=False)
        for group in variables:
            for name, value in group.items():
                monkeypatch.setenv(name, value)

    return set_only


class IpcClientDouble:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def publish_to_iot_core(self, **kwargs: Any) -> None:
        self.calls.append(kwargs)


def install_ipc(monkeypatch: pytest.MonkeyPatch, client: IpcClientDouble) -> None:
    clientv2 = types.ModuleType("awsiot.greengrasscoreipc.clientv2")
    clientv2.GreengrassCoreIPCClientV2 = lambda: client
    for name, module in {
        "awsiot": types.ModuleType("awsiot"),
        "awsiot.greengrasscoreipc": types.ModuleType("awsiot.greengrasscoreipc"),
        "awsiot.greengrasscoreipc.clientv2": clientv2,
    }.items():
        monkeypatch.setitem(sys.modules, name, module)


def install_v1_sdk(monkeypatch: pytest.MonkeyPatch) -> None:
    sdk = types.ModuleType("greengrasssdk")
    sdk.client = lambda name: ("v1-client", name)
    monkeypatch.setitem(sys.modules, "greengrasssdk", sdk)


def test_a_greengrass_lambda_function_uses_the_v1_sdk(iot_module, monkeypatch, environment) -> None:
    environment(LAMBDA_ENV)
    install_v1_sdk(monkeypatch)
    install_ipc(monkeypatch, IpcClientDouble())
    assert iot_module.greengrass_runtime() == iot_module.GREENGRASS_LAMBDA
    assert iot_module.iot_client() == ("v1-client", "iot-data")


def test_a_v2_component_uses_ipc_although_the_zip_holds_greengrasssdk(
    iot_module, monkeypatch, environment
) -> None:
    environment(COMPONENT_ENV)
    install_v1_sdk(monkeypatch)  # importable, as it is at the zip's root
    ipc = IpcClientDouble()
    install_ipc(monkeypatch, ipc)
    assert iot_module.greengrass_runtime() == iot_module.GREENGRASS_V2_COMPONENT
    client = iot_module.iot_client()
    assert isinstance(client, iot_module.IpcPublisher)
    client.publish(topic="$aws/things/x/infer", payload='{"bar": 0.9}')
    client.publish(topic="$aws/things/x/infer", payload=b"{}")
    assert ipc.calls == [
        {"topic_name": "$aws/things/x/infer", "qos": "0", "payload": b'{"bar": 0.9}'},
        {"topic_name": "$aws/things/x/infer", "qos": "0", "payload": b"{}"},
    ]


def test_a_lambda_component_on_a_v2_core_uses_the_v1_sdk(iot_module, monkeypatch, environment) -> None:
    """V2's Lambda launcher sets the Lambda runtime's variables and the component's: the SDK works there."""
    environment(COMPONENT_ENV, LAMBDA_ENV)
    install_v1_sdk(monkeypatch)
    install_ipc(monkeypatch, IpcClientDouble())
    assert iot_module.iot_client() == ("v1-client", "iot-data")


def test_the_environment_can_be_passed_in(iot_module, environment) -> None:
    environment(LAMBDA_ENV)
    assert iot_module.greengrass_runtime(COMPONENT_ENV) == iot_module.GREENGRASS_V2_COMPONENT
    environment(COMPONENT_ENV)
    assert iot_module.greengrass_runtime(LAMBDA_ENV) == iot_module.GREENGRASS_LAMBDA


@pytest.mark.parametrize(
    "variables",
    [
        {},
        {"SVCUID": "token"},  # half a component
        {"AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT": "/greengrass/v2/ipc.socket"},
        {"MY_FUNCTION_ARN": ""},
        {"GG_ROOT_CA_PATH": "/greengrass/v2/rootCA.pem", "AWS_CONTAINER_AUTHORIZATION_TOKEN": "t"},
    ],
    ids=["nothing", "token-only", "socket-only", "empty-arn", "other-gg-variables"],
)
def test_outside_greengrass_is_a_clear_error(iot_module, monkeypatch, environment, variables) -> None:
    environment(variables)
    install_v1_sdk(monkeypatch)
    install_ipc(monkeypatch, IpcClientDouble())
    with pytest.raises(iot_module.NotInGreengrassError, match="not running under Greengrass") as error:
        iot_module.iot_client()
    for name in ("MY_FUNCTION_ARN", "SVCUID", "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT"):
        assert name in str(error.value)


def test_a_component_without_awsiotsdk_says_so(iot_module, monkeypatch, environment) -> None:
    environment(COMPONENT_ENV)
    install_v1_sdk(monkeypatch)
    for name in ("awsiot", "awsiot.greengrasscoreipc", "awsiot.greengrasscoreipc.clientv2"):
        monkeypatch.setitem(sys.modules, name, None)  # import raises ImportError, even if loaded before
    with pytest.raises(ImportError, match="Greengrass V2 component .* must install awsiotsdk"):
        iot_module.iot_client()


def test_a_lambda_function_without_greengrasssdk_says_so(iot_module, monkeypatch, environment) -> None:
    environment(LAMBDA_ENV)
    monkeypatch.setitem(sys.modules, "greengrasssdk", None)
    install_ipc(monkeypatch, IpcClientDouble())
    with pytest.raises(ImportError, match="zip must hold the greengrasssdk folder at its root"):
        iot_module.iot_client()


def test_the_real_v1_sdk_cannot_publish_outside_a_greengrass_lambda(
    iot_module, monkeypatch, environment
) -> None:
    """Why importability cannot decide: greengrasssdk 1.6.1 imports anywhere, but its client needs
    ``greengrass_common`` from the Greengrass Lambda runtime (where the pinned SDK is installed)."""
    sdk = pytest.importorskip("greengrasssdk", reason="greengrasssdk is installed in the Airflow env")
    assert sdk.__version__ == "1.6.1"
    with pytest.raises(ImportError, match="greengrass_common"):
        sdk.client("iot-data")
    environment(COMPONENT_ENV)
    ipc = IpcClientDouble()
    install_ipc(monkeypatch, ipc)
    iot_module.iot_client().publish(topic="t", payload="{}")
    assert ipc.calls == [{"topic_name": "t", "qos": "0", "payload": b"{}"}]
