"""Seed an emulated account for the demo: bucket, roles, private work team and a "DeepLens".

The roles are made from the trust policies a real account uses (``iam/*-trust.json``): the
SageMaker execution role trusts sagemaker.amazonaws.com, the inference Lambda's role trusts
lambda.amazonaws.com. The DeepLens is what the console used to register: an IoT thing
``deeplens_<uuid>`` with a certificate, and a Greengrass V1 group whose core is that thing.
"""

from __future__ import annotations

import json
import urllib.request
import uuid
from dataclasses import asdict, dataclass
from typing import Any

import boto3

from emulator.settings import REPO_ROOT

IAM_DIR = REPO_ROOT / "iam"


@dataclass(frozen=True)
class DemoAccount:
    """What the seeded account offers the DAG's Params."""

    bucket: str
    region: str
    role_arn: str
    lambda_role_arn: str
    workteam_arn: str
    thing_name: str
    group_id: str
    token_exchange_role_arn: str = ""
    role_alias: str = ""

    def as_params(self) -> dict[str, Any]:
        """The DAG Params these resources fill in."""
        data = asdict(self)
        for key in ("group_id", "token_exchange_role_arn", "role_alias"):  # not Params
            data.pop(key)
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
    role_arn = ensure_role(iam, "deeplens-sagemaker", "sagemaker-execution-role")
    lambda_role_arn = ensure_role(iam, "deeplens-lambda", "lambda-execution-role")
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
    token_exchange_role_arn, role_alias = register_greengrass_v2_core(endpoint_url, region, thing_name)
    return DemoAccount(
        bucket,
        region,
        role_arn,
        lambda_role_arn,
        workteam_arn,
        thing_name,
        group_id,
        token_exchange_role_arn=token_exchange_role_arn,
        role_alias=role_alias,
    )


def ensure_role(iam: Any, name: str, policy_stem: str) -> str:
    """The role ``name`` with the trust policy ``iam/<policy_stem>-trust.json`` (and, when the project
    ships one, the permissions ``iam/<policy_stem>.json`` as an inline policy); returns its ARN."""
    try:
        arn = iam.get_role(RoleName=name)["Role"]["Arn"]
    except iam.exceptions.NoSuchEntityException:
        trust = (IAM_DIR / f"{policy_stem}-trust.json").read_text()
        arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust)["Role"]["Arn"]
    permissions = IAM_DIR / f"{policy_stem}.json"
    if permissions.exists():
        iam.put_role_policy(RoleName=name, PolicyName=policy_stem, PolicyDocument=permissions.read_text())
    return arn


def _register_device(endpoint_url: str, region: str, thing_name: str) -> str:
    """The DeepLens as the console registered it: its IoT thing and certificate, and the Greengrass V1
    group whose core it is while V1 answers; the group id, or "" once Greengrass V1 has ended."""
    iot = _client("iot", endpoint_url, region)
    try:
        thing_arn = iot.describe_thing(thingName=thing_name)["thingArn"]
        certificate_arn = iot.list_thing_principals(thingName=thing_name)["principals"][0]
    except iot.exceptions.ResourceNotFoundException:
        thing_arn = iot.create_thing(thingName=thing_name)["thingArn"]
        certificate_arn = iot.create_keys_and_certificate(setAsActive=True)["certificateArn"]
        iot.attach_thing_principal(thingName=thing_name, principal=certificate_arn)
    greengrass = _client("greengrass", endpoint_url, region)
    group_name = f"{thing_name}_Group"
    try:
        groups = greengrass.list_groups().get("Groups", [])
    except greengrass.exceptions.BadRequestException:  # Greengrass V1 ended on 7 October 2026
        return ""
    for group in groups:
        if group["Name"] == group_name:
            return group["Id"]
    core = greengrass.create_core_definition(
        Name=f"{thing_name}_Core",
        InitialVersion={
            "Cores": [
                {
                    "CertificateArn": certificate_arn,
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


DEVICE_ROLE = "deeplens-device-token-exchange"
DEFAULT_ROLE_ALIAS = "GreengrassV2TokenExchangeRoleAlias"
"""The Greengrass V2 nucleus's default ``iotRoleAlias``."""


def register_greengrass_v2_core(
    endpoint_url: str,
    region: str,
    thing_name: str,
    *,
    role_name: str = DEVICE_ROLE,
    policy_stem: str = "device-token-exchange-role",
    role_alias: str = DEFAULT_ROLE_ALIAS,
) -> tuple[str, str]:
    """Make the thing a Greengrass V2 core device, as installing the nucleus with ``--provision`` does.

    The token exchange role ``role_name`` (trust ``iam/<policy_stem>-trust.json``, permissions
    ``iam/<policy_stem>.json``), the IoT role alias ``role_alias`` pointing to it (kept if it exists),
    then the nucleus's first connection (:func:`register_core_device`). Returns (role ARN, alias).
    """
    iam = _client("iam", endpoint_url, region)
    role_arn = ensure_role(iam, role_name, policy_stem)
    iot = _client("iot", endpoint_url, region)
    try:
        iot.describe_role_alias(roleAlias=role_alias)
    except iot.exceptions.ResourceNotFoundException:
        iot.create_role_alias(roleAlias=role_alias, roleArn=role_arn)
    register_core_device(endpoint_url, region, thing_name, role_alias)
    return role_arn, role_alias


def register_core_device(
    endpoint_url: str, region: str, thing_name: str, role_alias: str = DEFAULT_ROLE_ALIAS
) -> dict[str, Any]:
    """The emulator-only call that plays a Greengrass V2 nucleus connecting for the first time.

    On AWS a core device appears when the nucleus installed on it connects, with the ``iotRoleAlias``
    of its local configuration; the emulator learns both from this call
    (``POST /moto-api/emulator/greengrass-v2/core-devices``, see ``emulator.extension.greengrass_v2``).
    """
    request = urllib.request.Request(
        f"{endpoint_url.rstrip('/')}/moto-api/emulator/greengrass-v2/core-devices",
        data=json.dumps(
            {"coreDeviceThingName": thing_name, "region": region, "iotRoleAlias": role_alias}
        ).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())
