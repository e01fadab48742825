"""Which IoT client the function gets: Greengrass V1 SDK, else Greengrass V2 IPC, else a clear error."""

from __future__ import annotations

import sys
import types
from typing import Any

import pytest


@pytest.fixture
def iot_module(monkeypatch: pytest.MonkeyPatch):
    sys.modules.pop("deeplens_iot", None)
    import deeplens_iot

    yield deeplens_iot
    sys.modules.pop("deeplens_iot", None)


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


def test_greengrass_v1_sdk_first(iot_module, monkeypatch: pytest.MonkeyPatch) -> None:
    sdk = types.ModuleType("greengrasssdk")
    sdk.client = lambda name: ("v1-client", name)
    monkeypatch.setitem(sys.modules, "greengrasssdk", sdk)
    install_ipc(monkeypatch, IpcClientDouble())
    assert iot_module.iot_client() == ("v1-client", "iot-data")


def test_greengrass_v2_ipc_when_the_v1_sdk_is_absent(iot_module, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "greengrasssdk", None)  # import raises ImportError
    ipc = IpcClientDouble()
    install_ipc(monkeypatch, ipc)
    client = iot_module.iot_client()
    client.publish(topic="$aws/things/x/infer", payload='{"bar": 0.9}')
    client.publish(topic="$aws/things/x/infer", payload=b"{}")
    assert ipc.calls == [
        {"topic_name": "$aws/things/x/infer", "qos": "0", "payload": b'{"bar": 0.9}'},
        {"topic_name": "$aws/things/x/infer", "qos": "0", "payload": b"{}"},
    ]


def test_neither_sdk_is_a_clear_error(iot_module, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "greengrasssdk", None)
    monkeypatch.setitem(sys.modules, "awsiot", None)
    with pytest.raises(ImportError, match="neither greengrasssdk .* nor awsiot.greengrasscoreipc"):
        iot_module.iot_client()
