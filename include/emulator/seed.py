"""Seed an emulated account for the demo: bucket, role, private work team and a "DeepLens".

The DeepLens is what the console used to register: an IoT thing ``deeplens_<uuid>`` with a
certificate, and a Greengrass V1 group whose core is that thing.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass
from typing import Any

import boto3

TRUST_SAGEMAKER = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "sagemaker.amazonaws.com"}, "Action": "sts:AssumeRole"}
    ],
}


@dataclass(frozen=True)
class DemoAccount:
    """What the seeded account offers the DAG's Params."""

    bucket: str
    region: str
    role_arn: str
    workteam_arn: str
    thing_name: str
    group_id: str

    def as_params(self) -> dict[str, Any]:
        """The DAG Params these resources fill in."""
        data = asdict(self)
        data.pop("group_id")
        return data


def _client(service: str, endpoint_url: str, region: str) -> Any:
    return boto3.client(service, endpoint_url=endpoint_url, region_name=region)


def seed_demo_account(
    endpoint_url: str, region: str = "us-east-1", bucket: str = "deeplens-demo"
) -> DemoAccount:
    """Create the demo's AWS resources in the emulator (safe to call twice)."""
    s3 = _client("s3", endpoint_url, region)
    if bucket not in [b["Name"] for b in s3.list_buckets().get("Buckets", [])]:
        s3.create_bucket(Bucket=bucket)
    iam = _client("iam", endpoint_url, region)
    try:
        role_arn = iam.get_role(RoleName="deeplens-sagemaker")["Role"]["Arn"]
    except iam.exceptions.NoSuchEntityException:
        role_arn = iam.create_role(
            RoleName="deeplens-sagemaker", AssumeRolePolicyDocument=json.dumps(TRUST_SAGEMAKER)
        )["Role"]["Arn"]
    sagemaker = _client("sagemaker", endpoint_url, region)
    teams = sagemaker.list_workteams()["Workteams"]
    workteam_arn = next((t["WorkteamArn"] for t in teams if t["WorkteamName"] == "deeplens-team"), None)
    if workteam_arn is None:
        workteam_arn = sagemaker.create_workteam(
            WorkteamName="deeplens-team",
            MemberDefinitions=[
                {
                    "CognitoMemberDefinition": {
                        "UserPool": f"{region}_deeplens",
                        "UserGroup": "labellers",
                        "ClientId": "deeplensdemo",
                    }
                }
            ],
            Description="The demo's private labelling team (a simulated workforce)",
        )["WorkteamArn"]
    thing_name = f"deeplens_{uuid.uuid5(uuid.NAMESPACE_DNS, bucket).hex}"
    group_id = _register_device(endpoint_url, region, thing_name)
    return DemoAccount(bucket, region, role_arn, workteam_arn, thing_name, group_id)


def _register_device(endpoint_url: str, region: str, thing_name: str) -> str:
    greengrass = _client("greengrass", endpoint_url, region)
    group_name = f"{thing_name}_Group"
    for group in greengrass.list_groups().get("Groups", []):
        if group["Name"] == group_name:
            return group["Id"]
    iot = _client("iot", endpoint_url, region)
    thing_arn = iot.create_thing(thingName=thing_name)["thingArn"]
    cert = iot.create_keys_and_certificate(setAsActive=True)
    iot.attach_thing_principal(thingName=thing_name, principal=cert["certificateArn"])
    core = greengrass.create_core_definition(
        Name=f"{thing_name}_Core",
        InitialVersion={
            "Cores": [
                {
                    "CertificateArn": cert["certificateArn"],
                    "Id": thing_name,
                    "SyncShadow": True,
                    "ThingArn": thing_arn,
                }
            ]
        },
    )
    group = greengrass.create_group(
        Name=group_name, InitialVersion={"CoreDefinitionVersionArn": core["LatestVersionArn"]}
    )
    return group["Id"]
