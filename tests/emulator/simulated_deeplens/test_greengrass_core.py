"""A Greengrass V2 core on the simulated DeepLens applies deployments made through boto3 for real.

The emulator checks each deployment as the nucleus does, then the device's core downloads the
artifacts, unpacks them, runs Install and starts Run; failures come back as the nucleus reports them.
"""

from __future__ import annotations

import io
import json
import time
import uuid
import zipfile
from pathlib import Path
from typing import Any

import boto3
import pytest

from emulator.seed import register_greengrass_v2_core
from emulator.simulated_deeplens import SimulatedDeepLens
from tests.emulator.simulated_deeplens.conftest import read_heartbeat, wait_for

REGION = "ca-central-1"
COMPONENT = "com.deeplens.simulated.Probe"

RUN_SCRIPT = """
import json, os, sys, time
seen = {"pid": os.getpid(), "cwd": os.getcwd(), "greeting": os.environ.get("GREETING"),
        "component": os.environ.get("COMPONENT_SEEN"), "thing": os.environ.get("AWS_IOT_THING_NAME"),
        "version": sys.argv[1]}
with open("/tmp/probe.part", "w") as out:
    json.dump(seen, out)
os.rename("/tmp/probe.part", "/tmp/probe.json")
while True:
    time.sleep(1)
"""


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("run.py", RUN_SCRIPT)  # unpacked into {artifacts:decompressedPath}/app/
    return buffer.getvalue()


def _recipe(bucket: str, version: str, install: str) -> dict[str, Any]:
    return {
        "RecipeFormatVersion": "2020-01-25",
        "ComponentName": COMPONENT,
        "ComponentVersion": version,
        "ComponentConfiguration": {"DefaultConfiguration": {"message": "hello"}},
        "Manifests": [
            {
                "Platform": {"os": "linux"},
                "Lifecycle": {
                    "Setenv": {"GREETING": "{configuration:/message}"},
                    "Install": {"Script": install, "RequiresPrivilege": True},
                    "Run": f"python3.7 -u {{artifacts:decompressedPath}}/app/run.py {version}",
                },
                "Artifacts": [
                    {"URI": f"s3://{bucket}/probe/app.zip", "Unarchive": "ZIP"},
                    {"URI": f"s3://{bucket}/probe/data.txt"},
                ],
            }
        ],
    }


GOOD_INSTALL = (
    "mkdir -p /opt/awscam/artifacts && cp {artifacts:path}/data.txt /opt/awscam/artifacts/ "
    '&& echo "$GREETING" > {work:path}/installed && test "$(id -u)" = 0'
)


@pytest.fixture(scope="module")
def aws(emulator: Any) -> dict[str, Any]:
    return {
        n: boto3.client(n, endpoint_url=emulator.url, region_name=REGION)
        for n in ("greengrassv2", "s3", "iot")
    }


@pytest.fixture(scope="module")
def setup(emulator: Any, aws: dict[str, Any], tmp_path_factory: pytest.TempPathFactory):
    bucket = f"deeplens-core-{uuid.uuid4().hex[:8]}"
    aws["s3"].create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    aws["s3"].put_object(Bucket=bucket, Key="probe/app.zip", Body=_zip())
    aws["s3"].put_object(Bucket=bucket, Key="probe/data.txt", Body=b"model data\n")
    thing = f"deeplens_{uuid.uuid4().hex[:12]}"
    thing_arn = aws["iot"].create_thing(thingName=thing)["thingArn"]
    _, alias = register_greengrass_v2_core(
        emulator.url,
        REGION,
        thing,
        role_name=f"deeplens-core-tes-{uuid.uuid4().hex[:8]}",
        role_alias=f"deeplens-core-alias-{uuid.uuid4().hex[:8]}",
    )
    root = tmp_path_factory.mktemp("gg2-device") / "root"
    with SimulatedDeepLens(
        root,
        thing_name=thing,
        region=REGION,
        emulator_url=emulator.url,
        role_alias=alias,
        component_environment=lambda name, configuration: {"COMPONENT_SEEN": name},
    ) as device:
        yield {"bucket": bucket, "thing": thing, "arn": thing_arn, "device": device}


