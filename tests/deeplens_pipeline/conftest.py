"""Fixtures shared by the pipeline's deploy and operator tests: a DeepLens registered on the emulator."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import boto3
import pytest

REGION = "eu-west-1"  # apart from the other tests' default region


@dataclass
class Registered:
    """A DeepLens as the console registered it."""

    thing_name: str
    thing_arn: str
    group_id: str
    core_definition_version_arn: str
    device_definition_version_arn: str | None = None


@pytest.fixture
def aws(moto_endpoint: str) -> dict[str, Any]:
    session = boto3.session.Session(region_name=REGION)
    return {
        name: session.client(name, endpoint_url=moto_endpoint)
        for name in ("greengrass", "iot", "lambda", "iam", "s3")
    }


@pytest.fixture
def register_deeplens(aws: dict[str, Any]) -> Callable[..., Registered]:
    """Register a DeepLens: thing ``deeplens_<id>`` as the core of a new Greengrass V1 group."""

    def register(*, with_devices: bool = False, thing_name: str | None = None) -> Registered:
        name = thing_name or f"deeplens_{uuid.uuid4().hex[:22]}"
        thing = aws["iot"].create_thing(thingName=name)
        certificate = aws["iot"].create_keys_and_certificate(setAsActive=True)
        core = aws["greengrass"].create_core_definition(
            Name=f"{name}-core",
            InitialVersion={
                "Cores": [
                    {
                        "Id": f"{name}-core",
                        "ThingArn": thing["thingArn"],
                        "CertificateArn": certificate["certificateArn"],
                        "SyncShadow": True,
                    }
                ]
            },
        )
        initial = {"CoreDefinitionVersionArn": core["LatestVersionArn"]}
        devices_arn = None
        if with_devices:
            devices = aws["greengrass"].create_device_definition(
                Name=f"{name}-devices",
                InitialVersion={
                    "Devices": [
                        {
                            "Id": "sensor",
                            "ThingArn": thing["thingArn"],
                            "CertificateArn": certificate["certificateArn"],
                            "SyncShadow": False,
                        }
                    ]
                },
            )
            devices_arn = devices["LatestVersionArn"]
            initial["DeviceDefinitionVersionArn"] = devices_arn
        group = aws["greengrass"].create_group(Name=f"{name}-group", InitialVersion=initial)
        return Registered(name, thing["thingArn"], group["Id"], core["LatestVersionArn"], devices_arn)

    return register
