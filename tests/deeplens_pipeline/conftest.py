"""Fixtures shared by the pipeline's deploy and operator tests: a DeepLens registered on the emulator.

The DeepLens is registered both ways: the core of a Greengrass V1 group (what the console did) and
a Greengrass V2 core device (what installing the Greengrass V2 nucleus with ``--provision`` does),
with the project's token exchange role (``iam/device-token-exchange-role*.json``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import boto3
import pytest

from emulator.seed import register_greengrass_v2_core

REGION = "eu-west-1"  # apart from the other tests' default region


@dataclass
class Registered:
    """A DeepLens as the console registered it."""

    thing_name: str
    thing_arn: str
    group_id: str
    core_definition_version_arn: str
    device_definition_version_arn: str | None = None
    role_alias: str | None = None


@pytest.fixture
def aws(moto_endpoint: str) -> dict[str, Any]:
    session = boto3.session.Session(region_name=REGION)
    return {
        name: session.client(name, endpoint_url=moto_endpoint)
        for name in ("greengrass", "greengrassv2", "iot", "lambda", "iam", "s3")
    }


@pytest.fixture
def register_deeplens(aws: dict[str, Any], moto_endpoint: str) -> Callable[..., Registered]:
    """Register a DeepLens: thing ``deeplens_<id>``, core of a new Greengrass V1 group and (unless
    ``greengrass_v2=False``) a Greengrass V2 core device."""

    def register(
        *, with_devices: bool = False, thing_name: str | None = None, greengrass_v2: bool = True
    ) -> Registered:
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
        alias = register_greengrass_v2_core(moto_endpoint, REGION, name)[1] if greengrass_v2 else None
        return Registered(name, thing["thingArn"], group["Id"], core["LatestVersionArn"], devices_arn, alias)

    return register