def _deploy(aws: dict[str, Any], setup: dict[str, Any], version: str, install: str) -> dict[str, Any]:
    gg = aws["greengrassv2"]
    recipe = json.dumps(_recipe(setup["bucket"], version, install)).encode()
    arn = gg.create_component_version(inlineRecipe=recipe)["arn"]
    wait_for(
        lambda: gg.describe_component(arn=arn)["status"]["componentState"] == "DEPLOYABLE",
        what="the component to be DEPLOYABLE",
    )
    deployment_id = gg.create_deployment(
        targetArn=setup["arn"],
        components={
            COMPONENT: {
                "componentVersion": version,
                "configurationUpdate": {"merge": json.dumps({"message": "from the deployment"})},
            }
        },
        deploymentPolicies={"failureHandlingPolicy": "ROLLBACK"},
    )["deploymentId"]

    def final() -> dict[str, Any] | None:
        for effective in gg.list_effective_deployments(coreDeviceThingName=setup["thing"])[
            "effectiveDeployments"
        ]:
            if effective["deploymentId"] == deployment_id and effective["coreDeviceExecutionStatus"] in (
                "COMPLETED",
                "FAILED",
            ):
                return effective
        return None

    return wait_for(final, timeout=60, what=f"deployment of {version} to end")


def _probe(device: SimulatedDeepLens, version: str) -> dict[str, Any]:
    def seen() -> dict[str, Any] | None:
        found = read_heartbeat(device.host_path("/tmp/probe.json"))
        return found if found and found["version"] == version else None

    return wait_for(seen, what=f"the Run process of {version}")


def _alive(pid: int, timeout: float = 5.0) -> bool:
    """True when ``pid`` still runs after ``timeout`` (a zombie an init never reaps counts as dead)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return False
        if state in ("Z", "X"):
            return False
        if time.monotonic() >= deadline:
            return True
        time.sleep(0.05)


def test_deployments_install_run_fail_roll_back_and_replace(
    aws: dict[str, Any], setup: dict[str, Any]
) -> None:
    device: SimulatedDeepLens = setup["device"]
    gg_root = "/greengrass/v2/packages"

    first = _deploy(aws, setup, "1.0.0", GOOD_INSTALL)
    assert first["coreDeviceExecutionStatus"] == "COMPLETED", first
    assert device.host_path(f"{gg_root}/artifacts/{COMPONENT}/1.0.0/app.zip").is_file()
    assert device.host_path(f"{gg_root}/artifacts-unarchived/{COMPONENT}/1.0.0/app/run.py").is_file()
    assert device.host_path("/opt/awscam/artifacts/data.txt").read_text() == "model data\n"
    installed = device.host_path(f"/greengrass/v2/work/{COMPONENT}/installed").read_text()
    assert installed == "from the deployment\n"  # Setenv with {configuration:/message}, merged
    probe = _probe(device, "1.0.0")
    assert probe["cwd"] == f"/greengrass/v2/work/{COMPONENT}"
    assert (probe["greeting"], probe["component"], probe["thing"]) == (
        "from the deployment",
        COMPONENT,
        setup["thing"],
    )

    device.host_path("/tmp/probe.json").unlink()
    failed = _deploy(aws, setup, "2.0.0", "echo 'cannot install' >&2; exit 3")
    assert failed["coreDeviceExecutionStatus"] == "FAILED", failed
    assert failed["reason"].startswith(f"Service {COMPONENT} in broken state after deployment")
    assert "exited with 3" in failed["reason"] and "cannot install" in failed["reason"]
    assert failed["statusDetails"] == {
        "errorStack": ["DEPLOYMENT_FAILURE", "COMPONENT_UPDATE_ERROR", "COMPONENT_BROKEN"],
        "errorTypes": ["USER_COMPONENT_ERROR"],
    }
    assert not _alive(probe["pid"]), "the old version was stopped for the update"
    rolled_back = _probe(device, "1.0.0")  # ROLLBACK: the previous version runs again
    assert rolled_back["pid"] != probe["pid"]

    third = _deploy(aws, setup, "3.0.0", GOOD_INSTALL)
    assert third["coreDeviceExecutionStatus"] == "COMPLETED", third
    assert _probe(device, "3.0.0")["pid"] != rolled_back["pid"]
    assert not _alive(rolled_back["pid"]), "a new deployment stops the old component's process first"
    assert device.core is not None and [s for _, s in device.core.applied] == [
        "COMPLETED",
        "FAILED",
        "COMPLETED",
    ]


def test_core_device_without_agent_is_not_changed(aws: dict[str, Any], setup: dict[str, Any]) -> None:
    core = aws["greengrassv2"].get_core_device(coreDeviceThingName=setup["thing"])
    assert core["status"] == "HEALTHY"
    assert "deploymentAgent" not in core and "iotRoleAlias" not in core
